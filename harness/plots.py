"""Deterministic PNG plots of leaderboard tables (matplotlib, Agg backend).

- ``bars``: one PNG per task of a table, one panel per metric, one bar per measured row (mean), error bars =
  std over seeds, the metric's direction in the axis label.
- ``curve``: data-efficiency curves (CroCo-Man's fine-tuning with less labelled data): one panel per
  (task, metric), x = fraction of the training set (log scale), one line per row, error bars = std.
- ``learning``: learning curves of pretraining (``harness.table_curves``): per task, the primary metric against
  pretraining steps and against pretraining FLOPs, one line per run (its snapshots), random init at 0; against
  FLOPs only when the runs differ in FLOPs per step (methods under one FLOP budget), so that they share one axis.

Every panel draws the task's trivial baseline (the table's baseline row: training mean / majority / chance) as
a dashed black reference line. Legends sit outside the axes, so they never hide a point.

Published rows are never plotted (they were not measured here). Output is byte-identical across runs: a
fixed style (matplotlib defaults + DejaVu Sans, which ships with matplotlib), fixed size and dpi, no
``Software`` metadata, and nothing that depends on time or on the user's matplotlibrc.
"""

from __future__ import annotations

import io
import re
import textwrap
from typing import Any

from harness.table_curves import steps_differ_in_compute
from harness.tables import Column, Table, metric_name

PALETTE = {"cpc": "#d62728", "mae": "#1f77b4", "dino": "#2ca02c", "supervised": "#9467bd", "scratch": "#7f7f7f"}
EXTRA = ("#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#393b79", "#637939", "#843c39")
RC = {"font.family": "DejaVu Sans", "font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9,
      "xtick.labelsize": 8, "ytick.labelsize": 8, "legend.fontsize": 8, "figure.dpi": 100, "savefig.dpi": 100,
      "path.simplify": False, "svg.hashsalt": "cpcbench", "axes.grid": True, "grid.alpha": 0.3}

def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def _colors(table: Table) -> list[str]:
    out, extra = [], 0
    for r in table.measured_rows:
        if r.color_key in PALETTE and PALETTE[r.color_key] not in out:
            out.append(PALETTE[r.color_key])
        else:
            out.append(EXTRA[extra % len(EXTRA)])
            extra += 1
    return out


def _short(label: str) -> str:
    """A checkpoint path as a row label becomes its run directory's name (``runs/x/final.safetensors`` -> x)."""
    if "/" in label and "." in label.rsplit("/", 1)[-1]:
        parent = label.rsplit("/", 2)
        return parent[-2] if len(parent) > 1 and parent[-2] else label
    return label


def _ylabel(col: Column) -> str:
    name = metric_name(col.key.metric)
    return f"{name}" + (f" [{col.unit}]" if col.unit else "") + (" (higher is better)" if col.higher_is_better
                                                                   else " (lower is better)")


BASELINE_STYLE = {"color": "black", "linestyle": "--", "linewidth": 1.0, "zorder": 1.5}
BASELINE_LEGEND = "trivial baseline"


def _baselines(table: Table, j: int) -> list[tuple[str, float]]:
    """(legend label, value) of every trivial baseline of column ``j`` (the table's baseline rows)."""
    out = []
    for r in table.baseline_rows:
        if r.cells[j] is not None:
            kind = r.label.partition("(")[2].rstrip(")") if r.label != table.baseline_rows[0].label else ""
            out.append((BASELINE_LEGEND + (f" ({kind})" if kind else ""), r.cells[j].mean))
    return out


def _baseline(table: Table, j: int) -> float | None:
    """The trivial baseline of column ``j`` (the table's first baseline row), or None."""
    cell = next((r.cells[j] for r in table.baseline_rows[:1] if r.cells[j] is not None), None)
    return None if cell is None else cell.mean


def _reference_lines(ax: Any, table: Table, j: int) -> None:
    """Horizontal dashed (dotted for other kinds) lines at the trivial baselines of column ``j``."""
    for i, (label, value) in enumerate(_baselines(table, j)):
        ax.axhline(value, label=label, **{**BASELINE_STYLE, "linestyle": "--" if i == 0 else ":"})


