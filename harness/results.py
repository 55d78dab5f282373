"""Result records: one append-only JSON file per run under ``results/<task>/<backbone>/``.

A record says what was measured and how it was produced::

    {
      "schema_version": 1, "run_id": "20261124T221500Z-1a2b3c4d", "created": "2026-11-24T22:15:00Z",
      "task": {"name": "synth-body-mesh", "version": "1", "protocol": "synth-smpl24-pelvis", ...},
      "backbone": {"name": "cpc", "arch": "vit_tiny", "weights": "runs/...", "weights_sha256": "..."},
      "method": "cpc", "protocol": "finetune", "seeds": [0, 1, 2], "fraction": 1.0,
      "limit": null, "smoke": false,
      "metrics": {"pa_mpjpe": {"mean": 61.2, "std": 1.3, "stderr": 0.4, "per_seed": [..], "unit": "mm",
                               "higher_is_better": false}},
      "n_samples": 512, "config": {...}, "git_commit": "...", "versions": {...}, "hardware": {...},
      "wall_time_s": 123.4, "predictions": "20261124T221500Z-1a2b3c4d.predictions.npz"
    }

Paths in a record never name the machine that ran it (``portable_path``): a path inside the project (the working
directory) is stored relative to it, one under ``$CPCBENCH_RUNS`` / ``$CPCBENCH_DATA`` / ``$CPCBENCH_MODELS`` as
``$CPCBENCH_RUNS/...``; the file itself is identified by its sha256 (``backbone.weights_sha256``). Records written
before this rule are normalised the same way when read (records are append-only: the files stay as written).

``mean``/``std`` are over seeds (std with ddof=1, null for one seed); ``stderr`` is the standard error of
the per-sample mean, pooled over seeds. A metric of a subset of the samples (``MetricSpec.subset``, e.g. the
correspondence probes' ``pck_moved``) also carries ``n_per_seed``, the samples it counted per seed. A record
with ``limit`` set is a smoke run (``smoke: true``) and never enters a paper table.
"""

from __future__ import annotations

import json
import math
import os
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.errors import CpcbenchError
from core.io import atomic_write_json, git_commit

SCHEMA_VERSION = 1
#: ``config.train_stats`` of a run whose training statistics (head start, trivial baseline) come from its
#: ``--fraction`` subset alone; records without it were made before that rule (see ``harness.tables.eval_setting``)
TRAIN_STATS = "fraction"
REQUIRED = ("schema_version", "run_id", "task", "backbone", "method", "protocol", "seeds", "fraction", "limit",
            "smoke", "metrics", "n_samples", "config", "git_commit", "versions", "hardware", "wall_time_s")
METRIC_KEYS = ("mean", "std", "stderr", "per_seed", "unit", "higher_is_better")


class RecordError(CpcbenchError, ValueError):
    """A result record that is missing, unreadable or does not follow the schema."""


def summarize(per_seed_samples: Sequence[Sequence[float]], *, exclude_nan: bool = False) -> dict[str, Any]:
    """The one place where per-sample metric values become a table cell.

    ``per_seed_samples[s]`` holds the per-sample values of seed ``s``. Returns ``mean`` (over seeds of the
    per-seed sample means), ``std`` (over seeds, ddof=1; None for one seed), ``stderr`` (of the per-sample
    mean, pooled over seeds) and ``per_seed``. Non-finite values raise: a NaN never reaches a table.
    ``exclude_nan`` (a metric of a subset of the samples, ``MetricSpec.subset``): NaN marks a sample outside the
    subset and is left out of every statistic (infinities still raise); the result gains ``n_per_seed``, the number
    of samples counted per seed. A seed with no sample left raises.
    """
    import numpy as np

    if not per_seed_samples:
        raise RecordError("summarize() needs at least one seed")
    means, pooled, counts = [], [], []
    for s, values in enumerate(per_seed_samples):
        v = np.asarray(values, dtype=np.float64).ravel()
        if exclude_nan:
            v = v[~np.isnan(v)]
        if v.size == 0:
            raise RecordError(f"seed #{s} has no samples to score" + (" in the metric's subset" if exclude_nan else ""))
        if not np.isfinite(v).all():
            raise RecordError(f"seed #{s} has {int((~np.isfinite(v)).sum())} non-finite per-sample values")
        means.append(float(v.mean()))
        pooled.append(v)
        counts.append(int(v.size))
    allv = np.concatenate(pooled)
    stderr = float(allv.std(ddof=1) / math.sqrt(allv.size)) if allv.size > 1 else None
    std = float(np.std(means, ddof=1)) if len(means) > 1 else None
    out = {"mean": float(np.mean(means)), "std": std, "stderr": stderr, "per_seed": means}
    return out | {"n_per_seed": counts} if exclude_nan else out


