"""A table laid out for reading: header groups, formatted cells with their marks, row labels and notes.

``table_view(table)`` turns a ``harness.table_data.Table`` into a ``TableView`` once; the renderers of
``harness.table_render`` (Markdown, LaTeX, HTML, terminal) only write that view in their own syntax, so what a
table says (which cells are bold or marked † or ‡, the seeds behind a cell, the header text, the notes) is decided
here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.table_data import Cell, Column, Table, metric_name, pct
from harness.table_specs import _MISSING


@dataclass(frozen=True)
class HeadColumn:
    """One column's header: ``group`` spans adjacent columns with the same text (task, version, what differs)."""

    group: str
    metric: str  # display name, e.g. "PA-MPJPE"
    unit: str
    higher_is_better: bool

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"

    @property
    def label(self) -> str:
        """``"PA-MPJPE [mm] ↓"``."""
        return self.metric + (f" [{self.unit}]" if self.unit else "") + " " + self.arrow


@dataclass(frozen=True)
class ViewCell:
    """A filled cell: mean ``value`` ± ``std`` (None: one seed or a published number) at ``decimals``;
    ``bold``: best of its column; ``dagger``: significantly worse than the best (``p_value`` of that test);
    ``ddagger``: significantly better than the trivial baseline (``baseline_p`` of that test); ``section``:
    significantly better than the random-init row (``random_init_p`` of that test); ``n``: the seeds
    behind it where that differs from the table's usual number, else None (always None in a baseline row)."""

    value: float
    std: float | None
    decimals: int
    bold: bool = False
    dagger: bool = False
    p_value: float | None = None
    ddagger: bool = False
    baseline_p: float | None = None
    section: bool = False
    random_init_p: float | None = None
    n: int | None = None

    @property
    def text(self) -> str:
        """``"61.2 ± 1.3"``."""
        return fmt(self.value, self.decimals) + ("" if self.std is None else f" ± {fmt(self.std, self.decimals)}")

    @property
    def note(self) -> str:
        """``" (n=2)"`` or ``""``."""
        return "" if self.n is None else f" (n={self.n})"


@dataclass(frozen=True)
class ViewRow:
    label: str
    cells: tuple[ViewCell | None, ...]  # None: no value (shown as a dash)
    published: bool = False
    reference: int = 0  # footnote number of a published row's citation (0: none)
    baseline: bool = False  # the task's trivial predictor (not ranked)


@dataclass(frozen=True)
class TableView:
    name: str
    title: str
    caption: str
    subtitle: str  # what all columns share (protocol, fraction, schedule); "" if nothing to say
    columns: tuple[HeadColumn, ...]
    rows: tuple[ViewRow, ...]
    n_usual: int  # the number of seeds of most measured cells (0: no measured cell)
    notes: tuple[str, ...]
    references: tuple[str, ...]  # "[1] Published by others ...", one per citation

    @property
    def lead(self) -> str:
        """The line under the title: caption and (subtitle)."""
        return " ".join(x for x in (self.caption, f"({self.subtitle})" if self.subtitle else "") if x)

    @property
    def spans(self) -> list[tuple[str, int]]:
        """(group text, number of adjacent columns it heads)."""
        spans: list[tuple[str, int]] = []
        for col in self.columns:
            if spans and spans[-1][0] == col.group:
                spans[-1] = (col.group, spans[-1][1] + 1)
            else:
                spans.append((col.group, 1))
        return spans

    @property
    def first_published(self) -> int:
        """Index of the first published row (a separator goes before it); -1 if none."""
        return next((i for i, r in enumerate(self.rows) if r.published), -1)

    @property
    def seeds_note(self) -> str:
        return seeds_note(self.n_usual) if self.n_usual else ""

    @property
    def all_notes(self) -> list[str]:
        """Seeds note, the table's notes, then the references."""
        return ([self.seeds_note] if self.n_usual else []) + [*self.notes, *self.references]


# ---------------------------------------------------------------------------------------------- text pieces
def fmt(x: float, decimals: int) -> str:
    s = f"{x:.{decimals}f}"
    return "0." + "0" * decimals if s.startswith("-") and float(s) == 0 else s  # no "-0.0"


def plural(n: int, noun: str) -> str:
    """``"1 seed"``, ``"3 seeds"``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def seeds_note(n: int) -> str:
    """The note under a table about its cells' seeds (n: the usual number of seeds per cell)."""
    return f"Mean ± std over seeds (std with ddof=1; {plural(n, 'seed')} per cell unless marked n=...)."


