"""What a comparison table holds: comparable columns, cells pooled over seeds, rows, and significance marks.

``harness.tables`` builds a ``Table`` from result records; ``harness.table_view`` lays it out for reading
(headers, formatted cells, notes) and ``harness.table_render`` writes that layout as Markdown, LaTeX, HTML or a
terminal table. This module knows nothing of records nor of any output format.

- **Best** per column (by the metric's direction) is bold. Another row's cell is marked † only when a
  paired t-test over the per-seed values matched by seed (``scipy.stats.ttest_rel``, two-sided, >= 3 common
  seeds) rejects equality with the best at level ``alpha``; otherwise it is unmarked and the notes say why.
- A measured cell is marked ‡ when a paired t-test over the per-seed values matched by seed (two-sided, >= 3
  common seeds) rejects equality with the trivial baseline (``Table``'s baseline row: the task's prediction
  without the image, per seed from that seed's training subset) at level ``alpha`` and its mean is better
  (``mark_beats_baseline``).
- A measured cell is marked § when the same test separates it from the table's one random-init row (a backbone
  ``scratch...``) and it is better: the positive control, pretraining vs none (``mark_beats_random_init``).
- Published rows (other methods' papers) never take part in best/significance.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from harness.table_specs import _MISSING, TableError

METRIC_NAMES = {"mpjpe": "MPJPE", "pa_mpjpe": "PA-MPJPE", "pve": "PVE", "pa_pve": "PA-PVE", "pa_mpvpe": "PA-MPVPE",
                "f5": "F@5", "f15": "F@15", "auc": "AUC", "pck05": "PCK@0.05", "pck10": "PCK@0.1",
                "miou": "mIoU", "top1": "Top-1"}


def metric_name(metric: str) -> str:
    """Display name of a metric key (``pa_mpjpe`` -> ``PA-MPJPE``)."""
    return METRIC_NAMES.get(metric, metric)


def pct(frac: float) -> str:
    """A data fraction as a percentage (``0.1`` -> ``10%``)."""
    return f"{frac * 100:g}%"


@dataclass(frozen=True, order=True)
class ColumnKey:
    """What makes two measurements comparable. ``limit`` is None except for smoke runs."""

    task: str
    version: str
    task_protocol: str
    protocol: str
    fraction: float
    limit: int | None
    setting: str  # non-default fine-tuning schedule ("steps=50"), "" for the task's defaults
    metric: str

    @property
    def group(self) -> tuple[str, str, str, str, float, int | None, str]:
        return self.task, self.version, self.task_protocol, self.protocol, self.fraction, self.limit, self.setting


@dataclass(frozen=True)
class Column:
    key: ColumnKey
    unit: str
    higher_is_better: bool
    decimals: int
    measured: bool = True  # False: a column declared by a spec only to hold published numbers


@dataclass
class Cell:
    """``per_seed``: seed -> value; mean/std over seeds (std ddof=1, None for one seed)."""

    per_seed: dict[int, float]
    mean: float
    std: float | None
    best: bool = False
    worse: bool = False  # significantly worse than the best row (paired test)
    p_value: float | None = None
    tested: bool = False
    beats_baseline: bool = False  # significantly better than the trivial baseline (paired test, ‡)
    baseline_p: float | None = None  # p of that test (None: not tested)
    beats_random_init: bool = False  # significantly better than the table's random-init row (paired test, §)
    random_init_p: float | None = None  # p of that test (None: not tested)
    weights_sha256: str = ""  # the weights behind this cell (a row may merge one method's per-domain weights)

    @property
    def n(self) -> int:
        return len(self.per_seed)


@dataclass
class Row:
    """A table row. ``source``: "measured" (ranked), "baseline" (the task's trivial predictor: not ranked) or
    "published" (another paper's numbers). ``series``/``step``/``flops``: a point of a learning curve (a backbone
    snapshot ``step`` optimizer steps and ``flops`` FLOPs into the pretraining run ``series``)."""

    label: str
    cells: list[Cell | None]
    source: Literal["measured", "baseline", "published"] = "measured"
    backbone: str = ""
    weights_sha256: str = ""
    citation: str = ""
    color_key: str = ""
    series: str = ""
    step: int | None = None
    flops: float | None = None


@dataclass
class Table:
    name: str
    title: str
    columns: list[Column]
    rows: list[Row]
    caption: str = ""
    notes: list[str] = field(default_factory=list)
    plot: Literal["none", "bars", "curve", "learning"] = "none"
    alpha: float = 0.05
    smoke: bool = False
    shared_in_title: bool = False  # the title already names the shared protocol/fraction

    @property
    def measured_rows(self) -> list[Row]:
        return [r for r in self.rows if r.source == "measured"]

    @property
    def baseline_rows(self) -> list[Row]:
        return [r for r in self.rows if r.source == "baseline"]

    @property
    def published_rows(self) -> list[Row]:
        return [r for r in self.rows if r.source == "published"]

    def shared(self, attr: str) -> Any:
        """The value of a column-key attribute when every measured column shares it, else _MISSING."""
        values = {getattr(c.key, attr) for c in self.columns if c.measured}
        return values.pop() if len(values) == 1 else _MISSING


def baseline_cell(values: Sequence[tuple[Sequence[int], float]]) -> Cell:
    """A trivial-baseline cell from one (seeds, value) pair per record: the shown mean is the mean over the
    records; the per-seed value of a seed is the mean over the records that measured it (a record of several
    seeds holds one value averaged over their training subsets, so each of its seeds gets that value). No std."""
    by_seed: dict[int, list[float]] = {}
    for seeds, v in values:
        for s in seeds:
            by_seed.setdefault(int(s), []).append(float(v))
    per_seed = {s: math.fsum(vs) / len(vs) for s, vs in sorted(by_seed.items())}
    vals = sorted(float(v) for _, v in values)
    return Cell(per_seed, math.fsum(vals) / len(vals), None)


# ---------------------------------------------------------------------------------------------- significance
def paired_p(a: Mapping[int, float], b: Mapping[int, float], min_seeds: int = 3) -> tuple[int, float | None]:
    """(common seeds, two-sided p of a paired t-test over values matched by seed); p None if < min_seeds
    common seeds or the test is undefined: identical values, or two rows that are each the same on every seed (a
    deterministic evaluation of fixed weights, e.g. ``match`` or ``knn``: its seeds are not replicates)."""
    common = sorted(set(a) & set(b))
    if len(common) < min_seeds:
        return len(common), None
    import numpy as np
    from scipy.stats import ttest_rel

    if np.ptp([a[s] for s in common]) == 0 and np.ptp([b[s] for s in common]) == 0:
        return len(common), None  # both rows the same on every seed: nothing varies, nothing to test

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(ttest_rel([a[s] for s in common], [b[s] for s in common]).pvalue)
    return len(common), (p if math.isfinite(p) else None)


def min_detectable(cells: Sequence[Cell | None], alpha: float = 0.05, power: float = 0.8) -> tuple[float, int] | None:
    """(minimum detectable difference, seeds) of a column: the smallest true difference between two rows that a
    two-sided paired t-test over ``n`` seeds (the column's usual seed count) at level ``alpha`` detects with
    probability ``power``, if the rows' per-seed values scatter with the column's pooled seed std ``s`` and
    independently of each other: ``delta * sqrt(2) * s / sqrt(n)``, ``delta`` the noncentrality at which the
    noncentral t (n - 1 degrees of freedom) exceeds the test's critical value with that probability (exact, not
    the normal approximation; conservative when matched seeds share noise). None when fewer than 2 seeds or
    nothing varies over seeds."""
    import numpy as np
    from scipy.optimize import brentq
    from scipy.stats import nct, t

    spread = [c for c in cells if c is not None and c.n >= 2 and c.std is not None and math.isfinite(c.std)]
    if not spread:
        return None
    n = int(np.median([c.n for c in spread]))
    pooled = math.sqrt(sum((c.n - 1) * c.std ** 2 for c in spread) / sum(c.n - 1 for c in spread))
    if n < 2 or pooled == 0:
        return None
    crit = t.ppf(1 - alpha / 2, n - 1)

    def short(d: float) -> float:  # power at noncentrality d, minus the power wanted
        return float(nct.sf(crit, n - 1, d) + nct.cdf(-crit, n - 1, d)) - power

    hi = 4.0
    while short(hi) < 0 and hi < 64:
        hi *= 2
    if not short(hi) >= 0:  # beyond what scipy's noncentral t evaluates (2 seeds, power near 1)
        return None
    delta = brentq(short, 0.0, hi)
    return float(delta * math.sqrt(2) * pooled / math.sqrt(n)), n


def mark_best(table: Table) -> None:
    """Bold the best measured cell(s) per column and mark † where a paired test separates another row."""
    untested = 0
    for j, col in enumerate(table.columns):
        cells = [r.cells[j] for r in table.measured_rows if r.cells[j] is not None]
        if not cells:
            continue
        best_val = (max if col.higher_is_better else min)(c.mean for c in cells)
        best = [c for c in cells if math.isclose(c.mean, best_val, rel_tol=1e-12, abs_tol=1e-12)]
        for c in best:
            c.best = True
        if len(best) != 1:  # a tie for best: nothing to test against
            untested += len(cells) - len(best)
            continue
        for c in cells:
            if c.best:
                continue
            _, p = paired_p(best[0].per_seed, c.per_seed)
            c.tested, c.p_value = p is not None, p
            c.worse = p is not None and p < table.alpha
            untested += p is None
    n_rows = len([r for r in table.measured_rows if any(c is not None for c in r.cells)])
    if n_rows > 1:
        table.notes.append(
            f"Bold: best mean per column. †: worse than the bold cell by a paired t-test over per-seed values "
            f"matched by seed (two-sided, p < {table.alpha:g}, no correction for multiple comparisons); "
            f"unmarked cells are not significantly different" + (
                f", or could not be tested ({untested} cell(s): fewer than 3 seeds in common with the best "
                "row, identical values, or a tie for best)." if untested else "."))


def _mark_better(table: Table, ref: Row, flag: str, p_attr: str) -> int:
    """Set ``flag`` on every measured cell (but ``ref``'s own) that a paired t-test over the per-seed values matched
    by seed separates from ``ref``'s cell of its column at level ``alpha`` and that is better in the column's
    direction (its mean, and its mean difference over the common seeds); ``p_attr``: that test's p. -> cells tested"""
    tested = 0
    for j, col in enumerate(table.columns):
        base = ref.cells[j]
        if base is None:
            continue
        sign = 1.0 if col.higher_is_better else -1.0
        for c in (r.cells[j] for r in table.measured_rows if r is not ref):
            if c is None:
                continue
            _, p = paired_p(c.per_seed, base.per_seed)
            setattr(c, p_attr, p)
            if p is None:
                continue
            tested += 1
            common = sorted(set(c.per_seed) & set(base.per_seed))
            diff = math.fsum(c.per_seed[s] - base.per_seed[s] for s in common) / len(common)
            setattr(c, flag, p < table.alpha and sign * (c.mean - base.mean) > 0 and sign * diff > 0)
    return tested


def mark_beats_baseline(table: Table, baseline: Row) -> None:
    """Mark ‡ (``Cell.beats_baseline``) every measured cell significantly better than ``baseline``'s cell of its
    column (``_mark_better``); a note says so when any cell was tested."""
    if _mark_better(table, baseline, "beats_baseline", "baseline_p"):
        table.notes.append(
            f"‡: better than the {baseline.label[:1].lower() + baseline.label[1:]} by a paired t-test over "
            f"per-seed values matched by seed (two-sided, p < {table.alpha:g}, no correction for multiple "
            "comparisons); a cell without ‡ did not beat it significantly, or could not be tested (fewer than 3 "
            "seeds in common with the baseline, or neither varies over seeds).")


def mark_beats_random_init(table: Table, is_random_init: Callable[[Row], bool]) -> None:
    """Mark § (``Cell.beats_random_init``) every measured cell significantly better than the random-init row's cell
    of its column (``_mark_better``): the positive control's test (pretraining vs none, the same architecture).
    Only when exactly one measured row is a random init (several, e.g. two architectures: no single reference)."""
    refs = [r for r in table.measured_rows if is_random_init(r)]
    if len(refs) != 1 or len(table.measured_rows) < 2:
        return
    if _mark_better(table, refs[0], "beats_random_init", "random_init_p"):
        table.notes.append(
            f"§: better than the random-init row ({refs[0].label}) by a paired t-test over per-seed values matched "
            f"by seed (two-sided, p < {table.alpha:g}, no correction for multiple comparisons): the pretraining "
            "helped; a cell without § did not beat random init significantly, or could not be tested.")


def mdd_note(table: Table) -> None:
    """A note with every measured column's minimum detectable difference (``min_detectable``)."""
    parts, none = [], []
    seeds = set()
    measured = [c for c in table.columns if c.measured]
    protocols = len({c.key.protocol for c in measured}) > 1
    settings = len({c.key.setting for c in measured}) > 1
    tasks = {c.key.task for c in measured}
    versions = {t: len({c.key.version for c in measured if c.key.task == t}) > 1 for t in tasks}
    for j, col in enumerate(table.columns):
        if not col.measured:
            continue
        k = col.key
        name = (k.task + (f" v{k.version}" if versions[k.task] else "") + f" {metric_name(k.metric)}"
                + (f" ({k.protocol})" if protocols else "") + (f" [{k.setting or 'default'}]" if settings else ""))
        got = min_detectable([r.cells[j] for r in table.measured_rows])
        if got is None:
            none.append(name)
            continue
        seeds.add(got[1])
        parts.append(f"{name} {got[0]:.{col.decimals}f}" + (f" {col.unit}" if col.unit and col.unit != "%" else
                                                              " points" if col.unit == "%" else ""))
    if not parts and not none:
        return
    text = ("Minimum detectable difference between two rows (paired t-test over "
            f"{'/'.join(str(n) for n in sorted(seeds)) or 'their'} seeds, two-sided p < 0.05, power 0.8, from the "
            "rows' pooled seed std): " + ("; ".join(parts) if parts else "none estimable"))
    if none:
        text += "; not estimable (fewer than 2 seeds, or no seed-to-seed spread): " + ", ".join(none)
    table.notes.append(text + ".")


#: added where a column's metric is scored after a similarity alignment (``MetricSpec.aligned``)
ALIGNED_NOTE = ("Columns scored after a similarity alignment (PA-*; a hand mesh's F-scores and AUC): the trivial "
                "baseline is the Procrustes mean pose of the training subset, the constant made for those metrics "
                "(the camera-frame mean of poses facing every way is a shrunken blur).")


def aligned_baselines(records: Sequence[Mapping[str, Any]], columns: Sequence[Column],
                      group_of: Callable[[Mapping[str, Any]], tuple]) -> bool:
    """Whether any column's baseline is the Procrustes mean pose (its metric in the records' ``baseline_aligned``);
    a column whose records (``group_of`` a record: its column group) disagree, some scored before the aligned
    baseline existed, is refused."""
    any_aligned = False
    for col in columns:
        if not col.measured:
            continue
        flags = {col.key.metric in (rec.get("baseline_aligned") or []) for rec in records
                 if group_of(rec) == col.key.group and col.key.metric in (rec.get("baseline_mean") or {})}
        if len(flags) > 1:
            raise TableError(f"the records of {col.key.task} {col.key.metric} mix two trivial baselines (camera-frame "
                             "and Procrustes mean): rescore the older ones with `python -m harness.rebaseline`")
        any_aligned |= flags == {True}
    return any_aligned
