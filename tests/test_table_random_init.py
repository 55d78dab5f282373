"""§: a measured cell significantly better than the table's random-init row (the positive control: pretraining vs
none) by a paired t-test over the per-seed values matched by seed, from constructed records, in every format."""

from __future__ import annotations

import csv
import io

from test_table_baseline import cell, table_of
from test_table_curves import rec

from harness.leaderboard import to_csv
from harness.table_render import to_html, to_latex, to_markdown

SCRATCH = "scratch,patch=16,stem=patch"


def note(table) -> list[str]:  # noqa: ANN001 (a harness.table_data.Table)
    return [n for n in table.notes if n.startswith("§")]


def study_table():  # noqa: ANN201
    """mae clearly better than random init on both metrics; cpc better on PA-MPJPE only, worse on PCK; dino equal."""
    return table_of(rec("synth-body-mesh", "mae", {"pa_mpjpe": [40.0, 41.0, 42.0], "pck": [60.0, 61.0, 62.0]}),
                    rec("synth-body-mesh", "cpc", {"pa_mpjpe": [45.0, 46.0, 47.5], "pck": [39.0, 40.0, 41.0]}),
                    rec("synth-body-mesh", "dino", {"pa_mpjpe": [54.0, 55.5, 55.0], "pck": [49.0, 51.0, 50.0]}),
                    rec("synth-body-mesh", SCRATCH, {"pa_mpjpe": [55.0, 55.0, 56.0], "pck": [50.0, 50.5, 49.5]}))


def test_better_than_random_init_in_the_metric_direction_gets_the_mark() -> None:
    t = study_table()
    assert cell(t, "mae", "pa_mpjpe").beats_random_init and cell(t, "mae", "pck").beats_random_init
    assert cell(t, "cpc", "pa_mpjpe").beats_random_init
    worse = cell(t, "cpc", "pck")  # far worse: tested, significant, but the wrong direction
    assert worse.random_init_p is not None and worse.random_init_p < 0.05 and not worse.beats_random_init
    assert not cell(t, "dino", "pa_mpjpe").beats_random_init and not cell(t, "dino", "pck").beats_random_init
    own = next(r for r in t.rows if r.backbone == SCRATCH).cells[0]
    assert own.random_init_p is None and not own.beats_random_init  # never tested against itself
    (text,) = note(t)
    assert text.startswith("§: better than the random-init row (Scratch") and "paired t-test" in text


def test_no_mark_without_exactly_one_random_init_row() -> None:
    plain = table_of(rec("synth-body-mesh", "mae", {"pa_mpjpe": [40.0, 41.0, 42.0]}),
                     rec("synth-body-mesh", "cpc", {"pa_mpjpe": [45.0, 46.0, 47.5]}))
    two = table_of(rec("synth-body-mesh", "mae", {"pa_mpjpe": [40.0, 41.0, 42.0]}),
                   rec("synth-body-mesh", SCRATCH, {"pa_mpjpe": [55.0, 55.0, 56.0]}),
                   rec("synth-body-mesh", "scratch,patch=8,stem=patch", {"pa_mpjpe": [50.0, 51.0, 52.0]}))
    for t in (plain, two):
        assert not note(t) and not cell(t, "mae", "pa_mpjpe").beats_random_init
        assert cell(t, "mae", "pa_mpjpe").random_init_p is None


def test_every_format_writes_the_mark() -> None:
    t = study_table()
    md = to_markdown(t)
    assert "| mae | **41.0 ± 1.0** § | **61.0 ± 1.0** § |" in md and "- §: better than the random-init row" in md
    assert r"mae & \textbf{41.0 $\pm$ 1.0}$^\S$ &" in to_latex(t)
    html = to_html(t)
    assert '<sup class="sect">§</sup>' in html and "vs random init: p = " in html
    rows = {(x["row"], x["metric"]): x for x in csv.DictReader(io.StringIO(to_csv(t)))}
    assert rows[("mae", "pck")]["beats_random_init"] == "true" and rows[("mae", "pck")]["random_init_p"] != ""
    assert rows[("cpc", "pck")]["beats_random_init"] == "false"
