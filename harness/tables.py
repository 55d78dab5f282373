"""Comparable tables from result records: cells, rows selected by filters, significance, table specs.

``cpcbench tables`` turns the append-only records of ``results/`` (``harness.results``) into tables that
compare backbones honestly (STYLE.md 8-9: tables are derived by one command and never edited):

- A **cell** is one (row, column): column = (task, task version, task protocol, eval protocol, data
  fraction, smoke limit, fine-tuning setting where it differs from the task's defaults (steps, batch size,
  LR, input size; and, below fraction 1, records whose training statistics came from the full split), metric);
  row = backbone weights. Records that differ in any of these never share a cell, and a header names what
  varies between a table's columns. Records of the same cell pool their per-seed values (a
  sweep writes one record per seed, ``cpcbench eval --seeds 3`` one record with three seeds); a seed
  measured twice keeps its newest record. The cell shows the mean and the std (ddof=1) over seeds, as
  ``harness.results.summarize`` defines them.
- A **row** is a set of records chosen by a filter on record fields (dotted paths into the record, e.g.
  ``{method: cpc, pretrain.data.pair_mix: 1.0}``). Records of one row with different weights (another
  pretraining run) are split into separate rows, never averaged together.
- **Best** per column (by the metric's direction) is bold. Another row's cell is marked † only when a
  paired t-test over the per-seed values matched by seed (``scipy.stats.ttest_rel``, two-sided, >= 3 common
  seeds) rejects equality with the best at level ``alpha``; otherwise it is unmarked and the notes say why
  (``harness.table_data.mark_best``).
- A **trivial baseline** row (the records' ``baseline_mean``: training mean / majority / chance, per seed from
  that seed's training subset) is never ranked; a measured cell that the same paired test finds better than it is
  marked ‡ (``harness.table_data.mark_beats_baseline``); one better than the table's random-init row (the positive
  control) is marked § (``mark_beats_random_init``).
- **Published** reference numbers (``leaderboards/published.yaml``: other methods' papers) appear only in
  rows marked "published" with their citation; they never take part in best/significance.
- Records from ``--limit`` runs (``smoke``) never enter a paper table; main tables show them only when
  asked (``include_smoke``), in their own tables labelled as smoke runs.

Table layouts of the paper (CroCo-Man, CVPR 2024: pretraining comparison on body and on hand tasks, the
cross-view / cross-pose ablation, human-aware vs uniform masking, data efficiency) are declarative YAML
specs (``harness.table_specs.TableSpec``) in ``leaderboards/specs/``; see ``leaderboards/specs/README.md``.

Modules, each importing only the ones above it: ``table_specs`` (specs, record filters) -> ``table_data`` (the
table: columns, cells, rows, significance) -> ``tables`` (built from records) and ``table_view`` (laid out for
reading) -> ``table_render`` (Markdown, LaTeX, HTML, terminal) -> ``html`` (the page) -> ``leaderboard`` (files).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from harness.results import TRAIN_STATS
from harness.table_data import (  # noqa: F401  (re-exported: the tables API in one place)
    ALIGNED_NOTE,
    METRIC_NAMES,
    Cell,
    Column,
    ColumnKey,
    Row,
    Table,
    aligned_baselines,
    baseline_cell,
    mark_beats_baseline,
    mark_beats_random_init,
    mark_best,
    mdd_note,
    metric_name,
    min_detectable,
    paired_p,
    pct,
)
from harness.table_specs import (  # noqa: F401  (re-exported)
    _MISSING,
    DOMAIN_ORDER,
    ColumnSpec,
    Published,
    RowSpec,
    TableError,
    TableSpec,
    _equal,
    backbone_label,
    get_field,
    is_reference_cnn,
    load_published,
    load_spec,
    load_specs,
    matches,
    task_domain,
)

METHOD_ORDER = ("cpc", "mae", "dino", "supervised", "scratch")
TASK_ORDER = ("synth-body-mesh", "synth-body-meshfree", "synth-body-2d", "synth-body-parts", "3dpw", "emdb",
              "h36m-p1", "h36m-p2", "synth-hand-mesh", "synth-hand-gesture", "freihand", "ho3d",
              "probe-body-facing", "probe-body-depth", "probe-body-xview", "probe-body-xpose", "probe-hand-orient",
              "probe-hand-artic")


# ---------------------------------------------------------------------------------------------- building
def _decimals(unit: str) -> int:
    return {"mm": 1, "%": 1, "deg": 1, "px": 2, "cm": 2}.get(unit, 3)


def _task_rank(task: str) -> tuple[int, str]:
    return (TASK_ORDER.index(task) if task in TASK_ORDER else len(TASK_ORDER), task)


def _backbone_rank(name: str) -> tuple[int, str]:
    """Methods in ``METHOD_ORDER``, then every other backbone (checkpoints, timm weights), then the reference CNNs
    (diagnostics, last)."""
    if name in METHOD_ORDER:
        return METHOD_ORDER.index(name), name
    return len(METHOD_ORDER) + is_reference_cnn(name), name


SETTING_KEYS = ("steps", "batch_size", "base_lr", "img_size", "layer_decay")


def setting_string(values: Mapping[str, Any], defaults: Mapping[str, Any], limit: int | None,
                   fraction: float = 1.0) -> str:
    """``"steps=50, img_size=96"``: the settings that differ from the task's defaults ("" if none).

    A value without a default to compare with is always named. Steps are ignored for smoke runs (``--limit``
    caps them; smoke runs are kept apart by ``limit`` anyway). Below fraction 1, a run whose head start and
    baseline came from the full training split (``train_stats`` not ``"fraction"``: records made before that
    fix) is ``train_stats=full-split``, so it never shares a cell with a run that saw only its fraction."""
    parts = []
    for k in SETTING_KEYS:
        v, dv = values.get(k), defaults.get(k)
        if (k == "steps" and limit is not None) or v is None or (dv is not None and _equal(v, dv)):
            continue
        parts.append(f"{k}={v:g}" if isinstance(v, int | float) else f"{k}={v}")
    if not _equal(float(fraction), 1.0) and values.get("train_stats") != TRAIN_STATS:
        parts.append("train_stats=full-split")
    return ", ".join(parts)


def eval_setting(rec: Mapping[str, Any]) -> str:
    """The fine-tuning setting of a record relative to its task's defaults (``config`` vs ``config.defaults``)."""
    cfg = rec.get("config") or {}
    return setting_string(cfg, cfg.get("defaults") or {}, rec["limit"], rec["fraction"])


