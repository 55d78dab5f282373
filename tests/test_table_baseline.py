"""‡: a measured cell significantly better than the trivial baseline (training mean / majority / chance) by a paired
t-test over the per-seed values matched by seed, from constructed records, and how every format writes the mark."""

from __future__ import annotations

import csv
import io

import pytest
from test_table_curves import rec

from harness.leaderboard import to_csv
from harness.table_render import latex_escape, to_html, to_latex, to_markdown, to_rich
from harness.tables import BASELINE_LABEL, Table, main_tables

BASE = {"pa_mpjpe": 60.0, "pck": 50.0}  # lower-is-better mm, higher-is-better %


def table_of(*recs: dict) -> Table:
    (table,) = main_tables(list(recs))
    return table


def cell(table: Table, row: str, metric: str):  # noqa: ANN201 (a harness.table_data.Cell)
    j = next(i for i, c in enumerate(table.columns) if c.key.metric == metric)
    return next(r for r in table.rows if r.label == row).cells[j]


def note(table: Table) -> list[str]:
    return [n for n in table.notes if n.startswith("‡")]


def test_a_row_clearly_better_on_three_seeds_gets_the_mark() -> None:
    t = table_of(rec("synth-body-mesh", "cpc", {"pa_mpjpe": [50.0, 51.0, 52.0], "pck": [60.0, 61.0, 62.0]},
                     baseline=BASE))
    for m in ("pa_mpjpe", "pck"):
        c = cell(t, "cpc", m)
        assert c.beats_baseline and c.baseline_p is not None and c.baseline_p < 0.05
    base = cell(t, BASELINE_LABEL, "pa_mpjpe")
    assert base.per_seed == {0: 60.0, 1: 60.0, 2: 60.0} and base.mean == 60.0 and base.std is None
    assert not base.beats_baseline  # the baseline row is not tested against itself
    assert note(t) == ["‡: better than the trivial baseline (training mean / majority / chance) by a paired t-test "
                       "over per-seed values matched by seed (two-sided, p < 0.05, no correction for multiple "
                       "comparisons); a cell without ‡ did not beat it significantly, or could not be tested (fewer "
                       "than 3 seeds in common with the baseline, or neither varies over seeds)."]


def test_the_direction_matters_a_worse_mean_never_gets_the_mark() -> None:
    """Worse than the baseline by a wide margin (p tiny) in either direction of the metric: no ‡."""
    t = table_of(rec("synth-body-mesh", "mae", {"pa_mpjpe": [70.0, 71.0, 72.0], "pck": [40.0, 41.0, 42.0]},
                     baseline=BASE))
    for m in ("pa_mpjpe", "pck"):
        c = cell(t, "mae", m)
        assert c.baseline_p is not None and c.baseline_p < 0.01 and not c.beats_baseline
    assert note(t)  # tested, so the note is there: the absence of ‡ means something


def test_equal_or_too_few_seeds_or_not_significant_get_no_mark() -> None:
    t = table_of(rec("synth-body-mesh", "cpc", {"pa_mpjpe": [59.0, 60.0, 61.0]}, baseline=BASE),  # equal mean
                 rec("synth-body-mesh", "mae", {"pa_mpjpe": [50.0, 51.0]}, baseline=BASE, seeds=(0, 1)),
                 rec("synth-body-mesh", "dino", {"pa_mpjpe": [50.0, 65.0, 55.0]}, baseline=BASE))  # better, p~0.5
    eq, few, noisy = (cell(t, b, "pa_mpjpe") for b in ("cpc", "mae", "dino"))
    assert not eq.beats_baseline and eq.baseline_p == pytest.approx(1.0)
    assert not few.beats_baseline and few.baseline_p is None
    assert noisy.mean < 60.0 and noisy.baseline_p > 0.05 and not noisy.beats_baseline
    assert "‡" not in to_markdown(t).split("\n- ")[0]  # no cell marked (the note still explains the mark)


