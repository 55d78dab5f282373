"""Session-wide fixtures: tiny synthetic frame sets rendered once per test session (a few seconds).

``synth_body``: 3 subjects x 2 motions x 3 cameras x 4 frames at 64 px (subject 2 is the test subject);
``synth_hand``: the same layout with MANO hands; ``synth_objects``: 10 object instances x 3 cameras x 2 frames.
Each fixture returns the frame-set directory (``humans.frames.FrameStore(path)`` reads it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

TINY = {
    "body": {"frames": 72, "size": 64, "cameras": 3, "seq_len": 4, "motions_per_subject": 2},
    "hand": {"frames": 72, "size": 64, "cameras": 3, "seq_len": 4, "motions_per_subject": 2},
    "objects": {"frames": 60, "size": 64, "cameras": 3, "seq_len": 2, "motions_per_subject": 1},
}


def diagnostic(name: str):
    """The module of ``docs/diagnostics/<name>.py`` (scripts, not a package: loaded from their file)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "docs" / "diagnostics"
                                                  / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def tiny_frames(root: Path, domain: str, seed: int = 0) -> Path:
    """Render the tiny frame set of ``domain`` into ``root`` (deterministic for ``seed``)."""
    from humans.world import generate

    return generate(domain, seed=seed, out=root, workers=1, **TINY[domain])


@pytest.fixture(scope="session")
def synth_body(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_frames(tmp_path_factory.mktemp("synth_body"), "body")


@pytest.fixture(scope="session")
def synth_hand(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_frames(tmp_path_factory.mktemp("synth_hand"), "hand")


@pytest.fixture(scope="session")
def synth_objects(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_frames(tmp_path_factory.mktemp("synth_objects"), "objects")


# ---------------------------------------------------------------------------------------------- task tests
@pytest.fixture(scope="session")
def frame_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """domain -> tiny frame set of ``task_kit.SIZE`` px (made without rendering, on first access)."""
    from task_kit import LazyFrames

    return LazyFrames(tmp_path_factory.mktemp("frames"))


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """A $CPCBENCH_MODELS in the real files' layout (generated SMPL/MANO stand in) + the H36M regressor."""
    import shutil

    import numpy as np

    from humans.models import model_file, read_model_file

    out = tmp_path_factory.mktemp("models")
    (out / "smpl").mkdir()
    for g in ("neutral", "male", "female"):
        src = model_file("smpl", g)
        shutil.copy(src, out / "smpl" / f"SMPL_{g.upper()}.pkl")
    np.save(out / "smpl" / "J_regressor_h36m.npy", read_model_file(src)["J_regressor_h36m"])
    (out / "mano").mkdir()
    shutil.copy(model_file("mano", "right"), out / "mano" / "MANO_RIGHT.pkl")
    return out


@pytest.fixture(scope="session")
def real_roots(tmp_path_factory) -> dict[str, Path]:
    from task_kit import REAL, make_real_fixture

    roots = {}
    for name in REAL:
        roots[name] = tmp_path_factory.mktemp(f"real-{name}")
        make_real_fixture(name, roots[name])
    return roots


@pytest.fixture
def root_of(frame_sets, request, monkeypatch):
    """name -> data root of the task (tiny synthetic frame set, or a real-format fixture with $CPCBENCH_MODELS)."""
    from harness.registries import TASKS

    def get(name: str) -> Path:
        cls = TASKS.get(name)
        if cls.synthetic:
            return frame_sets[cls.domain]
        monkeypatch.setenv("CPCBENCH_MODELS", str(request.getfixturevalue("models_dir")))
        return request.getfixturevalue("real_roots")[name]

    return get


@pytest.fixture
def task_of(root_of):
    from harness.registries import TASKS

    return lambda name: TASKS.get(name)(root_of(name))