def summarize_metric(spec: Any, per_seed_samples: Sequence[Sequence[float]]) -> dict[str, Any]:
    """A record's metric block: ``summarize`` (NaN = outside the subset when ``spec.subset``, a
    ``tasks.base.MetricSpec``) + ``unit`` and ``higher_is_better``."""
    return {**summarize(per_seed_samples, exclude_nan=bool(getattr(spec, "subset", False))), "unit": spec.unit,
            "higher_is_better": spec.higher_is_better}


PATH_ROOT_ENVS = ("CPCBENCH_RUNS", "CPCBENCH_DATA", "CPCBENCH_MODELS")
_WINDOWS_ABS = re.compile(r"^[A-Za-z]:[\\/]")


def portable_path(text: str, project: str | Path | None = None) -> str:
    """``text`` if it is not an absolute path, else the same path without the machine's part:

    1. relative to ``project`` (default: the working directory) when inside it: ``runs/repro/pretrain/...``;
    2. ``$CPCBENCH_RUNS/...`` (or ``_DATA`` / ``_MODELS``) when inside the root an environment variable names;
    3. from its last ``runs`` component (the runs root's conventional name) when it has one: what records made in
       another checkout (``/home/me/cpcbench/runs/...``) name;
    4. else ``.../<last three components>``.
    """
    from pathlib import PurePosixPath, PureWindowsPath

    if text.startswith("/"):
        p: PurePosixPath | PureWindowsPath = PurePosixPath(text)
    elif _WINDOWS_ABS.match(text):
        p = PureWindowsPath(text)
    else:
        return text
    roots = [("", Path(project) if project is not None else Path.cwd())]
    roots += [(f"${env}", Path(os.environ[env])) for env in PATH_ROOT_ENVS if os.environ.get(env)]
    for prefix, root in roots:
        if not root.is_absolute():
            root = Path.cwd() / root
        try:
            rel = p.relative_to(type(p)(str(root)))
        except ValueError:
            continue
        rel_s = rel.as_posix()
        return f"{prefix}/{rel_s}" if prefix else (rel_s or ".")
    parts = p.parts[1:]
    if "runs" in parts:
        i = len(parts) - 1 - parts[::-1].index("runs")
        return "/".join(parts[i:])
    return ".../" + "/".join(parts[-3:])


def portable_paths(node: Any, project: str | Path | None = None) -> Any:
    """``node`` (a record or part of one) with every absolute path string made ``portable_path``."""
    if isinstance(node, str):
        return portable_path(node, project)
    if isinstance(node, Mapping):
        return {k: portable_paths(v, project) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [portable_paths(v, project) for v in node]
    return node


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


def build_record(*, task: Mapping[str, Any], backbone: Mapping[str, Any], method: str, protocol: str,
                 seeds: Sequence[int], fraction: float, limit: int | None, metrics: Mapping[str, Mapping[str, Any]],
                 n_samples: int, config: Mapping[str, Any], wall_time_s: float, run_id: str | None = None,
                 **extra: Any) -> dict[str, Any]:
    """A complete record with provenance filled in (git commit, versions, hardware, time)."""
    from core.io import hardware, versions

    rec = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id or new_run_id(),
        "created": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "task": dict(task), "backbone": dict(backbone), "method": method, "protocol": protocol,
        "seeds": list(seeds), "fraction": float(fraction), "limit": limit, "smoke": limit is not None,
        "metrics": {k: dict(v) for k, v in metrics.items()}, "n_samples": int(n_samples), "config": dict(config),
        "git_commit": git_commit(), "versions": versions(), "hardware": hardware(),
        "wall_time_s": float(wall_time_s), **extra,
    }
    for key in ("task", "backbone", "config", *extra):  # provenance, not hardware/versions/metrics
        rec[key] = portable_paths(rec[key])
    validate(rec)
    return rec