def setting_parts(setting: str) -> list[str]:
    """``"steps=150, img_size=96"`` -> ``["steps=150", "img_size=96"]``."""
    return [p for p in setting.split(", ") if p]


def shared_setting(table: Table) -> list[str]:
    """The setting parts every measured column has (said once under the title; the header names the rest)."""
    settings = [setting_parts(c.key.setting) for c in table.columns if c.measured]
    if not settings:
        return []
    return [p for p in settings[0] if all(p in s for s in settings[1:])]


def group_label(table: Table, col: Column) -> str:
    """Task (+ version; + eval protocol / fraction / limit where the table's columns differ in them)."""
    k = col.key
    if not col.measured:
        return f"{k.task} (published only)"
    parts = [f"{k.task} v{k.version}"]
    if table.shared("protocol") is _MISSING:
        parts.append(k.protocol)
    if table.shared("fraction") is _MISSING:
        parts.append(pct(k.fraction))
    if table.shared("limit") is _MISSING and k.limit is not None:
        parts.append(f"limit {k.limit}")
    common = shared_setting(table)
    own = [p for p in setting_parts(k.setting) if p not in common]
    if own:
        parts.append(", ".join(own))
    return " · ".join(parts)


def subtitle(table: Table) -> str:
    """What all columns share (protocol, fraction, non-default schedule), for the header line."""
    bits: list[str] = []
    proto, frac = table.shared("protocol"), table.shared("fraction")
    if proto is not _MISSING and not table.shared_in_title:
        bits.append(f"protocol: {proto}")
    if frac is not _MISSING and not table.shared_in_title:
        bits.append(f"training data: {pct(frac)}")
    setting = shared_setting(table)
    if setting:
        bits.append(f"schedule: {', '.join(setting)}")
    return "; ".join(bits)


def modal_n(table: Table) -> int:
    """The most common number of seeds among the measured cells (ties: the smaller); 0 if none."""
    counts: dict[int, int] = {}
    for r in table.measured_rows:
        for c in r.cells:
            if c is not None:
                counts[c.n] = counts.get(c.n, 0) + 1
    return max(sorted(counts), key=lambda n: counts[n]) if counts else 0


def citations(table: Table) -> list[str]:
    """The distinct citations of the published rows, in order (footnote i+1 = citations[i])."""
    return list(dict.fromkeys(r.citation for r in table.published_rows))


def reference_notes(table: Table) -> list[str]:
    out = []
    for i, cite in enumerate(citations(table), 1):
        who = ", ".join(r.label for r in table.published_rows if r.citation == cite)
        out.append(f"[{i}] Published by others, not measured by cpcbench ({who}): {cite}")
    return out


# ---------------------------------------------------------------------------------------------- the view
def _view_cell(cell: Cell, col: Column, n_usual: int, baseline: bool = False) -> ViewCell:
    # published cells have no seeds; a baseline cell's seeds only pair it with the measured ones (its mean is over
    # records, shown as before)
    shown_n = cell.n if cell.per_seed and cell.n != n_usual and not baseline else None
    return ViewCell(cell.mean, cell.std, col.decimals, bold=cell.best, dagger=cell.worse, p_value=cell.p_value,
                    ddagger=cell.beats_baseline, baseline_p=cell.baseline_p, section=cell.beats_random_init,
                    random_init_p=cell.random_init_p, n=shown_n)


def table_view(table: Table) -> TableView:
    """Lay ``table`` out for reading (every renderer writes this and only this)."""
    n_usual = modal_n(table)
    cites = citations(table)
    rows = tuple(
        ViewRow(r.label, tuple(None if c is None else _view_cell(c, col, n_usual, r.source == "baseline")
                               for c, col in zip(r.cells, table.columns, strict=True)),
                published=r.source == "published",
                reference=cites.index(r.citation) + 1 if r.source == "published" else 0,
                baseline=r.source == "baseline")
        for r in table.rows)
    columns = tuple(HeadColumn(group_label(table, c), metric_name(c.key.metric), c.unit, c.higher_is_better)
                    for c in table.columns)
    return TableView(table.name, table.title, table.caption, subtitle(table), columns, rows, n_usual,
                     tuple(table.notes), tuple(reference_notes(table)))