def _legend(fig: Any, axes: Any) -> None:
    """One legend, right of the panels, with every label drawn in any panel (first handle of each)."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(lab, h)
    if seen:
        # as many columns as fit the figure's width (a label of n characters at 8 pt is ~0.07 n inches, plus its
        # marker): long run names on a one-panel figure go one per row instead of running off the image
        width = max(len(lab) for lab in seen) * 0.07 + 0.6
        ncols = max(1, min(len(seen), 3, int(fig.get_figwidth() // width)))
        fig.legend(list(seen.values()), list(seen), loc="outside lower center", ncols=ncols)


def _render(draw: Any, n_panels: int, title: str, nrows: int = 1) -> bytes:
    """``draw(axes)`` on ``nrows`` x ``n_panels`` panels (flattened), a title and the legend; the PNG bytes."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    with plt.style.context("default"), matplotlib.rc_context(RC):
        fig = Figure(figsize=(max(3.2 * n_panels, 4.0), 3.4 * nrows + 0.5), layout="constrained")
        axes = list(fig.subplots(nrows, n_panels, squeeze=False).flat)
        draw(axes)
        _legend(fig, axes)
        # wrapped to the figure's width (~0.1 inch per character of the 12 pt title): a one-panel figure's long
        # title (task, protocol, data tag) would run off both edges of the image
        fig.suptitle("\n".join(textwrap.wrap(title, max(30, int(fig.get_figwidth() / 0.1)))))
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def bars(table: Table) -> dict[str, bytes]:
    """One PNG per column group (task/version/protocol/fraction) with at least one measured value."""
    groups: dict[tuple, list[int]] = {}
    for j, col in enumerate(table.columns):
        if col.measured:
            groups.setdefault(col.key.group, []).append(j)
    all_rows = table.measured_rows
    all_colors = _colors(table)
    out: dict[str, bytes] = {}
    for group, idx in groups.items():
        keep = [i for i, r in enumerate(all_rows) if any(r.cells[j] is not None for j in idx)]
        if not keep:
            continue
        task, version, _, protocol, fraction, limit, setting = group
        rows, colors = [all_rows[i] for i in keep], [all_colors[i] for i in keep]

        def draw(axes: Any, idx: list[int] = idx, rows: list = rows, colors: list[str] = colors) -> None:
            for ax, j in zip(axes, idx, strict=True):
                col = table.columns[j]
                xs = list(range(len(rows)))
                means = [r.cells[j].mean if r.cells[j] is not None else 0.0 for r in rows]
                errs = [(r.cells[j].std or 0.0) if r.cells[j] is not None else 0.0 for r in rows]
                ax.bar(xs, means, yerr=errs, color=colors, capsize=3, edgecolor="black", linewidth=0.5)
                for x, r in zip(xs, rows, strict=True):
                    if r.cells[j] is None:
                        ax.text(x, 0, "n/a", ha="center", va="bottom", fontsize=7)
                ax.set_xticks(xs, [_short(r.label) for r in rows], rotation=30, ha="right")
                ax.set_ylabel(_ylabel(col))
                _reference_lines(ax, table, j)

        title = f"{task} v{version} ({protocol}, {fraction * 100:g}% data" + (
            f", smoke limit {limit}" if limit is not None else "") + (f", {setting}" if setting else "") + ")"
        name = _safe(f"{table.name}--{task}-v{version}-{protocol}-f{fraction:g}") + (
            f"-limit{limit}" if limit is not None else "") + (f"-{_safe(setting)}" if setting else "") + ".png"
        out[name] = _render(draw, len(idx), title)
    return out


def _split_steps(setting: str) -> tuple[str, str]:
    """``"steps=200, data=x"`` -> (``"data=x"``, ``"200"``): a setting without its fine-tuning steps, and the steps."""
    parts = [p for p in setting.split(", ") if p]
    steps = [p.partition("=")[2] for p in parts if p.startswith("steps=")]
    return ", ".join(p for p in parts if not p.startswith("steps=")), (steps[0] if steps else "")


def curves(table: Table) -> dict[str, bytes]:
    """One PNG: a panel per (task, version, protocol, metric), x = data fraction, a line per measured row.

    A schedule that grows with the labels (more fine-tuning steps on more data) is one curve: the steps of each
    fraction are named in the panel's title; any other setting (frame set, batch, ...) keeps columns apart."""
    panels: dict[tuple, list[int]] = {}
    for j, col in enumerate(table.columns):
        k = col.key
        if col.measured:
            panels.setdefault((k.task, k.version, k.task_protocol, k.protocol, k.limit, _split_steps(k.setting)[0],
                               k.metric), []).append(j)
    rows = table.measured_rows
    if not panels or not any(c is not None for r in rows for c in r.cells):
        return {}
    colors = _colors(table)

    def draw(axes: Any) -> None:
        for ax, (key, idx) in zip(axes, panels.items(), strict=True):
            task, version, _, protocol, _, setting, _ = key
            idx = sorted(idx, key=lambda j: table.columns[j].key.fraction)
            for r, color in zip(rows, colors, strict=True):
                pts = [(table.columns[j].key.fraction, r.cells[j]) for j in idx if r.cells[j] is not None]
                if not pts:
                    continue
                ax.errorbar([f for f, _ in pts], [c.mean for _, c in pts], yerr=[c.std or 0.0 for _, c in pts],
                            label=_short(r.label), color=color, marker="o", markersize=3, capsize=3, linewidth=1.2)
            base = [(table.columns[j].key.fraction, _baseline(table, j)) for j in idx]
            base = [(f, b) for f, b in base if b is not None]
            if len(base) == 1:
                ax.axhline(base[0][1], label=BASELINE_LEGEND, **BASELINE_STYLE)
            elif base:  # a line through the baseline at each fraction (its training mean changes with the fraction)
                ax.plot([f for f, _ in base], [b for _, b in base], label=BASELINE_LEGEND, **BASELINE_STYLE)
            fracs = [table.columns[j].key.fraction for j in idx]
            ax.set_xscale("log")
            ax.set_xticks(fracs, [f"{f * 100:g}%" for f in fracs])
            ax.minorticks_off()
            ax.set_xlabel("fraction of the training set")
            ax.set_ylabel(_ylabel(table.columns[idx[0]]))
            steps = {table.columns[j].key.fraction: _split_steps(table.columns[j].key.setting)[1] for j in idx}
            if len(set(steps.values())) > 1:  # name each fraction's steps
                setting = ", ".join(p for p in (setting, "steps " + " / ".join(
                    f"{st or 'default'} at {f * 100:g}%" for f, st in sorted(steps.items()))) if p)
            elif any(steps.values()):
                setting = ", ".join(p for p in (f"steps={next(iter(steps.values()))}", setting) if p)
            ax.set_title("\n".join(textwrap.wrap(f"{task} v{version} ({protocol}" + (f", {setting})" if setting
                                                                                      else ")"), 40)))

    return {_safe(f"{table.name}--curves") + ".png": _render(draw, len(panels), table.title)}


