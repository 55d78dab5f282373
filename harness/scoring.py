"""Re-score saved predictions without a model: the code behind ``cpcbench score``.

Two inputs are understood:

- FreiHAND's official submission ``pred.json`` = ``[xyz_list, verts_list]`` (N x 21 x 3 keypoints and N x 778 x 3
  vertices, metres, evaluation order) against ``evaluation_xyz.json`` / ``evaluation_verts.json`` of a data root.
  The numbers are those lmb-freiburg/freihand ``eval.py`` reports after alignment (``align_w_scale``: similarity
  with reflections allowed, keypoints and mesh each aligned on themselves): PA-MPJPE and PA-MPVPE in mm (the
  script prints cm), F@5 mm and F@15 mm of the aligned mesh (strict ``<``), and the AUC of the aligned keypoints'
  PCK over 0-50 mm (100 thresholds, ``<=``, trapezoidal). Everything is computed in metres as the script does.
  Deviation: when the predicted mesh has a different vertex count, the script applies a keypoint transform with a
  scale bug to the vertices; here the keypoint similarity transform is applied as is, and PA-MPVPE is not defined.
- The per-sample predictions ``cpcbench eval`` saves beside each result record (``<run_id>.predictions.npz``
  with ``pred/<name>``, ``gt/<name>``, ``seed<k>/pred/<name>`` for further seeds): re-scored with the task's own
  ``score_arrays`` and aggregated with ``harness.results.summarize``, exactly like the record.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import CpcbenchError, DataError

FREIHAND_EVAL_SIZE = 3960
FREIHAND_KEYS = ("pa_mpjpe", "pa_mpvpe", "f5", "f15", "auc")
FREIHAND_UNITS = {"pa_mpjpe": ("mm", False), "pa_mpvpe": ("mm", False), "f5": ("", True), "f15": ("", True),
                  "auc": ("", True)}


# ------------------------------------------------------------------------------------------------ FreiHAND
def _load_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise DataError(f"{path} not found: expected {what}")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path} is not valid JSON ({e.__class__.__name__}: {e}); expected {what}") from None


def _points(obj: Any, path: Path, what: str, n_points: int | None) -> np.ndarray:
    """A JSON list of point lists -> float64 [N, P, 3], or a DataError that says which shape was expected."""
    want = f"{what}: a list of N lists of {n_points or 'V'} [x, y, z] points (metres)"
    try:
        arr = np.asarray(obj, dtype=np.float64)
    except (ValueError, TypeError):
        raise DataError(f"{path}: malformed {want} (ragged or non-numeric entries)") from None
    if arr.ndim != 3 or arr.shape[2] != 3 or (n_points is not None and arr.shape[1] != n_points):
        raise DataError(f"{path}: expected {want}, got an array of shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise DataError(f"{path}: {what} contains NaN or inf values")
    return arr


def freihand_gt_dir(data_root: str | Path | None) -> Path:
    """The folder holding ``evaluation_xyz.json``: DIR itself, or DIR/freihand, or $CPCBENCH_DATA/freihand."""
    if data_root is None or str(data_root) == "":
        env = os.environ.get("CPCBENCH_DATA", "")
        if not env:
            raise DataError("scoring FreiHAND needs its ground truth: pass --data-root DIR (the folder with "
                            "evaluation_xyz.json and evaluation_verts.json) or set $CPCBENCH_DATA")
        data_root = Path(env).expanduser() / "freihand"
    root = Path(data_root).expanduser()
    for cand in (root, root / "freihand"):
        if (cand / "evaluation_xyz.json").is_file():
            return cand
    raise DataError(f"{root / 'evaluation_xyz.json'} not found: --data-root must be the FreiHAND folder with "
                    f"evaluation_xyz.json and evaluation_verts.json (published with the evaluation set)")


def load_freihand_gt(data_root: str | Path | None) -> tuple[np.ndarray, np.ndarray]:
    """(xyz [N, 21, 3], verts [N, 778, 3]) in metres from ``evaluation_xyz.json`` / ``evaluation_verts.json``."""
    d = freihand_gt_dir(data_root)
    xyz = _points(_load_json(d / "evaluation_xyz.json", "the FreiHAND evaluation keypoints"),
                  d / "evaluation_xyz.json", "keypoints", 21)
    verts = _points(_load_json(d / "evaluation_verts.json", "the FreiHAND evaluation vertices"),
                    d / "evaluation_verts.json", "vertices", 778)
    if len(xyz) != len(verts):
        raise DataError(f"{d}: evaluation_xyz.json has {len(xyz)} samples but evaluation_verts.json {len(verts)}")
    return xyz, verts


def load_freihand_submission(path: str | Path, n_expected: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``pred.json`` = ``[xyz_list, verts_list]`` -> (xyz [N, 21, 3], verts [N, V, 3]) in metres."""
    path = Path(path)
    fmt = "FreiHAND's submission format [xyz_list, verts_list] (N x 21 x 3 and N x 778 x 3, metres)"
    data = _load_json(path, fmt)
    if not (isinstance(data, list) and len(data) == 2):
        raise DataError(f"{path}: expected {fmt}, got a JSON {type(data).__name__}"
                        + (f" of length {len(data)}" if isinstance(data, list) else ""))
    xyz = _points(data[0], path, "xyz_list", 21)
    verts = _points(data[1], path, "verts_list", None)
    if len(xyz) != len(verts):
        raise DataError(f"{path}: xyz_list has {len(xyz)} samples but verts_list {len(verts)}; both need one entry "
                        f"per evaluation frame")
    if n_expected is not None and len(xyz) != n_expected:
        raise DataError(f"{path}: {len(xyz)} predictions for {n_expected} ground-truth frames; the submission needs "
                        f"one entry per evaluation frame, in evaluation order")
    return xyz, verts


