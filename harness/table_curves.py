"""Tables that follow a pretraining run and that collect the probes: learning curves and the ``probes`` table.

- **Learning curves** (``learning_tables``): records whose backbone is a snapshot of a pretraining run
  (``backbone.pretrain.step``, written by ``harness.snapshots``; the run's final export counts too) form one
  series per run (method + run directory name + pretraining config). A series needs at least two steps. One table
  per (task domain, eval protocol, fraction): rows = the series' snapshots in step order (plus ``scratch``, the
  random init of the default architecture, at step 0 when it was measured on the same columns), columns = the
  primary metric of each task (``harness.tables.primary_metric``), mean ± std over seeds; the trivial baseline
  row; plot ``learning`` (metric vs pretraining steps and vs pretraining FLOPs; FLOPs only when the runs differ
  in FLOPs per step, e.g. CPC's pairs and decoder against MAE under one ``--flops`` budget: equal steps are then
  not equal compute). The CSV names every row's step and FLOPs.
- **Probes** (``probes_table``): rows = backbones, columns = the primary metric of every task whose name starts
  with ``probe-``, grouped by eval protocol (linear, attentive, knn, match), mean ± std over seeds, best per
  column in bold, the trivial baseline row.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from harness.table_data import Column, Row, Table
from harness.table_specs import DOMAIN_ORDER, task_domain
from harness.tables import (
    _backbone_rank,
    _columns_for,
    _finish,
    _metric_order,
    _pool,
    _rows_from,
    _with_baselines,
    add_backbone_rows,
    primary_metric,
    without_curve_points,
)

PROBE_PREFIX = "probe-"
PROTOCOL_ORDER = ("linear", "attentive", "knn", "match", "finetune")


def _pretrain(rec: Mapping[str, Any]) -> Mapping[str, Any]:
    return rec["backbone"].get("pretrain") or {}


def snapshot_step(rec: Mapping[str, Any]) -> int | None:
    """The pretraining step of a record's backbone (None: not a snapshot or export that says it)."""
    step = _pretrain(rec).get("step")
    return int(step) if isinstance(step, int | float) and not isinstance(step, bool) else None


def series_key(rec: Mapping[str, Any]) -> tuple[str, str, str]:
    """(method, run name, pretraining config as JSON): the run a snapshot belongs to."""
    pre = _pretrain(rec)
    run = str(pre.get("run") or "")
    if not run:  # an export written before runs named themselves: its directory
        parts = str(rec["backbone"].get("weights", "")).replace("\\", "/").split("/")
        run = parts[-3] if len(parts) >= 3 and parts[-2] == "snapshots" else parts[-2] if len(parts) >= 2 else ""
    config = json.dumps(pre.get("pretrain") or {}, sort_keys=True, default=str)
    return str(pre.get("method") or rec.get("method") or ""), run, config


def per_step_flops(rows: Sequence[Row]) -> dict[str, float]:
    """FLOPs of one pretraining step of each learning-curve series, from its first snapshot past step 0 with counted
    FLOPs (``scratch`` and series without counted FLOPs are left out)."""
    out: dict[str, float] = {}
    for r in rows:
        if r.series and r.series != "scratch" and r.step and r.flops is not None:
            out.setdefault(r.series, r.flops / r.step)
    return out


def steps_differ_in_compute(rows: Sequence[Row]) -> bool:
    """Whether the series' FLOPs per step differ (by more than 1e-6 relative): then only FLOPs compare them."""
    vals = list(per_step_flops(rows).values())
    return len(vals) > 1 and max(vals) > min(vals) * (1 + 1e-6)


def _primary_columns(records: Sequence[Mapping[str, Any]]) -> list[Column]:
    primary = {(str(r["task"]["name"]), str(r["task"]["version"])): primary_metric(r) for r in records}
    cols = _columns_for(records, None, None, _metric_order(records))
    return [c for c in cols if primary.get((c.key.task, c.key.version)) == c.key.metric]


def _fmt_flops(flops: float | None) -> str:
    if flops is None:
        return "FLOPs not counted"
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9)):
        if flops >= scale:
            return f"{flops / scale:.3g} {unit}"
    return f"{flops:.3g} FLOP"


