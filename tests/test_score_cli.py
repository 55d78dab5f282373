"""``cpcbench score`` on a tiny FreiHAND-format fixture generated here, and on a saved-predictions npz."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.linalg import orthogonal_procrustes
from scipy.spatial.transform import Rotation
from typer.testing import CliRunner

from harness.cli import app

N = 6


def _align_w_scale(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """FreiHAND eval.py's alignment, from its formula (reflections allowed)."""
    t1, t2 = gt.mean(0), pred.mean(0)
    g, p = gt - t1, pred - t2
    s1, s2 = np.linalg.norm(g) + 1e-8, np.linalg.norm(p) + 1e-8
    R, s = orthogonal_procrustes(g / s1, p / s2)
    return (p / s2) @ R.T * s * s1 + t1


def _reference(xyz, verts, gt_xyz, gt_verts) -> dict[str, float]:
    """The official script's aligned numbers, one sample at a time."""
    kp, mesh, f5, f15 = [], [], [], []
    thr = np.linspace(0.0, 0.05, 100)
    errs = []
    for i in range(len(xyz)):
        a = _align_w_scale(gt_xyz[i], xyz[i])
        e = np.linalg.norm(a - gt_xyz[i], axis=1)
        errs.append(e)
        kp.append(e.mean())
        av = _align_w_scale(gt_verts[i], verts[i])
        mesh.append(np.linalg.norm(av - gt_verts[i], axis=1).mean())
        d = np.linalg.norm(gt_verts[i][:, None] - av[None], axis=-1)
        for th, acc in ((0.005, f5), (0.015, f15)):
            p, r = np.mean(d.min(1) < th), np.mean(d.min(0) < th)
            acc.append(0.0 if p + r == 0 else 2 * p * r / (p + r))
    errs = np.array(errs)
    aucs = [np.trapezoid([np.mean(errs[:, k] <= t) for t in thr], thr) / np.trapezoid(np.ones_like(thr), thr)
            for k in range(21)]
    return {"pa_mpjpe": 1000 * np.mean(kp), "pa_mpvpe": 1000 * np.mean(mesh), "f5": np.mean(f5),
            "f15": np.mean(f15), "auc": float(np.mean(aucs))}


@pytest.fixture
def freihand(tmp_path: Path) -> tuple[Path, Path, dict[str, float]]:
    rng = np.random.default_rng(7)
    gt_xyz = rng.normal(size=(N, 21, 3)) * 0.03 + np.array([0, 0, 0.6])
    gt_verts = rng.normal(size=(N, 778, 3)) * 0.03 + np.array([0, 0, 0.6])
    R = Rotation.random(N, random_state=3).as_matrix()
    # predictions: a similarity of GT plus mm-level noise (metres)
    xyz = 1.3 * np.einsum("bij,bkj->bki", R, gt_xyz) + 0.1 + rng.normal(size=gt_xyz.shape) * 0.004
    verts = 1.3 * np.einsum("bij,bkj->bki", R, gt_verts) + 0.1 + rng.normal(size=gt_verts.shape) * 0.004
    verts[0] *= -1  # one mirrored mesh: FreiHAND's alignment allows reflections
    root = tmp_path / "freihand"
    root.mkdir()
    (root / "evaluation_xyz.json").write_text(json.dumps(gt_xyz.tolist()))
    (root / "evaluation_verts.json").write_text(json.dumps(gt_verts.tolist()))
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps([xyz.tolist(), verts.tolist()]))
    return root, pred, _reference(xyz, verts, gt_xyz, gt_verts)