def data_label(frames: str, generator: Mapping[str, Any] | None) -> str:
    """``"data=body-lab@1a2b3c"`` for a synthetic frame set: its directory's name and a hash of its generator config
    (which says what the frames are wherever they lie); "" without a generator (real data sets)."""
    import hashlib
    import json

    if not isinstance(generator, Mapping) or not generator:
        return ""
    digest = hashlib.sha256(json.dumps(dict(generator), sort_keys=True, default=str).encode()).hexdigest()[:6]
    name = str(frames or "").replace("\\", "/").rstrip("/").split("/")[-1] or "frames"
    return f"data={name}@{digest}"


def data_setting(rec: Mapping[str, Any]) -> str:
    """The synthetic frame set a record was measured on (``data_label``; "" for other data). Two frame sets never
    share a table cell or a sweep cell, even for one task version (``--data-root`` points a task at any frame set)."""
    data = rec.get("data") or {}
    if not isinstance(data, Mapping):
        return ""
    return data_label(str(data.get("frames") or ""), data.get("generator"))


def cell_setting(rec: Mapping[str, Any]) -> str:
    """Everything beyond task, protocol, fraction and limit that keeps two records apart: ``eval_setting`` and the
    frame set (``data_setting``)."""
    return ", ".join(s for s in (eval_setting(rec), data_setting(rec)) if s)


def _group_of(rec: Mapping[str, Any]) -> tuple[str, str, str, str, float, int | None, str]:
    t = rec["task"]
    return (str(t["name"]), str(t["version"]), str(t.get("protocol", "")), str(rec["protocol"]),
            float(rec["fraction"]), rec["limit"], cell_setting(rec))