def learning_tables(records: Sequence[Mapping[str, Any]]) -> list[Table]:
    """One learning-curve table per (domain, eval protocol, fraction) with a run of >= 2 measured snapshots."""
    recs = [r for r in records if not r["smoke"]]
    groups: dict[tuple[str, str, float], list[Mapping[str, Any]]] = {}
    for rec in recs:
        groups.setdefault((task_domain(rec), str(rec["protocol"]), float(rec["fraction"])), []).append(rec)

    def grank(k: tuple[str, str, float]) -> tuple:
        dom, proto, frac = k
        return (DOMAIN_ORDER.index(dom) if dom in DOMAIN_ORDER else len(DOMAIN_ORDER), dom, proto, -frac)

    tables = []
    for key in sorted(groups, key=grank):
        dom, proto, frac = key
        grecs = groups[key]
        series: dict[tuple[str, str, str], dict[int, list[Mapping[str, Any]]]] = {}
        for rec in grecs:
            step = snapshot_step(rec)
            if step is not None:
                series.setdefault(series_key(rec), {}).setdefault(step, []).append(rec)
        series = {k: v for k, v in series.items() if len(v) >= 2}
        if not series:
            continue
        chosen = [r for steps in series.values() for rs in steps.values() for r in rs]
        scratch = [r for r in grecs if r["backbone"]["name"] == "scratch"]
        columns = _primary_columns(chosen)
        name = f"learning-{dom}-{proto}" + ("" if frac == 1.0 else f"-frac{frac:g}")
        title = f"Learning curves: {dom} tasks, {proto}, {frac * 100:g}% data"
        table = Table(name, title, columns, [], plot="learning", shared_in_title=True,
                      caption="Rows: the snapshots of each pretraining run in step order (random init: step 0); "
                              "columns: each task's primary metric; mean ± std over seeds.")
        superseded = 0
        runs = sorted(series, key=lambda k: (_backbone_rank(k[0]), k[1], k[2]))
        names = [f"{m} {run}".strip() for m, run, _ in runs]
        for (method, run, cfg), label in zip(runs, names, strict=True):
            label = label if names.count(label) == 1 else f"{label} #{runs.index((method, run, cfg)) + 1}"
            for step, rs in sorted(series[(method, run, cfg)].items()):
                cells = []
                for col in columns:
                    cell, sup = _pool(rs, col.key)
                    superseded += sup
                    cells.append(cell)
                flops = _pretrain(rs[0]).get("flops")
                flops = float(flops) if isinstance(flops, int | float) else None
                sha = str(rs[0]["backbone"].get("weights_sha256", ""))
                for c in cells:
                    if c is not None:
                        c.weights_sha256 = sha
                table.rows.append(Row(f"{label} · step {step} · {_fmt_flops(flops)}", cells,
                                      backbone=str(rs[0]["backbone"]["name"]), weights_sha256=sha,
                                      color_key=method, series=label, step=step, flops=flops))
        if steps_differ_in_compute(table.rows):
            table.caption += (" The runs differ in FLOPs per step: compare them at equal pretraining FLOPs (the plot's "
                              "x axis), not at equal steps.")
        if scratch:
            rows, sup, _ = _rows_from(scratch, "scratch (random init)", columns)
            superseded += sup
            for r in rows:
                r.series, r.step, r.flops = "scratch", 0, 0.0
            table.rows[0:0] = rows
        _with_baselines(table, chosen + scratch)
        tables.append(_finish(table, superseded))
    return tables


def probes_table(records: Sequence[Mapping[str, Any]]) -> Table | None:
    """The ``probes`` table of every non-smoke ``probe-*`` record (None when there is none)."""
    recs = [r for r in records if not r["smoke"] and str(r["task"]["name"]).startswith(PROBE_PREFIX)]
    recs = without_curve_points(recs)
    if not recs:
        return None

    def prank(c: Column) -> tuple:
        p = c.key.protocol
        return (PROTOCOL_ORDER.index(p) if p in PROTOCOL_ORDER else len(PROTOCOL_ORDER), p)

    columns = sorted(_primary_columns(recs), key=prank)  # stable: task order kept within a protocol
    table = Table("probes", "Probes of 3D human understanding on frozen features", columns, [], plot="bars",
                  caption="Rows: backbones; columns: the primary metric of every probe task, grouped by protocol; "
                          "mean ± std over seeds. Snapshots of a run: the learning-curve tables.")
    superseded = add_backbone_rows(table, recs, columns)
    _with_baselines(table, recs)
    return _finish(table, superseded)