def test_score_freihand_json_matches_reference(freihand):
    root, pred, want = freihand
    res = CliRunner().invoke(app, ["score", "--task", "freihand", "--data-root", str(root), "--predictions",
                                   str(pred), "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    assert set(got) == {"pa_mpjpe", "pa_mpvpe", "f5", "f15", "auc"}
    for k in got:
        assert got[k] == pytest.approx(want[k], rel=1e-6, abs=1e-9), k
    assert 3 < got["pa_mpjpe"] < 10 and 0 < got["f5"] < got["f15"] <= 1 and 0 < got["auc"] < 1


def test_score_freihand_table_and_parent_root(freihand):
    root, pred, _ = freihand
    res = CliRunner().invoke(app, ["score", "--data-root", str(root.parent), "--predictions", str(pred)])
    assert res.exit_code == 0, res.output
    assert "PA-MPJPE" in res.stdout and "F@15mm" in res.stdout


@pytest.mark.parametrize("content, message", [
    ("not json", "not valid JSON"),
    (json.dumps({"xyz": []}), "[xyz_list, verts_list]"),
    (json.dumps([[[[0, 0, 0]] * 21] * N, [[[0, 0]] * 778] * N]), "verts_list"),
    (json.dumps([[[[0, 0, 0]] * 21] * (N - 1), [[[0, 0, 0]] * 778] * (N - 1)]), "one entry per evaluation frame"),
    (json.dumps([[[[0, 0, 0]] * 20] * N, [[[0, 0, 0]] * 778] * N]), "21"),
])
def test_score_freihand_bad_predictions(freihand, tmp_path, content, message):
    root, _, _ = freihand
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    res = CliRunner().invoke(app, ["score", "--task", "freihand", "--data-root", str(root), "--predictions", str(bad)])
    assert res.exit_code == 2
    assert res.output.startswith("error: ") and res.output.count("\n") == 1
    assert message in res.output


def test_score_missing_files(freihand, tmp_path):
    root, pred, _ = freihand
    res = CliRunner().invoke(app, ["score", "--task", "freihand", "--data-root", str(tmp_path / "nowhere"),
                                   "--predictions", str(pred)])
    assert res.exit_code == 2 and "evaluation_xyz.json" in res.output
    res = CliRunner().invoke(app, ["score", "--task", "freihand", "--data-root", str(root),
                                   "--predictions", str(tmp_path / "missing.json")])
    assert res.exit_code == 2 and "not found" in res.output
    res = CliRunner().invoke(app, ["score", "--task", "3dpw", "--data-root", str(root), "--predictions", str(pred)])
    assert res.exit_code == 2 and "--task freihand" in res.output


def test_score_all_zero_submission_is_defined(freihand, tmp_path):
    """The README's zero-predictor check: finite numbers, F-scores near zero."""
    root, _, _ = freihand
    zero = tmp_path / "zero.json"
    zero.write_text(json.dumps([np.zeros((N, 21, 3)).tolist(), np.zeros((N, 778, 3)).tolist()]))
    res = CliRunner().invoke(app, ["score", "--data-root", str(root), "--predictions", str(zero), "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    assert all(np.isfinite(v) for v in got.values())
    assert got["f5"] < 0.05


def _saved_eval(tmp_path: Path) -> tuple[Path, dict[str, float]]:
    """A `cpcbench eval`-style predictions npz (two seeds) for the synthetic hand-mesh task, and its means."""
    import tasks  # noqa: F401
    from harness.registries import TASKS

    rng = np.random.default_rng(11)
    B = 5
    gt = {"gt/joints3d": rng.normal(size=(B, 21, 3)).astype(np.float32) * 0.03,
          "gt/verts": rng.normal(size=(B, 778, 3)).astype(np.float32) * 0.03}
    seeds = [{"pred/joints3d": gt["gt/joints3d"] + rng.normal(size=(B, 21, 3)).astype(np.float32) * 0.005,
              "pred/verts": gt["gt/verts"] + rng.normal(size=(B, 778, 3)).astype(np.float32) * 0.005}
             for _ in range(2)]
    task = TASKS.get("synth-hand-mesh")()
    scores = [task.score_arrays({**s, **gt}) for s in seeds]
    arrays = {**seeds[0], **gt, **{f"seed1/{k}": v for k, v in seeds[1].items()},
              **{f"score/{k}": np.asarray(v, np.float32) for k, v in scores[0].items()}}
    path = tmp_path / "20261124T000000Z-abcd1234.predictions.npz"
    np.savez_compressed(path, **arrays)
    want = {k: float(np.mean([np.mean(s[k]) for s in scores])) for k in scores[0]}
    return path, want


def test_score_saved_predictions_npz(tmp_path):
    path, want = _saved_eval(tmp_path)
    res = CliRunner().invoke(app, ["score", "--task", "synth-hand-mesh", "--predictions", str(path), "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    assert set(got) == set(want)
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-6), k  # float32 per-sample values
    # the task is read from the record beside the npz when --task is omitted; human table shows seeds
    path.with_name(path.name.replace(".predictions.npz", ".json")).write_text(
        json.dumps({"task": {"name": "synth-hand-mesh"}}))
    res = CliRunner().invoke(app, ["score", "--predictions", str(path)])
    assert res.exit_code == 0, res.output
    assert "2 seed(s)" in res.stdout and "pa_mpjpe" in res.stdout


def test_score_saved_predictions_errors(tmp_path):
    path, _ = _saved_eval(tmp_path)
    res = CliRunner().invoke(app, ["score", "--predictions", str(path)])
    assert res.exit_code == 2 and "--task" in res.output
    res = CliRunner().invoke(app, ["score", "--task", "synth-hand-mesj", "--predictions", str(path)])
    assert res.exit_code == 2 and "synth-hand-mesh" in res.output  # did-you-mean
    junk = tmp_path / "junk.npz"
    np.savez(junk, x=np.zeros(3))
    res = CliRunner().invoke(app, ["score", "--task", "synth-hand-mesh", "--predictions", str(junk)])
    assert res.exit_code == 2 and "pred/<name>" in res.output
    res = CliRunner().invoke(app, ["score", "--task", "synth-hand-mesh", "--predictions", str(tmp_path / "p.txt")])
    assert res.exit_code == 2 and ".predictions.npz" in res.output


def test_freihand_non_mano_mesh_uses_keypoint_transform():
    """Another vertex count: no PA-MPVPE; F-scores of the mesh moved by the keypoints' transform."""
    from tasks.protocols import PROTOCOLS
    from tasks.real.freihand import hand_scores

    rng = np.random.default_rng(2)
    gt_xyz, gt_verts = rng.normal(size=(3, 21, 3)) * 0.03, rng.normal(size=(3, 778, 3)) * 0.03
    xyz = 2.0 * gt_xyz + 0.5
    verts = 2.0 * gt_verts[:, :500] + 0.5  # same similarity, fewer vertices
    out = hand_scores(xyz, verts, gt_xyz, gt_verts, PROTOCOLS["freihand"])
    assert "pa_mpvpe" not in out
    np.testing.assert_allclose(out["pa_mpjpe"], 0.0, atol=1e-9)
    assert np.all(out["f5"] > 0.7)  # every predicted point sits on a GT point; 500 of 778 GT points are covered


def test_submission_and_saved_predictions_share_one_scoring(freihand):
    """pred.json (official format) and eval's saved arrays go through the same hand scoring: identical numbers."""
    import tasks  # noqa: F401
    from harness.registries import TASKS

    root, pred, _ = freihand
    xyz, verts = json.loads(pred.read_text())
    gt = {"gt/joints3d": np.array(json.loads((root / "evaluation_xyz.json").read_text())),
          "gt/verts": np.array(json.loads((root / "evaluation_verts.json").read_text()))}
    arrays = {"pred/joints3d": np.array(xyz), "pred/verts": np.array(verts), **gt}
    got = TASKS.get("freihand")(root=root).score_submission(pred)
    for name in ("freihand", "ho3d", "synth-hand-mesh"):
        per = TASKS.get(name)().score_arrays(arrays)
        assert {k: float(v.mean()) for k, v in per.items()} == got, name
