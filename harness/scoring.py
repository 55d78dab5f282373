"""Re-score saved predictions without a model: the code behind ``cpcbench score``. The scoring is the task's own.

Two inputs are understood:

- A benchmark's official submission file (FreiHAND's ``pred.json``): scored by the task's ``score_submission``
  (``tasks.real.freihand``), against the ground truth under ``--data-root``.
- The per-sample predictions ``cpcbench eval`` saves beside each result record (``<run_id>.predictions.npz``
  with ``pred/<name>``, ``gt/<name>``, ``seed<k>/pred/<name>`` for further seeds): re-scored with the task's own
  ``score_arrays`` and aggregated with ``harness.results.summarize``, exactly like the record.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import CpcbenchError, DataError


# ------------------------------------------------------------------------------------------------ submission file
def submission_tasks() -> list[str]:
    """The registered tasks that score a submission file (they override ``Task.score_submission``)."""
    import tasks  # noqa: F401  (fills the registry)
    from harness.registries import TASKS
    from tasks.base import Task

    return [n for n in TASKS.names() if TASKS.get(n).score_submission is not Task.score_submission]


def score_submission(task_name: str | None, predictions: str | Path,
                     data_root: str | Path | None = None) -> dict[str, Any]:
    """Score a submission file with its task's ``score_submission``. ``task_name`` may be omitted while only one
    task has a submission format.

    Returns ``{"task", "metrics": {name: {mean, unit, higher_is_better, label}}}``.
    """
    from harness.registries import TASKS

    scorers = submission_tasks()
    name = task_name or (scorers[0] if len(scorers) == 1 else "")
    if name not in scorers:
        raise CpcbenchError(f"a .json submission is scored with --task {' | '.join(scorers)} (the tasks with a "
                            f"submission format), not {name!r}; for other tasks pass the eval .predictions.npz")
    task = TASKS.get(name)(root=data_root)
    means = task.score_submission(Path(predictions))
    return {"task": name, "metrics": {
        k: {"mean": v, "unit": task.metric(k).unit, "higher_is_better": task.metric(k).higher_is_better,
            "label": task.submission_labels.get(k, k)} for k, v in means.items()}}


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
        out[k] = {**summarize(vals, exclude_nan=bool(spec and spec.subset)), "unit": spec.unit if spec else "",
                  "higher_is_better": spec.higher_is_better if spec else None,
                  "stored_mean": float(np.mean(stored)) if stored is not None else None}
    return {"task": name, "n_samples": int(n or 0), "n_seeds": len(next(iter(per_seed.values()), [])),
            "metrics": out}
