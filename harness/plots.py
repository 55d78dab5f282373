"""Deterministic PNG plots of leaderboard tables (matplotlib, Agg backend).

- ``bars``: one PNG per task of a table, one panel per metric, one bar per measured row (mean), error bars =
  std over seeds, the metric's direction in the axis label.
- ``curve``: data-efficiency curves (CroCo-Man's fine-tuning with less labelled data): one panel per
  (task, metric), x = fraction of the training set (log scale), one line per row, error bars = std.

Published rows are never plotted (they were not measured here). Output is byte-identical across runs: a
fixed style (matplotlib defaults + DejaVu Sans, which ships with matplotlib), fixed size and dpi, no
``Software`` metadata, and nothing that depends on time or on the user's matplotlibrc.
"""

from __future__ import annotations

import io
import re
from typing import Any

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


def _render(draw: Any, n_panels: int, title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    with plt.style.context("default"), matplotlib.rc_context(RC):
        fig = Figure(figsize=(max(3.2 * n_panels, 4.0), 3.4))
        axes = fig.subplots(1, n_panels, squeeze=False)[0]
        draw(axes)
        fig.suptitle(title)
        fig.tight_layout()
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

        title = f"{task} v{version} ({protocol}, {fraction * 100:g}% data" + (
            f", smoke limit {limit}" if limit is not None else "") + (f", {setting}" if setting else "") + ")"
        name = _safe(f"{table.name}--{task}-v{version}-{protocol}-f{fraction:g}") + (
            f"-limit{limit}" if limit is not None else "") + (f"-{_safe(setting)}" if setting else "") + ".png"
        out[name] = _render(draw, len(idx), title)
    return out


def curves(table: Table) -> dict[str, bytes]:
    """One PNG: a panel per (task, version, protocol, metric), x = data fraction, a line per measured row."""
    panels: dict[tuple, list[int]] = {}
    for j, col in enumerate(table.columns):
        k = col.key
        if col.measured:
            panels.setdefault((k.task, k.version, k.task_protocol, k.protocol, k.limit, k.setting, k.metric),
                              []).append(j)
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
            fracs = [table.columns[j].key.fraction for j in idx]
            ax.set_xscale("log")
            ax.set_xticks(fracs, [f"{f * 100:g}%" for f in fracs])
            ax.minorticks_off()
            ax.set_xlabel("fraction of the training set")
            ax.set_ylabel(_ylabel(table.columns[idx[0]]))
            ax.set_title(f"{task} v{version} ({protocol}" + (f", {setting})" if setting else ")"))
        seen: dict[str, Any] = {}  # one legend with every row drawn in any panel (not only the first panel's)
        for ax in axes:
            for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
                seen.setdefault(lab, h)
        axes[0].legend(list(seen.values()), list(seen), loc="best")

    return {_safe(f"{table.name}--curves") + ".png": _render(draw, len(panels), table.title)}


def table_plots(table: Table) -> dict[str, bytes]:
    if table.plot == "bars":
        return bars(table)
    if table.plot == "curve":
        return curves(table)
    if table.plot == "none":
        return {}
    raise ValueError(f"unknown plot kind {table.plot!r}")
