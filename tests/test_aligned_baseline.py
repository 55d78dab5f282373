"""The trivial baseline of the aligned metrics (PA-*, a hand mesh's F-scores and AUC): the Procrustes mean pose, in
new records (``eval_parts.mean_baseline``), in old ones (``harness.rebaseline``) and in the tables' notes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from task_kit import fake_resolve

from core.errors import CpcbenchError
from harness.registries import TASKS
from tasks import metrics
from tasks.procrustes import procrustes_mean


def posed(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One shape [k, 3] seen ``n`` times under random similarity transforms, and a rigid attachment (verts)."""
    rng = np.random.default_rng(seed)
    shape, attached = rng.normal(size=(k, 3)), rng.normal(size=(3 * k, 3))
    rot = Rotation.random(n, random_state=seed).as_matrix()
    s, t = rng.uniform(0.5, 2.0, size=(n, 1, 1)), rng.normal(size=(n, 1, 3))
    return (s * np.einsum("nij,kj->nki", rot, shape) + t, s * np.einsum("nij,kj->nki", rot, attached) + t,
            shape)


def test_procrustes_mean_moves_the_mesh_with_its_joints() -> None:
    joints, verts, _ = posed(64, 21)
    mj, mv = procrustes_mean(joints, verts)
    tile = lambda c, like: np.broadcast_to(c, like.shape).copy()  # noqa: E731
    assert np.mean(metrics.pa_mpjpe(tile(mj, joints), joints)) < 1e-6
    # the vertices went with the joints' transforms: the joints' alignment carries them onto the truth
    s, R, t = metrics.similarity_transform(tile(mj, joints), joints)
    assert np.abs(metrics.apply_transform(tile(mv, verts), s, R, t) - verts).max() < 1e-6
    with pytest.raises(ValueError):
        procrustes_mean(joints, verts[:3])


def test_aligned_metrics_get_the_procrustes_baseline(monkeypatch: pytest.MonkeyPatch) -> None:
    """On hands facing every way, the Procrustes mean scores PA-MPJPE ~0 where the camera-frame mean does not;
    the metrics that keep the rotation are not aligned and keep the camera-frame mean."""
    from harness import eval_parts

    joints, verts, _ = posed(40, 21, seed=1)
    verts = np.concatenate([verts] * 20, axis=1)[:, :778]
    train = {"gt/joints3d": joints[:30].astype(np.float32), "gt/verts": verts[:30].astype(np.float32)}
    test = {"gt/joints3d": joints[30:].astype(np.float32), "gt/verts": verts[30:].astype(np.float32),
            "pred/joints3d": np.zeros_like(joints[30:], np.float32),
            "pred/verts": np.zeros_like(verts[30:], np.float32)}
    task = TASKS.get("synth-hand-mesh")()
    assert eval_parts.aligned_metrics(task) == ["pa_mpjpe", "pa_mpvpe", "f5", "f15", "auc"]
    monkeypatch.setattr(eval_parts, "ground_truth_split", lambda *a: train)
    base = eval_parts.mean_baseline(task, object(), test, 10, 8)
    preds = {k: v for k, v in test.items() if k.startswith("pred/")}
    camera = task.score_arrays({**test, **task.baseline_predictions(train, preds)})
    assert base["pa_mpjpe"] < 1e-3 < float(np.mean(camera["pa_mpjpe"]))
    assert base["f5"] == pytest.approx(1.0) and float(np.mean(camera["f5"])) < 1.0

    body = TASKS.get("synth-body-mesh")()
    assert eval_parts.aligned_metrics(body) == ["pa_mpjpe"]  # MPJPE, PVE and the facing keep the rotation


def _record(frame_sets: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    import harness.evaluate as ev

    monkeypatch.setattr(ev, "_resolve_backbone", fake_resolve)
    cfg = ev.EvalConfig(backbone="tiny", task="synth-hand-mesh", steps=1, batch_size=2, fraction=0.5, seeds=2,
                        data_root=str(frame_sets["hand"]), device="cpu")
    return ev.evaluate(cfg, tmp_path / "results", tmp_path / "runs")


def test_rebaseline_rescores_an_old_record_as_eval_would(frame_sets, tmp_path, monkeypatch) -> None:
    from harness import rebaseline

    rec = _record(frame_sets, tmp_path, monkeypatch)
    assert rec["baseline_aligned"] == ["pa_mpjpe", "pa_mpvpe", "f5", "f15", "auc"]
    path = Path(rec["_path"])
    raw = json.loads(path.read_text())
    want = dict(raw["baseline_mean"])
    # an old record: the camera-frame mean's values, no marker
    del raw["baseline_aligned"]
    raw["baseline_mean"] = {**want, "pa_mpjpe": 999.0, "f5": -1.0}
    path.write_text(json.dumps(raw, indent=2) + "\n")
    assert rebaseline.main(["--results", str(tmp_path / "results"), "--dry-run"]) == [path]
    assert json.loads(path.read_text())["baseline_mean"]["pa_mpjpe"] == 999.0  # a dry run writes nothing
    with pytest.raises(CpcbenchError, match="data root"):  # the record names its frames machine-free
        rebaseline.main(["--results", str(tmp_path / "results")])
    with pytest.raises(CpcbenchError, match="frame"):  # other frames: refused
        rebaseline.main(["--results", str(tmp_path / "results"), "--data-root", str(frame_sets["body"])])
    args = ["--results", str(tmp_path / "results"), "--data-root", str(frame_sets["hand"])]
    assert rebaseline.main(args) == [path]
    got = json.loads(path.read_text())
    assert got["baseline_aligned"] == rec["baseline_aligned"] and "git_commit" in got["baseline_rescored"]
    for m, v in want.items():  # the predictions file keeps vertices in float16: a hair of difference
        assert got["baseline_mean"][m] == pytest.approx(v, rel=1e-2, abs=1e-2), m
    assert got["metrics"] == raw["metrics"]
    assert rebaseline.main(args) == []  # done once


def test_tables_say_which_baseline_and_refuse_a_mix(frame_sets, tmp_path, monkeypatch) -> None:
    from harness.results import load_records
    from harness.tables import ALIGNED_NOTE, TableError, main_tables

    rec = _record(frame_sets, tmp_path, monkeypatch)
    tables = main_tables(load_records(tmp_path / "results"))
    assert any(ALIGNED_NOTE in t.notes for t in tables)
    path = Path(rec["_path"])
    raw = json.loads(path.read_text())
    del raw["baseline_aligned"]
    other = path.with_name("20990101T000000Z-00000000.json")
    other.write_text(json.dumps({**raw, "run_id": "20990101T000000Z-00000000", "seeds": [7, 8]}, indent=2))
    with pytest.raises(TableError, match="rebaseline"):
        main_tables(load_records(tmp_path / "results"))