def _columns_for(records: Sequence[Mapping[str, Any]], sel: ColumnSpec | None, decimals: int | None,
                 metric_order: dict[tuple[str, str], list[str]]) -> list[Column]:
    """Columns of ``records`` chosen by ``sel`` (None: all), with unit/direction read from the records."""
    found: dict[ColumnKey, tuple[str, bool]] = {}
    for rec in records:
        if sel is not None:
            if sel.task and rec["task"]["name"] != sel.task:
                continue
            if sel.domain and task_domain(rec) != sel.domain:
                continue
            if sel.fractions and not any(_equal(rec["fraction"], f) for f in sel.fractions):
                continue
        g = _group_of(rec)
        for m, spec in rec["metrics"].items():
            if sel is not None and sel.metrics and m not in sel.metrics:
                continue
            key = ColumnKey(*g, metric=m)
            unit, hib = str(spec["unit"]), bool(spec["higher_is_better"])
            if key in found and found[key] != (unit, hib):
                raise TableError(f"records of {g[0]} v{g[1]} disagree on the unit/direction of {m!r} "
                                 f"({found[key]} vs {(unit, hib)}): bump the task version when a metric changes")
            found[key] = (unit, hib)

    def rank(k: ColumnKey) -> tuple:
        order = sel.metrics if sel is not None and sel.metrics else metric_order.get((k.task, k.version), [])
        m_rank = order.index(k.metric) if k.metric in order else len(order)
        f_rank = (next(i for i, f in enumerate(sel.fractions) if _equal(f, k.fraction))
                  if sel is not None and sel.fractions else 0)
        return (*_task_rank(k.task), k.version, k.task_protocol, k.protocol, f_rank, k.fraction,
                -1 if k.limit is None else k.limit, k.setting, m_rank, k.metric)

    return [Column(k, u, h, decimals if decimals is not None else _decimals(u))
            for k, (u, h) in sorted(found.items(), key=lambda kv: rank(kv[0]))]


def _metric_order(records: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], list[str]]:
    order: dict[tuple[str, str], list[str]] = {}
    for rec in records:
        lst = order.setdefault((rec["task"]["name"], str(rec["task"]["version"])), [])
        lst.extend(m for m in rec["metrics"] if m not in lst)
    return order


def _pool(records: Sequence[Mapping[str, Any]], key: ColumnKey) -> tuple[Cell | None, int]:
    """Pool the per-seed values of ``records`` for column ``key``; returns (cell, seeds superseded)."""
    by_seed: dict[int, tuple[tuple[str, str], float]] = {}
    superseded = 0
    for rec in records:
        if _group_of(rec) != key.group or key.metric not in rec["metrics"]:
            continue
        m = rec["metrics"][key.metric]
        seeds, values = list(rec["seeds"]), m["per_seed"]
        if values is None or len(values) != len(seeds):
            raise TableError(f"record {rec.get('_path', rec['run_id'])}: metric {key.metric!r} has "
                             f"{0 if values is None else len(values)} per-seed values for seeds {seeds}")
        stamp = (str(rec.get("created", "")), str(rec["run_id"]))
        for s, v in zip(seeds, values, strict=True):
            if s in by_seed:
                superseded += 1
                if by_seed[s][0] > stamp:
                    continue
            by_seed[int(s)] = (stamp, float(v))
    if not by_seed:
        return None, 0
    per_seed = {s: v for s, (_, v) in sorted(by_seed.items())}
    vals = list(per_seed.values())
    mean = math.fsum(vals) / len(vals)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else None
    return Cell(per_seed, mean, std), superseded


def _pretrain_domain(records: Sequence[Mapping[str, Any]]) -> str:
    """The domain the weights behind ``records`` were pretrained on ('' if unknown or mixed)."""
    doms = {str(((r["backbone"].get("pretrain") or {}).get("domain")) or "") for r in records}
    return doms.pop() if len(doms) == 1 else ""


