"""The real-benchmark tasks on tiny fixtures in their published formats (tests/fixtures_real.py): missing data
roots, items, ground truth, scores and submissions (the readers underneath: test_real_readers.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fixtures_real import (
    make_emdb,
    make_freihand,
    make_h36m,
    make_ho3d,
    make_imagefolder,
    make_pw3d,
)

from core.errors import DataError

# ---------------------------------------------------------------------------------------------- tasks: missing data

REAL_TASKS = {"3dpw": "3DPW", "emdb": "EMDB", "h36m-p1": "Human3.6M", "h36m-p2": "Human3.6M",
              "freihand": "FreiHAND", "ho3d": "HO3D", "imagefolder": "imagefolder"}
SUBDIR = {"3dpw": "3dpw", "emdb": "emdb", "h36m-p1": "h36m", "h36m-p2": "h36m", "freihand": "freihand",
          "ho3d": "ho3d", "imagefolder": "imagefolder"}


def _task(name: str, root: Path | None):
    import tasks.real  # noqa: F401
    from harness.registries import TASKS

    return TASKS.get(name)(root=root)


@pytest.mark.parametrize("name", sorted(REAL_TASKS))
def test_missing_data_root_says_what_to_download_and_where(name: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("CPCBENCH_DATA", raising=False)
    task = _task(name, None)
    assert task.data_status()["data"] == "missing"
    with pytest.raises(DataError) as err:
        task.build_dataset("test", 32)
    msg = str(err.value)
    assert "--data-root" in msg and "$CPCBENCH_DATA" in msg and REAL_TASKS[name] in msg
    assert f"$CPCBENCH_DATA/{SUBDIR[name]}" in msg and "\n" not in msg
    task = _task(name, tmp_path)  # a data root without this data set
    assert task.data_status()["data"] == "missing"
    with pytest.raises(DataError, match=f"{tmp_path}.*{REAL_TASKS[name]}"):
        task.build_dataset("test", 32)


# ---------------------------------------------------------------------------------------------- tasks: body

INFO = {"embed_dim": 16, "num_prefix_tokens": 1, "grid_size": (2, 2), "patch_size": 16, "img_size": 32}


@pytest.fixture(scope="module")
def smpl_dir(tmp_path_factory) -> Path:
    """A $CPCBENCH_MODELS with SMPL/MANO-format files (generated models stand in for the real ones)."""
    from fixtures_real import make_models

    return make_models(tmp_path_factory.mktemp("models"))


def _batch(ds, n: int | None = None) -> dict:
    from torch.utils.data import default_collate

    return default_collate([ds[i] for i in range(n or len(ds))])


def _tokens(b: int):
    import torch

    return torch.randn(b, 5, 16, generator=torch.Generator().manual_seed(0))


def test_body_tasks_need_the_real_smpl(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("CPCBENCH_MODELS", raising=False)
    make_pw3d(tmp_path)
    assert _task("3dpw", tmp_path).data_status()["models"].startswith("missing real smpl neutral")
    with pytest.raises(DataError, match=r"real SMPL model .*smpl.is.tue.mpg.de"):
        _task("3dpw", tmp_path).build_dataset("test", 32)


def test_pw3d_task_items_gt_and_scores(tmp_path: Path, smpl_dir: Path, monkeypatch) -> None:
    import torch
    from scipy.spatial.transform import Rotation

    from humans.models import forward, load_model

    monkeypatch.setenv("CPCBENCH_MODELS", str(smpl_dir))
    kept = make_pw3d(tmp_path)
    task = _task("3dpw", tmp_path)
    assert task.data_status() == {"data": "found", "where": str(tmp_path / "3dpw"), "models": "found"}
    ds = task.build_dataset("test", 32)
    assert len(ds) == len(kept)
    item = ds[0]
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert item["verts"].shape == (6890, 3) and item["joints3d"].shape == (24, 3)
    assert item["joints_h36m"].shape == (17, 3) and item["K"].shape == (3, 3) and item["gender"] == 1  # male
    assert torch.allclose(item["joints3d"][0], torch.zeros(3), atol=1e-6)  # root-relative to SMPL joint 0
    # GT = the gendered SMPL with the camera-frame orientation: rotating it back gives the world-frame mesh
    i = kept.index(("courtyard_a_00", 1, 3))
    it = ds[i]
    assert it["gender"] == 2  # actor 1 is female
    from tasks.real.pw3d import read_pw3d_sequence

    seq = read_pw3d_sequence(tmp_path / "3dpw/sequenceFiles/test/courtyard_a_00.pkl")
    world = forward("smpl", {"global_orient": seq["poses"][1][3:4, :3], "body_pose": seq["poses"][1][3:4, 3:],
                             "betas": seq["betas"][1][None]}, model=load_model("smpl", "female"))
    v = world["verts"][0].numpy() - world["joints"][0, :1].numpy()
    R = seq["cam_poses"][3, :3, :3]
    assert np.allclose(it["verts"].numpy(), v @ R.T, atol=1e-4)
    male = forward("smpl", {"global_orient": seq["poses"][1][3:4, :3], "body_pose": seq["poses"][1][3:4, 3:],
                            "betas": seq["betas"][1][None]}, model=load_model("smpl", "male"))
    assert not np.allclose(male["verts"][0].numpy(), world["verts"][0].numpy(), atol=1e-3)
    assert Rotation.from_rotvec(it["global_orient"].numpy()).magnitude() >= 0
    # head, loss, predictions and scores
    batch = _batch(ds, 3)
    head = task.build_head(INFO)
    pred = head(_tokens(3))
    assert pred["verts"].shape == (3, 6890, 3) and pred["joints_h36m"].shape == (3, 17, 3)
    loss = task.loss(pred, batch)["loss"]
    loss.backward()
    assert torch.isfinite(loss) and any(p.grad is not None for p in head.parameters())
    arrays = task.predictions({k: v.detach() for k, v in pred.items()}, batch)
    scores = task.score_arrays(arrays)
    assert set(scores) == {"mpjpe", "pa_mpjpe", "pve"} and all(v.shape == (3,) for v in scores.values())
    perfect = {**arrays, "pred/joints_h36m": arrays["gt/joints_h36m"] + 0.5, "pred/verts": arrays["gt/verts"] + 0.5}
    assert all(np.allclose(v, 0, atol=1e-3) for v in task.score_arrays(perfect).values())
    # hand-computed case: every predicted joint/vertex off by 10 mm along x -> MPJPE = PVE = 10 mm
    off = {**arrays, "pred/joints_h36m": arrays["gt/joints_h36m"].copy(), "pred/verts": arrays["gt/verts"].copy()}
    off["pred/joints_h36m"][:, 1:, 0] += 0.010
    off["pred/verts"][..., 0] += 0.010
    s = task.score_arrays(off)
    assert np.allclose(s["pve"], 10.0, atol=1e-3)  # pelvis (joint 0) not moved: every vertex 10 mm off
    assert np.allclose(s["mpjpe"], 10.0, atol=1e-3)  # the 14 LSP joints exclude the pelvis


def test_data_root_may_point_at_the_data_set_itself(tmp_path: Path, smpl_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("CPCBENCH_MODELS", str(smpl_dir))
    make_pw3d(tmp_path)
    task = _task("3dpw", tmp_path / "3dpw")
    assert task.data_status()["where"] == str(tmp_path / "3dpw") and len(task.build_dataset("test", 16)) > 0


def test_emdb_does_not_need_the_h36m_regressor(tmp_path: Path, smpl_dir: Path, monkeypatch) -> None:
    import shutil

    models = tmp_path / "models"
    shutil.copytree(smpl_dir, models)
    (models / "smpl" / "J_regressor_h36m.npy").unlink()
    monkeypatch.setenv("CPCBENCH_MODELS", str(models))
    make_emdb(tmp_path)
    assert _task("emdb", tmp_path).build_dataset("test", 16)[0]["joints3d"].shape == (24, 3)
    make_pw3d(tmp_path)
    with pytest.raises(DataError, match="J_regressor_h36m.npy"):
        _task("3dpw", tmp_path).build_dataset("test", 16)


def test_pw3d_task_limit_and_train_split(tmp_path: Path, smpl_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("CPCBENCH_MODELS", str(smpl_dir))
    make_pw3d(tmp_path, split="train")
    task = _task("3dpw", tmp_path)
    ds = task.build_dataset("train", 16, limit=3)
    assert len(ds) == 3 and ds[2]["frame_id"] != 2  # spread over the split
    with pytest.raises(DataError, match="no 3DPW sequence pickles"):
        task.build_dataset("test", 16)


def test_emdb_task(tmp_path: Path, smpl_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("CPCBENCH_MODELS", str(smpl_dir))
    kept = make_emdb(tmp_path)
    task = _task("emdb", tmp_path)
    ds = task.build_dataset("test", 32)
    assert len(ds) == len(kept) and ds[0]["gender"] == 2
    batch = _batch(ds, 2)
    arrays = {"pred/joints3d": batch["joints3d"].numpy() * 1.1, "pred/verts": batch["verts"].numpy() * 1.1,
              "gt/joints3d": batch["joints3d"].numpy(), "gt/verts": batch["verts"].numpy()}
    s = task.score_arrays(arrays)
    assert set(s) == {"mpjpe", "pa_mpjpe", "pve", "pa_pve"}
    assert (s["mpjpe"] > 1).all() and np.allclose(s["pa_mpjpe"], 0, atol=1e-3)  # a pure scaling: PA removes it
    assert np.allclose(s["pa_pve"], 0, atol=1e-3)
    with pytest.raises(DataError, match="3DPW training split"):  # EMDB fine-tunes on 3DPW train
        task.build_dataset("train", 32)


@pytest.mark.parametrize("name,protocol", [("h36m-p1", 1), ("h36m-p2", 2)])
def test_h36m_task(tmp_path: Path, smpl_dir: Path, monkeypatch, name: str, protocol: int) -> None:
    monkeypatch.setenv("CPCBENCH_MODELS", str(smpl_dir))
    j17 = make_h36m(tmp_path, protocol)
    task = _task(name, tmp_path)
    assert task.data_status()["data"] == "found"
    ds = task.build_dataset("test", 32)
    batch = _batch(ds)
    assert np.allclose(batch["joints_h36m"].numpy(), j17, atol=1e-6) and batch["image"].shape == (4, 3, 32, 32)
    pred = task.build_head(INFO)(_tokens(4))
    assert np.isfinite(task.loss(pred, batch)["loss"].item())
    arrays = task.predictions({k: v.detach() for k, v in pred.items()}, batch)
    arrays["pred/joints_h36m"] = arrays["gt/joints_h36m"] + np.array([0.003, 0.0, 0.004])  # 5 mm, but a shift
    s = task.score_arrays(arrays)
    assert np.allclose(s["mpjpe"], 0, atol=1e-4) and np.allclose(s["pa_mpjpe"], 0, atol=1e-4)
    with pytest.raises(DataError, match="h36m_train.npz"):
        task.build_dataset("train", 32)
    make_h36m(tmp_path, protocol, train=True)
    assert len(task.build_dataset("train", 32)) == 4


def test_h36m_task_refuses_malformed(tmp_path: Path) -> None:
    make_h36m(tmp_path, 1, malformed="keys")
    with pytest.raises(DataError, match=r"missing keys \['S'\]"):
        _task("h36m-p1", tmp_path).build_dataset("test", 32)


# ---------------------------------------------------------------------------------------------- tasks: hands


def test_freihand_task_and_official_submission(tmp_path: Path, smpl_dir: Path, monkeypatch) -> None:
    import json

    import torch

    monkeypatch.setenv("CPCBENCH_MODELS", str(smpl_dir))
    ev = make_freihand(tmp_path)
    task = _task("freihand", tmp_path)
    ds = task.build_dataset("test", 32)
    assert len(ds) == 3
    batch = _batch(ds)
    assert batch["joints3d"].shape == (3, 21, 3) and batch["verts"].shape == (3, 778, 3)
    assert np.allclose(batch["joints3d"].numpy(), ev["xyz"] - ev["xyz"][:, :1], atol=1e-6)  # wrist-relative
    assert len(task.build_dataset("train", 32)) == 8
    head = task.build_head(INFO)
    pred = head(_tokens(3))
    assert pred["joints3d"].shape == (3, 21, 3) and pred["verts"].shape == (3, 778, 3)
    loss = task.loss(pred, batch)["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    arrays = task.predictions({k: v.detach() for k, v in pred.items()}, batch)
    s = task.score_arrays(arrays)
    assert set(s) == {m.name for m in task.metrics} and all(v.shape == (3,) for v in s.values())
    # hand-computed: a mirrored, scaled, shifted GT is aligned exactly by the FreiHAND alignment (reflections allowed)
    mirror = np.array([-1.0, 1.0, 1.0])
    perfect = {**arrays, "pred/joints3d": arrays["gt/joints3d"] * mirror * 2 + 0.1,
               "pred/verts": arrays["gt/verts"] * mirror * 2 + 0.1}
    sp = task.score_arrays(perfect)
    assert np.allclose(sp["pa_mpjpe"], 0, atol=1e-3) and np.allclose(sp["pa_mpvpe"], 0, atol=1e-3)
    assert np.allclose(sp["f5"], 1.0) and np.allclose(sp["auc"], 1.0, atol=1e-2)
    # the official submission: pred.json = [xyz_list, verts_list], evaluation order (predictions arrive shuffled)
    order = np.array([2, 0, 1])
    shuffled = {k: v[order] for k, v in arrays.items()}
    path = task.write_submission(shuffled, tmp_path / "out")
    assert path.name == "pred.json"
    xyz, verts = json.loads(path.read_text())
    assert np.asarray(xyz).shape == (3, 21, 3) and np.asarray(verts).shape == (3, 778, 3)
    assert np.allclose(xyz, arrays["pred/joints3d"], atol=1e-6) and np.allclose(verts, arrays["pred/verts"], atol=1e-6)
    part = task.write_submission({k: v[:2] for k, v in arrays.items()}, tmp_path / "out")
    assert part.name == "pred-partial.json"


def test_ho3d_task_hidden_labels_and_submission(tmp_path: Path, smpl_dir: Path, monkeypatch) -> None:
    import json

    monkeypatch.setenv("CPCBENCH_MODELS", str(smpl_dir))
    make_ho3d(tmp_path)
    task = _task("ho3d", tmp_path)
    assert task.hidden_test_labels and "CodaLab" in task.submission_note
    train = task.build_dataset("train", 32)
    tb = _batch(train)
    assert tb["joints3d"].shape == (2, 21, 3) and (tb["joints3d"][:, 0] == 0).all()
    assert tb["verts"].shape == (2, 778, 3)
    # the vertices of the published MANO parameters agree with the published keypoints (fingertips are vertices)
    from tasks.protocols import MANO_TIP_VERTS

    assert np.allclose(tb["joints3d"][:, [4, 8, 12, 16, 20]], tb["verts"][:, list(MANO_TIP_VERTS)], atol=1e-5)
    head = task.build_head(INFO)
    assert np.isfinite(task.loss(head(_tokens(2)), tb)["loss"].item())
    gt = task.ground_truth(tb)
    s = task.score_arrays({**gt, "pred/joints3d": gt["gt/joints3d"], "pred/verts": gt["gt/verts"]})
    assert set(s) == {m.name for m in task.metrics} and np.allclose(s["pa_mpjpe"], 0, atol=1e-3)
    test = task.build_dataset("test", 32)
    batch = _batch(test)
    assert "joints3d" not in batch and batch["root"].shape == (2, 3)
    pred = {k: v.detach() for k, v in head(_tokens(2)).items()}
    with pytest.raises(DataError, match="no 3D labels"):
        task.loss(pred, batch)
    arrays = task.predictions(pred, batch)
    assert task.score_arrays(arrays) == {}  # hidden labels: no local metric
    path = task.write_submission(arrays, tmp_path / "out")
    xyz, verts = (np.asarray(a) for a in json.loads(path.read_text()))
    assert path.name == "pred.json" and xyz.shape == (2, 21, 3) and verts.shape == (2, 778, 3)
    # root added back, then OpenCV -> OpenGL: the hand lies at -z like the published root joint
    want = (arrays["pred/joints3d"] + arrays["gt/root"][:, None]) * np.array([1, -1, -1])
    assert np.allclose(xyz, want, atol=1e-6) and (xyz[..., 2] < 0).all()
    assert np.allclose(xyz[0, 0], [0.01, 0.02, -0.5], atol=1e-6)  # the wrist of a root-relative prediction


def test_imagefolder_task(tmp_path: Path) -> None:
    import torch

    make_imagefolder(tmp_path)
    task = _task("imagefolder", tmp_path)
    assert task.data_status()["data"] == "found"
    ds = task.build_dataset("train", 32)
    batch = _batch(ds)
    assert batch["image"].shape == (6, 3, 32, 32) and batch["label"].tolist() == [0, 0, 1, 1, 2, 2]
    head = task.build_head(INFO)
    pred = head(_tokens(6))
    assert pred["logits"].shape == (6, 3)
    loss = task.loss(pred, batch)["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    arrays = task.predictions({"logits": torch.eye(3)[[0, 1, 1, 1, 2, 0]]}, batch)
    assert task.score_arrays(arrays)["top1"].tolist() == [100, 0, 100, 100, 100, 0]
    base = task.baseline_predictions(task.ground_truth(batch), {"pred/label": arrays["pred/label"]})
    assert np.allclose(task.score_arrays({**arrays, **base})["top1"].mean(), 100 / 3)  # majority class
    make_imagefolder(tmp_path / "bad", malformed="extra")
    with pytest.raises(DataError, match="wave"):
        _task("imagefolder", tmp_path / "bad").build_dataset("test", 32)


@pytest.mark.parametrize("name", sorted(REAL_TASKS))
def test_every_real_task_reads_its_fixture(name: str, tmp_path: Path, smpl_dir: Path, monkeypatch) -> None:
    from fixtures_real import make_for_task

    monkeypatch.setenv("CPCBENCH_MODELS", str(smpl_dir))
    make_for_task(name, tmp_path)
    task = _task(name, tmp_path)
    assert task.data_status()["data"] == "found"
    for split in ("train", "test"):
        ds = task.build_dataset(split, 24, limit=2)
        assert 1 <= len(ds) <= 2
        item = ds[len(ds) - 1]
        assert item["image"].shape == (3, 24, 24)
        assert all(hasattr(v, "dtype") for v in item.values())


def test_pw3d_scores_follow_spin_eval(tmp_path: Path, smpl_dir: Path, monkeypatch) -> None:
    """Parity with nkolot/SPIN eval.py on 3DPW: a neutral-SMPL prediction of the GT parameters against the gendered
    GT, joints from J_regressor_h36m, pelvis (joint 0 of 17) subtracted, H36M_TO_J14, mean over joints, x1000."""
    from humans.models import forward, load_model
    from tasks.protocols import H36M_TO_J14

    monkeypatch.setenv("CPCBENCH_MODELS", str(smpl_dir))
    make_pw3d(tmp_path)
    task = _task("3dpw", tmp_path)
    batch = _batch(task.build_dataset("test", 16, limit=4))
    out = forward("smpl", {"global_orient": batch["global_orient"], "body_pose": batch["body_pose"],
                           "betas": batch["betas"]}, model=load_model("smpl", "neutral"))
    reg = np.load(smpl_dir / "smpl" / "J_regressor_h36m.npy")
    pv = out["verts"].numpy()
    pj = np.einsum("jv,bvc->bjc", reg, pv)
    gt = task.ground_truth(batch)
    # SPIN: pred/gt keypoints = regressor @ vertices, minus their pelvis, 14 joints
    p14 = pj[:, list(H36M_TO_J14)] - pj[:, :1]
    g14 = gt["gt/joints_h36m"][:, list(H36M_TO_J14)] - gt["gt/joints_h36m"][:, :1]
    spin_mpjpe = 1000 * np.linalg.norm(p14 - g14, axis=-1).mean(-1)
    arrays = {**gt, "pred/joints_h36m": pj, "pred/verts": pv, "pred/joints3d": gt["gt/joints3d"]}
    s = task.score_arrays(arrays)
    assert np.allclose(s["mpjpe"], spin_mpjpe, atol=1e-3) and (s["mpjpe"] > 0.1).all()  # gender matters
    pve = 1000 * np.linalg.norm((pv - pj[:, :1]) - (gt["gt/verts"] - gt["gt/joints_h36m"][:, :1]), axis=-1).mean(-1)
    assert np.allclose(s["pve"], pve, atol=1e-3)

