"""Rescore the trivial baseline of records made before the aligned metrics had their own.

A metric scored after a similarity alignment (``MetricSpec.aligned``: PA-MPJPE, PA-PVE, a hand mesh's F-scores
and AUC) is compared with the Procrustes mean pose of the seed's training subset (``eval_parts.mean_baseline``).
Records written before that compared it with the camera-frame mean. This rewrites, in place and atomically, the
``baseline_mean`` entries of those metrics in every such record (each seed's training subset rebuilt from the
record's data root, fraction and seed; the test ground truth and predictions read from its ``.predictions.npz``),
adds ``baseline_aligned`` (the metrics rescored) and ``baseline_rescored`` (the commit and time), and touches
nothing else: the measured metrics are the run's own.

    python -m harness.rebaseline [--results results] [--data-root DIR] [--dry-run]

Records of tasks without an aligned metric, or already carrying ``baseline_aligned``, are left as they are.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import CpcbenchError
from core.io import atomic_write_json, git_commit
from harness.eval_parts import aligned_metrics, check_scores, fraction_subset, ground_truth_split
from harness.results import iter_record_paths, read_record


def needs_rescore(rec: Mapping[str, Any]) -> bool:
    from harness.registries import TASKS

    if not rec.get("baseline_mean") or "baseline_aligned" in rec or rec["task"]["name"] not in TASKS:
        return False
    return bool(aligned_metrics(TASKS.get(rec["task"]["name"])))


def seed_arrays(preds: Mapping[str, np.ndarray], k: int, seed: int) -> dict[str, np.ndarray]:
    """The test ground truth and seed ``seed``'s predictions (the ``k``-th of the record) of a predictions file."""
    prefix = "" if k == 0 else f"seed{seed}/"
    out = {key: np.asarray(v) for key, v in preds.items() if key.startswith("gt/")}
    out |= {key[len(prefix):]: np.asarray(v, dtype=np.float32) if np.asarray(v).dtype == np.float16 else np.asarray(v)
            for key, v in preds.items() if key.startswith(prefix + "pred/")}
    if not any(key.startswith("pred/") for key in out):
        raise CpcbenchError(f"the predictions file has no predictions of seed {seed}; re-run the evaluation")
    return out


def aligned_baseline(rec: Mapping[str, Any], preds: Mapping[str, np.ndarray], train_ds: Any, task: Any,
                     cache: dict | None = None) -> dict[str, float]:
    """The mean over the record's seeds of each aligned metric's Procrustes-mean baseline (``cache``: the constant
    per training subset, shared by the records of one training split)."""
    from torch.utils.data import Subset

    cache = {} if cache is None else cache
    aligned = aligned_metrics(task)
    values: dict[str, list[float]] = {m: [] for m in aligned}
    batch = int(rec["config"].get("eval_batch_size") or 64)
    for k, seed in enumerate(rec["seeds"]):
        idx = fraction_subset(len(train_ds), float(rec["fraction"]), int(seed))
        arrays = seed_arrays(preds, k, int(seed))
        test_gt = {key: v for key, v in arrays.items() if key.startswith("gt/")}
        test_pred = {key: v for key, v in arrays.items() if key.startswith("pred/")}
        subset_key = (tuple(idx), tuple(sorted((key, v.shape) for key, v in test_pred.items())))
        if subset_key not in cache:
            subset = Subset(train_ds, idx) if len(idx) < len(train_ds) else train_ds
            found = task.aligned_baseline_predictions(ground_truth_split(task, subset, batch), test_pred)
            if found is None:
                raise CpcbenchError(f"task {task.name!r} gives no Procrustes-mean baseline")
            cache[subset_key] = found
        base = cache[subset_key]
        n = len(next(iter(test_gt.values())))
        scores = check_scores(task, task.score_arrays({**test_pred, **base, **test_gt}), n)
        for m in aligned:
            values[m].append(float(np.mean(scores[m])))
    return {m: float(np.mean(v)) for m, v in values.items()}


def rescore(results: Path, dry_run: bool = False, data_root: str | None = None) -> list[Path]:
    """Rescore every record under ``results`` that needs it (their frames at ``data_root``, default: the record's
    own data root, relative to the working directory); returns their paths."""
    from harness.registries import TASKS

    todo = [p for p in iter_record_paths(results) if needs_rescore(read_record(p))]
    datasets: dict[tuple, Any] = {}
    constants: dict = {}  # per training subset of the current split
    commit, when = git_commit(), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for i, path in enumerate(todo):
        rec = read_record(path)
        if dry_run:
            print(f"would rescore {path}")
            continue
        cfg = rec["config"]
        root = data_root or cfg.get("data_root")
        if root and not Path(root).is_dir():
            raise CpcbenchError(f"{path}: its data root {root} is not here; run from the project that made it or "
                                "pass --data-root")
        task = TASKS.get(rec["task"]["name"])(root)
        if str(task.version) != str(rec["task"]["version"]):
            raise CpcbenchError(f"{path}: task {task.name} is v{task.version} here, v{rec['task']['version']} in the "
                                "record; rescore with the cpcbench that made it")
        key = (task.name, root, cfg.get("img_size"), rec.get("limit"))
        if key not in datasets:
            datasets = {key: task.build_dataset("train", cfg.get("img_size"), rec.get("limit"))}  # one set at a time
            constants = {}
        if cfg.get("n_train_full") is not None and len(datasets[key]) != int(cfg["n_train_full"]):
            raise CpcbenchError(f"{path}: the training split at {root} has {len(datasets[key])} samples, the record's "
                                f"{cfg['n_train_full']}: not the frames it was trained on")
        pred_file = path.with_name(str(rec["predictions"]))
        if not pred_file.is_file():
            raise CpcbenchError(f"{path}: its predictions {pred_file.name} are not here (they stay on the machine that "
                                "ran the evaluation); rescore there")
        with np.load(pred_file) as z:
            preds = {k: z[k] for k in z.files}
        new = aligned_baseline(rec, preds, datasets[key], task, constants)
        raw = json.loads(path.read_text())  # as written: no path rewriting of read_record
        raw["baseline_mean"] = {**raw["baseline_mean"], **new}
        raw["baseline_aligned"] = list(new)
        raw["baseline_rescored"] = {"git_commit": commit, "at": when,
                                    "what": "aligned metrics against the Procrustes mean pose (harness.rebaseline)"}
        atomic_write_json(path, raw)
        print(f"[{i + 1}/{len(todo)}] {path}: " + ", ".join(f"{m} {v:.4g}" for m, v in new.items()), flush=True)
    return todo


def main(argv: list[str] | None = None) -> list[Path]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--data-root", help="the frames of every record (default: each record's data root)")
    ap.add_argument("--dry-run", action="store_true", help="list the records that would be rescored")
    a = ap.parse_args(argv)
    return rescore(a.results, a.dry_run, a.data_root)


if __name__ == "__main__":
    try:
        main()
    except CpcbenchError as e:
        sys.exit(f"error: {e}")