def add_backbone_rows(table: Table, records: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> int:
    """A row per backbone of ``records`` (in the tables' backbone order) with its notes; -> values superseded."""
    superseded = 0
    for bname in sorted({str(r["backbone"]["name"]) for r in records}, key=_backbone_rank):
        brecs = [r for r in records if r["backbone"]["name"] == bname]
        rows, sup, notes = _rows_from(brecs, backbone_label(bname, brecs), columns)
        table.rows.extend(rows)
        table.notes.extend(notes)
        superseded += sup
    return superseded


def _rows_from(records: Sequence[Mapping[str, Any]], label: str, columns: Sequence[Column],
               ) -> tuple[list[Row], int, list[str]]:
    """Rows for the backbone variants (name, weights sha256) among ``records``; returns (rows, seeds superseded,
    notes).

    Weights with no records in ``columns`` are left out. Variants of one backbone name whose filled columns do not
    overlap share a row: a method pretrained once per domain (body weights on the body tasks, hand weights on the
    hand tasks), as the papers lay out their tables; the CSV names the weights of every cell. Variants that
    compete for a column keep their own rows, labelled by pretraining domain when that tells them apart, else by
    the first 8 hex digits of their weights' sha256.
    """
    variants: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for rec in records:
        bb = rec["backbone"]
        variants.setdefault((str(bb["name"]), str(bb.get("weights_sha256", ""))), []).append(rec)
    superseded = 0
    built: list[tuple[str, str, list[Mapping[str, Any]], list[Cell | None]]] = []
    for (name, sha), recs in sorted(variants.items(), key=lambda kv: (_backbone_rank(kv[0][0]), kv[0][1])):
        cells = []
        for col in columns:
            cell, sup = _pool(recs, col.key) if col.measured else (None, 0)
            if cell is not None:
                cell.weights_sha256 = sha
            cells.append(cell)
            superseded += sup
        if any(c is not None for c in cells):
            built.append((name, sha, recs, cells))
    # merge the variants of one name whose filled columns are disjoint and that are that name's only weights
    # pretrained on their domain (two hand runs of one method never share a row with the body run)
    dom_count: dict[tuple[str, str], int] = {}
    for name, _, recs, _ in built:
        key = (name, _pretrain_domain(recs))
        dom_count[key] = dom_count.get(key, 0) + 1
    merged: list[dict[str, Any]] = []
    for name, sha, recs, cells in built:
        dom = _pretrain_domain(recs)
        for m in merged:
            if (m["name"] == name and dom and dom_count[(name, dom)] == 1 and dom not in m["doms"]
                    and all(dom_count[(name, d)] == 1 for d in m["doms"])
                    and all(a is None or b is None for a, b in zip(m["cells"], cells, strict=True))):
                m["cells"] = [a if a is not None else b for a, b in zip(m["cells"], cells, strict=True)]
                m["shas"].append(sha)
                m["recs"].append(recs)
                m["doms"].append(dom)
                break
        else:
            merged.append({"name": name, "cells": cells, "shas": [sha], "recs": [recs], "doms": [dom]})
    names = [m["name"] for m in merged]
    for m in merged:
        m["dom"] = _pretrain_domain([r for rs in m["recs"] for r in rs])
    notes = []
    rows = []
    for m in merged:
        name = m["name"]
        doms = [_pretrain_domain(r) for r in m["recs"]]
        if len(m["shas"]) > 1:
            who = label if len(merged) == 1 else backbone_label(name, [r for rs in m["recs"] for r in rs])
            notes.append(f"{who}: one row for the weights pretrained on "
                         f"{' / '.join(sorted(d or '?' for d in doms))} data, each on its own tasks.")
        if len(merged) == 1:
            text = label
        elif names.count(name) == 1:
            own = backbone_label(name, [r for rs in m["recs"] for r in rs])
            text = f"{label} ({own})" if label != own else own
        else:
            same_dom = [o["dom"] for o in merged if o["name"] == name]
            text = (f"{label} ({m['dom']})" if m["dom"] and same_dom.count(m["dom"]) == 1
                    else f"{label} [{m['shas'][0][:8] or 'no weights'}]")
        rows.append(Row(text, m["cells"], backbone=name, weights_sha256="+".join(m["shas"]), color_key=name))
    return rows, superseded, notes


BASELINE_LABEL = "Trivial baseline (training mean / majority / chance)"
BASELINE_NOTE = ("Trivial baseline: the task's prediction without looking at the image (the training-set mean for "
                 "regression, the majority class for classification, a random guess for correspondence), i.e. "
                 "the records' baseline_mean; not ranked.")

def primary_metric(rec: Mapping[str, Any]) -> str:
    """The metric a task is ranked by: ``task.primary_metric`` of the record, else its first metric."""
    return str(rec["task"].get("primary_metric") or next(iter(rec["metrics"]), ""))


def baseline_rows(records: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> list[Row]:
    """Rows of the trivial baselines behind ``columns``: each cell the mean of the ``baseline_mean`` of the
    column's records, with each seed's value (``table_data.baseline_cell``); a key ``metric@kind``, e.g.
    ``pck@same_position``, makes a row of its own kind."""
    kinds: dict[str, list[Cell | None]] = {}
    for j, col in enumerate(columns):
        if not col.measured:
            continue
        found: dict[str, list[tuple[list[int], float]]] = {}
        for rec in records:
            if _group_of(rec) != col.key.group:
                continue
            for k, v in (rec.get("baseline_mean") or {}).items():
                metric, _, kind = str(k).partition("@")
                if metric == col.key.metric and v is not None and math.isfinite(float(v)):
                    found.setdefault(kind, []).append((list(rec.get("seeds") or []), float(v)))
        for kind, vals in found.items():
            kinds.setdefault(kind, [None] * len(columns))[j] = baseline_cell(vals)
    return [Row(BASELINE_LABEL if not kind else f"Trivial baseline ({kind.replace('_', ' ')})", kinds[kind],
                source="baseline") for kind in sorted(kinds)]


def _with_baselines(table: Table, records: Sequence[Mapping[str, Any]]) -> None:
    """Insert the baseline rows after the measured ones (before published rows), say what they are and mark ‡
    the measured cells that beat the plain one (``table_data.mark_beats_baseline``)."""
    rows = baseline_rows(records, table.columns)
    if not rows:
        return
    at = next((i for i, r in enumerate(table.rows) if r.source == "published"), len(table.rows))
    table.rows[at:at] = rows
    table.notes.append(BASELINE_NOTE)
    if aligned_baselines(records, table.columns, _group_of):
        table.notes.append(ALIGNED_NOTE)
    if rows[0].label == BASELINE_LABEL:
        mark_beats_baseline(table, rows[0])


def _finish(table: Table, superseded: int) -> Table:
    if superseded:
        table.notes.append(f"{superseded} seed value(s) measured twice: the newest record's value is used.")
    if any("train_stats=full-split" in c.key.setting for c in table.columns if c.measured):
        table.notes.append("train_stats=full-split: records made before the --fraction fix, whose head started from "
                           "the mean of the full training split (labels the run did not train on); never pooled "
                           "with runs that saw only their fraction. Re-run those cells (cpcbench sweep).")
    protos = sorted({(c.key.task, c.key.version, c.key.task_protocol) for c in table.columns if c.measured})
    if protos:
        table.notes.append("Task versions and protocols: " + "; ".join(
            f"{t} v{v}" + (f" ({p})" if p else "") for t, v, p in protos) + ".")
    mark_best(table)
    mark_beats_random_init(table, lambda r: r.backbone.startswith("scratch"))
    mdd_note(table)
    return table


def without_curve_points(recs: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Leave out the snapshots of a run (the learning-curve tables show them) and a file whose weights (sha256)
    already have a row under a registered name (a run's final backbone reached through ``snapshots:RUN``)."""
    def is_file(r: Mapping[str, Any]) -> bool:
        name = str(r["backbone"]["name"])
        return "/" in name or name.endswith(".safetensors")

    named = {r["backbone"].get("weights_sha256") for r in recs if not is_file(r)} - {None, ""}
    return [r for r in recs if "/snapshots/step-" not in str(r["backbone"]["name"])
            and not (is_file(r) and r["backbone"].get("weights_sha256") in named)]


def main_tables(records: Sequence[Mapping[str, Any]], include_smoke: bool = False) -> list[Table]:
    """One table per (domain, eval protocol, fraction[, smoke limit]); rows = backbones, columns = task x metric."""
    recs = without_curve_points([r for r in records if include_smoke or not r["smoke"]])
    order = _metric_order(recs)
    groups: dict[tuple[str, str, float, int | None], list[Mapping[str, Any]]] = {}
    for rec in recs:
        groups.setdefault((task_domain(rec), str(rec["protocol"]), float(rec["fraction"]), rec["limit"]),
                          []).append(rec)

    def grank(k: tuple[str, str, float, int | None]) -> tuple:
        dom, proto, frac, limit = k
        return (DOMAIN_ORDER.index(dom) if dom in DOMAIN_ORDER else len(DOMAIN_ORDER), dom, proto != "finetune",
                proto, -frac, -1 if limit is None else limit)

    tables = []
    for key in sorted(groups, key=grank):
        dom, proto, frac, limit = key
        grecs = groups[key]
        columns = _columns_for(grecs, None, None, order)
        name = f"main-{dom}-{proto}" + ("" if frac == 1.0 else f"-frac{frac:g}") + (
            "" if limit is None else f"-smoke{limit}")
        title = f"{dom.capitalize()} tasks: {proto} protocol, {pct(frac)} of the training set"
        if limit is not None:
            title = f"SMOKE RUN (--limit {limit}, not a benchmark result): " + title
        table = Table(name, title, columns, [], plot="bars", smoke=limit is not None, shared_in_title=True,
                      caption="Rows: backbones (every backbone with records); mean ± std over seeds. Snapshots of "
                              "a run: the learning-curve tables.")
        superseded = add_backbone_rows(table, grecs, columns)
        _with_baselines(table, grecs)
        tables.append(_finish(table, superseded))
    return tables


def spec_table(spec: TableSpec, records: Sequence[Mapping[str, Any]],
               published: Mapping[str, Published] | None = None) -> Table:
    """The table a spec lays out, from full (non-smoke) records only; published rows appended, marked."""
    published = published or {}
    recs = [r for r in records if not r["smoke"] and matches(r, spec.where)]
    row_recs = [[r for r in recs if matches(r, row.where)] for row in spec.rows]
    chosen = [r for rs in row_recs for r in rs]
    order = _metric_order(chosen)
    missing_pub = [p for p in spec.published if p not in published]
    if missing_pub:
        raise TableError(f"table spec {spec.name!r} asks for published entries {missing_pub} that "
                         "published.yaml does not have")
    pubs = [published[p] for p in spec.published]
    columns: list[Column] = []
    for sel in spec.columns:
        cols = _columns_for(chosen, sel, spec.decimals, order)
        if not cols and sel.task and sel.metrics:  # a declared column that only published numbers fill
            for m in sel.metrics:
                if any(m in p.results.get(sel.task, {}) for p in pubs):
                    p0 = next(p for p in pubs if m in p.results.get(sel.task, {}))
                    unit = p0.units.get(m, "")
                    dec = _decimals(unit) if spec.decimals is None else spec.decimals
                    columns.append(Column(ColumnKey(sel.task, "", "", "", 1.0, None, "", m), unit,
                                          p0.higher_is_better[m], dec, measured=False))
        columns.extend(c for c in cols if c not in columns)
    table = Table(spec.name, spec.title, columns, [], caption=spec.caption, plot=spec.plot, alpha=spec.alpha)
    superseded = 0
    empty = []
    for row, rs in zip(spec.rows, row_recs, strict=True):
        rows, sup, notes = _rows_from(rs, row.label, columns)
        table.notes.extend(notes)
        superseded += sup
        if not rows:
            empty.append(row.label)
            rows = [Row(row.label, [None] * len(columns))]
        table.rows.extend(rows)
    if empty:
        table.notes.append(f"No records yet for: {', '.join(empty)} (–).")
    for p in pubs:
        cells: list[Cell | None] = []
        for col in columns:
            v = p.results.get(col.key.task, {}).get(col.key.metric)
            cells.append(None if v is None else Cell({}, v, None))
        table.rows.append(Row(p.label, cells, source="published", citation=f"{p.citation} (source: {p.source})"))
    _with_baselines(table, chosen)
    return _finish(table, superseded)


def split_records(records: Sequence[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """(full runs, smoke runs)."""
    return [r for r in records if not r["smoke"]], [r for r in records if r["smoke"]]