def test_no_note_when_no_cell_could_be_tested() -> None:
    t = table_of(rec("synth-body-mesh", "cpc", {"pa_mpjpe": [50.0]}, baseline=BASE, seeds=(0,)))
    assert cell(t, "cpc", "pa_mpjpe").baseline_p is None and not note(t)
    assert "‡" not in to_markdown(t)


def test_values_are_paired_by_seed_with_each_seeds_own_baseline() -> None:
    """Below fraction 1 each seed's training subset has its own mean: the cell is paired with it seed by seed.
    Unpaired, 50/60/70 vs 52/62/72 would be far from significant; paired, every seed is ~2 mm better."""
    recs = [rec("synth-body-mesh", "cpc", {"pa_mpjpe": [v]}, baseline={"pa_mpjpe": b}, seeds=(s,), fraction=0.1)
            for s, v, b in ((0, 50.0, 52.0), (1, 60.0, 62.5), (2, 70.0, 71.5))]
    t = table_of(*recs)
    base = cell(t, BASELINE_LABEL, "pa_mpjpe")
    assert base.per_seed == {0: 52.0, 1: 62.5, 2: 71.5} and base.mean == pytest.approx(62.0)
    c = cell(t, "cpc", "pa_mpjpe")
    assert c.beats_baseline and c.baseline_p < 0.05


def test_a_baseline_row_shows_no_seed_count() -> None:
    """The baseline's seeds (every record's) may outnumber a row's usual seeds; its cell still reads as before."""
    t = table_of(rec("synth-body-mesh", "cpc", {"pa_mpjpe": [50.0, 51.0, 52.0]}, baseline=BASE),
                 rec("synth-body-mesh", "mae", {"pa_mpjpe": [55.0, 56.0, 57.0]}, baseline=BASE),
                 rec("synth-body-mesh", "dino", {"pa_mpjpe": [55.0, 56.0, 57.0, 58.0]}, baseline=BASE,
                     seeds=(0, 1, 2, 3)))
    assert cell(t, BASELINE_LABEL, "pa_mpjpe").n == 4
    assert f"| {BASELINE_LABEL} | 60.0 |" in to_markdown(t)


def dagger_and_ddagger() -> Table:
    """cpc best and better than the baseline; mae worse than cpc (†) yet better than the baseline (‡)."""
    return table_of(rec("synth-body-mesh", "cpc", {"pa_mpjpe": [40.0, 41.0, 42.0]}, baseline=BASE),
                    rec("synth-body-mesh", "mae", {"pa_mpjpe": [45.0, 46.0, 47.5]}, baseline=BASE))


def test_markdown_and_terminal_write_the_mark_after_the_dagger() -> None:
    from rich.console import Console

    t = dagger_and_ddagger()
    md = to_markdown(t)
    assert "| cpc | **41.0 ± 1.0** ‡ |" in md and "| mae | 46.2 ± 1.3 † ‡ |" in md
    assert f"| {BASELINE_LABEL} | 60.0 |" in md and "- ‡: better than the trivial baseline" in md
    console = Console(record=True, width=200)
    console.print(to_rich(t))
    assert "46.2 ± 1.3 † ‡" in console.export_text()


def test_latex_and_html_write_the_mark() -> None:
    t = dagger_and_ddagger()
    assert latex_escape("‡") == r"$^\ddagger$"
    tex = to_latex(t)
    assert r"mae & 46.2 $\pm$ 1.3$^\dagger$$^\ddagger$ \\" in tex
    assert r"cpc & \textbf{41.0 $\pm$ 1.0}$^\ddagger$ \\" in tex and r"$^\ddagger$: better than the" in tex
    html = to_html(t)
    assert '46.2 ± 1.3<sup class="dagger">†</sup><sup class="ddagger">‡</sup></td>' in html
    assert "vs trivial baseline: p = " in html


def test_csv_says_which_cells_beat_the_baseline() -> None:
    lines = list(csv.DictReader(io.StringIO(to_csv(dagger_and_ddagger()))))
    got = {x["row"]: (x["worse_than_best"], x["beats_baseline"], x["baseline_p"] != "") for x in lines}
    assert got == {"cpc": ("false", "true", True), "mae": ("true", "true", True),
                   BASELINE_LABEL: ("false", "false", False)}