def flops_unit(max_flops: float) -> tuple[str, float]:
    """(unit, scale) for a FLOPs axis reaching ``max_flops``: GFLOP, TFLOP, PFLOP or EFLOP."""
    unit, scale = "GFLOP", 1e9
    for u, sc in (("TFLOP", 1e12), ("PFLOP", 1e15), ("EFLOP", 1e18)):
        if max_flops >= sc:
            unit, scale = u, sc
    return unit, scale


def learning(table: Table) -> dict[str, bytes]:
    """One PNG: a row of two panels per column (task's primary metric): against pretraining steps and against
    pretraining FLOPs (linear axis); a line per run (its snapshots), ``scratch`` as a grey point at 0, error
    bars = std. Runs that differ in FLOPs per step get the FLOPs panel only: their steps are not comparable."""
    cols = [j for j, c in enumerate(table.columns) if c.measured]
    rows = [r for r in table.measured_rows if r.step is not None]
    if not cols or not any(r.cells[j] is not None for r in rows for j in cols):
        return {}
    series = list(dict.fromkeys(r.series for r in rows if r.series != "scratch"))
    keys = [next(r.color_key for r in rows if r.series == s) for s in series]
    palette, extra = [], 0
    for k in keys:
        if k in PALETTE and PALETTE[k] not in palette:
            palette.append(PALETTE[k])
        else:
            palette.append(EXTRA[extra % len(EXTRA)])
            extra += 1
    flops = [r.flops for r in rows if r.flops is not None]
    unit, scale = flops_unit(max(flops, default=0.0))
    kinds = ("flops",) if steps_differ_in_compute(rows) else ("step", "flops")

    def draw(axes: Any) -> None:
        for i, j in enumerate(cols):
            col = table.columns[j]
            for ax, xkind in zip(axes[len(kinds) * i:len(kinds) * (i + 1)], kinds, strict=True):
                for s, color in zip(series, palette, strict=True):
                    pts = [(r.step if xkind == "step" else r.flops, r.cells[j]) for r in rows
                           if r.series == s and r.cells[j] is not None]
                    pts = [(x, c) for x, c in pts if x is not None]
                    if pts:
                        xs = [x if xkind == "step" else x / scale for x, _ in pts]
                        ax.errorbar(xs, [c.mean for _, c in pts], yerr=[c.std or 0.0 for _, c in pts], label=s,
                                    color=color, marker="o", markersize=3, capsize=3, linewidth=1.2)
                for r in rows:
                    if r.series == "scratch" and r.cells[j] is not None:
                        c = r.cells[j]
                        ax.errorbar([0], [c.mean], yerr=[c.std or 0.0], label="scratch (random init)",
                                    color=PALETTE["scratch"], marker="s", markersize=5, capsize=3, linestyle="none")
                _reference_lines(ax, table, j)
                ax.set_xlabel("pretraining steps" if xkind == "step" else f"pretraining compute [{unit}]")
                ax.set_xlim(left=-0.04 * ax.get_xlim()[1])  # the point at 0 whole, off the frame
                ax.set_ylabel(_ylabel(col))
                ax.set_title(f"{col.key.task} v{col.key.version} ({col.key.protocol})")

    return {_safe(f"{table.name}--learning") + ".png": _render(draw, len(kinds), table.title, nrows=len(cols))}


def table_plots(table: Table) -> dict[str, bytes]:
    if table.plot == "bars":
        return bars(table)
    if table.plot == "curve":
        return curves(table)
    if table.plot == "learning":
        return learning(table)
    if table.plot == "none":
        return {}
    raise ValueError(f"unknown plot kind {table.plot!r}")
