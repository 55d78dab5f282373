"""Details of the published layouts that our readers once got wrong (fixtures: tests/fixtures_real.py, each derived
from the data set's own description): where SPIN keeps the H36M regressor, 3DPW's "10x1" betas, FreiHAND's version
stride, EMDB's protocol-2 pickles with an empty ``invalid_idxs``."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from fixtures_real import make_emdb, make_h36m, make_pw3d

from core.errors import DataError


def _task(name: str, root: Path):
    import tasks.real  # noqa: F401
    from harness.registries import TASKS

    return TASKS.get(name)(root=root)


@pytest.fixture(scope="module")
def smpl_dir(tmp_path_factory) -> Path:
    from fixtures_real import make_models

    return make_models(tmp_path_factory.mktemp("models"))


def _spin_layout(src: Path, dst: Path, regressor: np.ndarray) -> Path:
    """nkolot/SPIN config.py: SMPL_MODEL_DIR = 'data/smpl', JOINT_REGRESSOR_H36M = 'data/J_regressor_h36m.npy' (also
    4D-Humans' data/ folder): the regressor at the models root, a sibling of smpl/."""
    shutil.copytree(src / "smpl", dst / "smpl")
    (dst / "smpl" / "J_regressor_h36m.npy").unlink()
    np.save(dst / "J_regressor_h36m.npy", regressor)
    return dst


@pytest.mark.parametrize("name", ["3dpw", "h36m-p1", "h36m-p2"])
def test_h36m_regressor_at_the_models_root(name: str, tmp_path: Path, smpl_dir: Path, monkeypatch) -> None:
    from humans.models import h36m_regressor_file, model_info

    reg = np.load(smpl_dir / "smpl" / "J_regressor_h36m.npy")
    reg = np.roll(reg, 1, axis=1)  # a regressor that differs from the generated model's own
    models = _spin_layout(smpl_dir, tmp_path / "data", reg)
    monkeypatch.setenv("CPCBENCH_MODELS", str(models))
    assert h36m_regressor_file() == models / "J_regressor_h36m.npy"
    info = model_info("smpl")
    assert np.array_equal(info["h36m_regressor"], reg) and info["h36m_regressor_source"] == str(models /
                                                                                                   "J_regressor_h36m.npy")
    if name == "3dpw":
        make_pw3d(tmp_path)
    else:
        make_h36m(tmp_path, int(name[-1]))
    task = _task(name, tmp_path)
    ds = task.build_dataset("test", 16, limit=2)
    head = task.build_head({"embed_dim": 16, "num_prefix_tokens": 1, "grid_size": (2, 2), "patch_size": 16,
                            "img_size": 32})
    assert np.allclose(head.j_h36m.numpy(), reg, atol=1e-6) and len(ds) == 2
    assert task.data_info()["h36m_regressor"] == str(models / "J_regressor_h36m.npy")  # the record says which


def test_h36m_regressor_beside_the_model_wins_and_is_recorded(tmp_path: Path, smpl_dir: Path, monkeypatch) -> None:
    from humans.models import h36m_regressor_file

    models = _spin_layout(smpl_dir, tmp_path / "data", np.zeros((17, 6890)))
    shutil.copy(smpl_dir / "smpl" / "J_regressor_h36m.npy", models / "smpl" / "J_regressor_h36m.npy")
    monkeypatch.setenv("CPCBENCH_MODELS", str(models))
    assert h36m_regressor_file() == models / "smpl" / "J_regressor_h36m.npy"
    make_pw3d(tmp_path)
    assert _task("3dpw", tmp_path).data_info()["h36m_regressor"] == str(models / "smpl" / "J_regressor_h36m.npy")


def test_h36m_regressor_missing_everywhere_names_both_places(tmp_path: Path, smpl_dir: Path, monkeypatch) -> None:
    models = tmp_path / "data"
    shutil.copytree(smpl_dir / "smpl", models / "smpl")
    (models / "smpl" / "J_regressor_h36m.npy").unlink()
    monkeypatch.setenv("CPCBENCH_MODELS", str(models))
    make_pw3d(tmp_path)
    with pytest.raises(DataError, match=r"missing J_regressor_h36m\.npy .*looked in .*smpl and the root of "
                                        r"\$CPCBENCH_MODELS") as err:
        _task("3dpw", tmp_path).build_dataset("test", 16)
    assert "\n" not in str(err.value)


def test_user_regressor_not_applied_to_generated_models(tmp_path: Path, monkeypatch) -> None:
    """A stray J_regressor_h36m.npy in $CPCBENCH_MODELS without real SMPL files does not replace the generated
    model's own regressor (it belongs to the user's SMPL, which is absent)."""
    from humans.models import h36m_regressor_file, model_info

    np.save(tmp_path / "J_regressor_h36m.npy", np.zeros((17, 6890)))
    monkeypatch.setenv("CPCBENCH_MODELS", str(tmp_path))
    assert h36m_regressor_file() is None
    assert model_info("smpl")["h36m_regressor_source"] == "generated"


# ---------------------------------------------------------------------------------------------- pickles, columns


@pytest.mark.parametrize("protocol", [2, 4])
def test_emdb_python3_pickles_with_empty_invalid_idxs(tmp_path: Path, protocol: int) -> None:
    """eth-ait/emdb dataset.md: invalid_idxs lists the invalid boxes; a sequence without one has an empty array,
    which Python 3 pickles at protocol <= 2 through __builtin__.bytes()."""
    from tasks.real.emdb import read_emdb, read_emdb_sequence

    kept = make_emdb(tmp_path, protocol=protocol)
    seq = read_emdb_sequence(tmp_path / "emdb/P1/02_run/P1_02_run_data.pkl")
    assert seq["invalid_idxs"].shape == (0,)
    frames = read_emdb(tmp_path / "emdb")
    assert list(zip(frames.sequence, frames.frame.tolist(), strict=True)) == kept


def test_pw3d_betas_as_a_column(tmp_path: Path) -> None:
    """3DPW readme: betas are "10x1" per actor; a (10, 1) column reads like a flat 10-vector."""
    from tasks.real.pw3d import read_pw3d_sequence
    from tasks.real.safe_pickle import load_pickle

    make_pw3d(tmp_path)
    path = tmp_path / "3dpw/sequenceFiles/test/downtown_b_00.pkl"
    raw = load_pickle(path)["betas"][0]
    assert raw.shape == (10, 1)
    seq = read_pw3d_sequence(path)
    assert seq["betas"][0].shape == (10,) and np.allclose(seq["betas"][0], raw[:, 0])


def test_ho3d_frame_without_object_pose_is_unannotated(tmp_path: Path) -> None:
    """shreyashampali/ho3d vis_HO3D.py: a frame whose objRot is None "does not have annotations", whatever else its
    meta pickle holds."""
    from fixtures_real import make_ho3d, py3_pickle_numpy1

    from tasks.real.hand_format import read_ho3d
    from tasks.real.safe_pickle import load_pickle

    make_ho3d(tmp_path, version=3)
    path = tmp_path / "ho3d/train/MC1/meta/0002.pkl"
    meta = load_pickle(path)
    assert meta["handPose"] is not None
    meta["objRot"] = None
    path.write_bytes(py3_pickle_numpy1(meta, 2))
    assert read_ho3d(tmp_path / "ho3d", "train").ids == ["MC1/0000"]