def validate(rec: Mapping[str, Any], source: str = "record") -> None:
    missing = [k for k in REQUIRED if k not in rec]
    if missing:
        raise RecordError(f"{source}: missing keys {missing}")
    if rec["schema_version"] != SCHEMA_VERSION:
        raise RecordError(f"{source}: schema_version {rec['schema_version']} is not {SCHEMA_VERSION}; "
                          "re-run the evaluation with this cpcbench")
    for key in ("name", "version"):
        if key not in rec["task"]:
            raise RecordError(f"{source}: task.{key} missing")
    if "name" not in rec["backbone"]:
        raise RecordError(f"{source}: backbone.name missing")
    if bool(rec["smoke"]) != (rec["limit"] is not None):
        raise RecordError(f"{source}: smoke flag disagrees with limit={rec['limit']!r}")
    for name, m in rec["metrics"].items():
        absent = [k for k in METRIC_KEYS if k not in m]
        if absent:
            raise RecordError(f"{source}: metric {name!r} lacks {absent}")
        if not (isinstance(m["mean"], int | float) and math.isfinite(m["mean"])):
            raise RecordError(f"{source}: metric {name!r} has non-finite mean {m['mean']!r}")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)


def record_path(rec: Mapping[str, Any], root: str | Path = "results") -> Path:
    return Path(root) / _safe(rec["task"]["name"]) / _safe(rec["backbone"]["name"]) / f"{rec['run_id']}.json"


def write_record(rec: Mapping[str, Any], root: str | Path = "results") -> Path:
    """Write atomically to ``results/<task>/<backbone>/<run_id>.json``; never overwrites another run."""
    validate(rec)
    path = record_path(rec, root)
    if path.exists():
        raise RecordError(f"{path} exists: records are append-only (run ids are unique; is this a replay?)")
    return atomic_write_json(path, rec)


def read_record(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        rec = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise RecordError(f"cannot read result record {path}: {e}; delete or repair the file") from None
    if not isinstance(rec, dict):
        raise RecordError(f"result record {path} is not a JSON object")
    validate(rec, source=str(path))
    for key in ("task", "backbone", "config", "data", "per_seed"):  # records made before paths were portable
        if key in rec:
            rec[key] = portable_paths(rec[key])
    return rec


def iter_record_paths(root: str | Path = "results") -> Iterable[Path]:
    root = Path(root)
    return sorted(p for p in root.glob("*/*/*.json") if not p.name.startswith("."))


def load_records(root: str | Path = "results") -> list[dict[str, Any]]:
    return [read_record(p) | {"_path": str(p)} for p in iter_record_paths(root)]


def records_frame(root: str | Path = "results", records: Iterable[Mapping[str, Any]] | None = None):
    """A long pandas DataFrame: one row per (record, metric), protocol and provenance as columns."""
    import pandas as pd

    rows = []
    for rec in load_records(root) if records is None else records:
        base = {
            "run_id": rec["run_id"], "task": rec["task"]["name"], "task_version": str(rec["task"]["version"]),
            "task_protocol": rec["task"].get("protocol", ""), "backbone": rec["backbone"]["name"],
            "arch": rec["backbone"].get("arch", ""), "weights_sha256": rec["backbone"].get("weights_sha256", ""),
            "method": rec["method"], "protocol": rec["protocol"], "fraction": rec["fraction"],
            "seeds": tuple(rec["seeds"]), "limit": rec["limit"], "smoke": rec["smoke"],
            "n_samples": rec["n_samples"], "git_commit": rec["git_commit"], "created": rec.get("created", ""),
            "wall_time_s": rec["wall_time_s"], "path": rec.get("_path", ""),
        }
        for name, m in rec["metrics"].items():
            rows.append(base | {"metric": name, **{k: m[k] for k in METRIC_KEYS}})
    columns = ["run_id", "task", "task_version", "task_protocol", "backbone", "arch", "weights_sha256", "method",
               "protocol", "fraction", "seeds", "limit", "smoke", "n_samples", "git_commit", "created",
               "wall_time_s", "path", "metric", *METRIC_KEYS]
    return pd.DataFrame(rows, columns=columns)