def freihand_per_sample(pred_xyz: np.ndarray, pred_verts: np.ndarray, gt_xyz: np.ndarray,
                        gt_verts: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample aligned metrics [N] (PA in mm, F and AUC in [0, 1]); inputs in metres."""
    from tasks import metrics

    aligned_xyz = metrics.procrustes_align(pred_xyz, gt_xyz, allow_reflection=True)
    err_xyz = np.linalg.norm(aligned_xyz - gt_xyz, axis=-1)  # [N, 21] metres
    out: dict[str, np.ndarray] = {"pa_mpjpe": 1000.0 * err_xyz.mean(1)}
    if pred_verts.shape[1] == gt_verts.shape[1]:
        aligned_v = metrics.procrustes_align(pred_verts, gt_verts, allow_reflection=True)
        out["pa_mpvpe"] = 1000.0 * np.linalg.norm(aligned_v - gt_verts, axis=-1).mean(1)
    else:  # no vertex correspondence: the keypoints' transform moves the mesh
        s, R, t = metrics.similarity_transform(pred_xyz, gt_xyz, allow_reflection=True)
        aligned_v = metrics.apply_transform(pred_verts, s, R, t)
    f = metrics.f_scores(aligned_v, gt_verts, [0.005, 0.015])
    out["f5"], out["f15"] = f[:, 0], f[:, 1]
    out["auc"] = metrics.auc(err_xyz, 0.0, 0.05, 100, inclusive=True)
    return out


def score_freihand(data_root: str | Path | None, predictions: str | Path) -> dict[str, float | None]:
    """The official script's aligned numbers for a ``pred.json``: ``{pa_mpjpe, pa_mpvpe, f5, f15, auc}``."""
    gt_xyz, gt_verts = load_freihand_gt(data_root)
    xyz, verts = load_freihand_submission(predictions, n_expected=len(gt_xyz))
    per = freihand_per_sample(xyz, verts, gt_xyz, gt_verts)
    return {k: (float(per[k].mean()) if k in per else None) for k in FREIHAND_KEYS}


# ------------------------------------------------------------------------------------------------ saved eval
def _task_from_record(npz: Path) -> str | None:
    rec = npz.with_name(npz.name.replace(".predictions.npz", ".json"))
    if rec.name == npz.name or not rec.is_file():
        return None
    try:
        return str(json.loads(rec.read_text(encoding="utf-8"))["task"]["name"])
    except (json.JSONDecodeError, KeyError, TypeError):
        return None


def load_predictions(path: str | Path) -> dict[str, np.ndarray]:
    """A ``.predictions.npz`` as a dict (float16 arrays widened to float32)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} not found: expected the <run_id>.predictions.npz that `cpcbench eval` writes "
                        f"beside its result record")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise DataError(f"{path} is not a readable npz ({e}); expected `cpcbench eval` predictions") from None
    if not any(k.startswith("pred/") for k in arrays) or not any(k.startswith("gt/") for k in arrays):
        raise DataError(f"{path}: expected arrays named pred/<name> and gt/<name>, found {', '.join(sorted(arrays))}")
    return {k: (v.astype(np.float32) if v.dtype == np.float16 else v) for k, v in arrays.items()}


def seed_arrays(arrays: Mapping[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Split saved arrays per seed: ``{"seed0": {pred/.., gt/..}, "seed<k>": {...}}`` (GT is shared)."""
    gt = {k: v for k, v in arrays.items() if k.startswith("gt/")}
    seeds: dict[str, dict[str, np.ndarray]] = {"first": {**{k: v for k, v in arrays.items()
                                                            if k.startswith("pred/")}, **gt}}
    for k, v in arrays.items():
        head, _, rest = k.partition("/")
        if head.startswith("seed") and rest.startswith("pred/"):
            seeds.setdefault(head, dict(gt))[rest] = v
    return seeds


def score_saved(task_name: str | None, predictions: str | Path,
                data_root: str | Path | None = None) -> dict[str, Any]:
    """Re-score an eval run's predictions with the task's ``score_arrays``.

    Returns ``{"task", "n_samples", "n_seeds", "metrics": {name: {mean, std, stderr, per_seed, unit,
    higher_is_better, stored_mean}}}``; ``stored_mean`` is the mean of the ``score/<name>`` saved by eval (first
    seed), for checking (vertex arrays are saved as float16, so re-scored vertex metrics may differ by ~0.1 mm).
    """
    import tasks  # noqa: F401  (fills the registry)
    from harness.registries import TASKS
    from harness.results import summarize

    path = Path(predictions)
    arrays = load_predictions(path)
    name = task_name or _task_from_record(path)
    if not name:
        raise CpcbenchError(f"which task produced {path}? pass --task NAME (see `cpcbench ls tasks`)")
    task = TASKS.get(name)(root=data_root)
    per_seed: dict[str, list[np.ndarray]] = {}
    n = None
    for _, a in seed_arrays(arrays).items():
        scores = task.score_arrays(a)
        for k, v in scores.items():
            v = np.asarray(v, dtype=np.float64).ravel()
            if n is not None and len(v) != n:
                raise DataError(f"{path}: metric {k} has {len(v)} values for {n} samples")
            n = len(v)
            per_seed.setdefault(k, []).append(v)
    specs = {m.name: m for m in task.metrics}
    out: dict[str, Any] = {}
    for k, vals in per_seed.items():
        spec = specs.get(k)
        stored = arrays.get(f"score/{k}")
        out[k] = {**summarize(vals), "unit": spec.unit if spec else "",
                  "higher_is_better": spec.higher_is_better if spec else None,
                  "stored_mean": float(np.mean(stored)) if stored is not None else None}
    return {"task": name, "n_samples": int(n or 0), "n_seeds": len(next(iter(per_seed.values()), [])),
            "metrics": out}
