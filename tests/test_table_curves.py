"""Trivial-baseline rows and reference lines, the ``probes`` table and learning curves over pretraining snapshots,
from constructed records (the probe tasks and snapshot records are made here, as ``cpcbench eval`` writes them)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest

from harness import plots as P
from harness.leaderboard import build_leaderboard, to_csv, to_markdown, write_leaderboard
from harness.results import build_record
from harness.table_curves import learning_tables, probes_table
from harness.tables import BASELINE_LABEL, main_tables

METRICS = {"yaw_err": ("deg", False), "yaw_acc8": ("%", True), "depth_order": ("%", True), "pck": ("%", True),
           "pck_2": ("%", True), "pa_mpjpe": ("mm", False), "mpjpe": ("mm", False)}
_n = [0]


def rec(task: str, backbone: str, values: dict[str, list[float]], *, protocol: str = "linear",
        baseline: dict[str, float] | None = None, pretrain: dict[str, Any] | None = None, sha: str | None = None,
        primary: str = "", fraction: float = 1.0, seeds: tuple[int, ...] = (0, 1, 2), steps: int = 10
        ) -> dict[str, Any]:
    _n[0] += 1
    metrics = {}
    for name, vals in values.items():
        mean = sum(vals) / len(vals)
        std = (sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5 if len(vals) > 1 else None
        metrics[name] = {"mean": mean, "std": std, "stderr": 0.1, "per_seed": vals, "unit": METRICS[name][0],
                         "higher_is_better": METRICS[name][1]}
    sha = sha if sha is not None else ("" if backbone == "scratch" else backbone[-8:].ljust(64, "0"))
    r = build_record(task={"name": task, "version": "1", "domain": "body", "protocol": "",
                           **({"primary_metric": primary} if primary else {})},
                     backbone={"name": backbone, "arch": "vit_tiny", "weights": backbone, "weights_sha256": sha,
                               "pretrain": pretrain or {}},
                     method=(pretrain or {}).get("method", backbone), protocol=protocol, seeds=list(seeds),
                     fraction=fraction, limit=None, metrics=metrics, n_samples=16,
                     config={"steps": steps, "defaults": {"steps": 10}, "train_stats": "fraction"},
                     wall_time_s=1.0, run_id=f"20261201T000000Z-{_n[0]:08d}")
    r.update(created="2026-12-01T00:00:00Z", git_commit="0" * 40, hardware={}, versions={})
    if baseline is not None:
        r["baseline_mean"] = baseline
    return r


FACING_BASE = {"yaw_err": 90.0, "yaw_acc8": 12.5}


def probe_records() -> list[dict[str, Any]]:
    out = []
    for bb, err, depth, pck in (("cpc", [20.0, 21.0, 22.0], [70.0, 71.0, 72.0], [40.0, 42.0, 44.0]),
                                ("mae", [30.0, 31.0, 32.0], [75.0, 76.0, 77.0], [30.0, 31.0, 32.0]),
                                ("scratch", [80.0, 85.0, 90.0], [55.0, 56.0, 57.0], [10.0, 11.0, 12.0])):
        for proto, shift in (("linear", 0.0), ("attentive", -5.0)):
            out.append(rec("probe-body-facing", bb, {"yaw_err": [v + shift for v in err],
                                                     "yaw_acc8": [50.0, 51.0, 52.0]}, protocol=proto,
                           baseline=FACING_BASE))
            out.append(rec("probe-body-depth", bb, {"depth_order": depth}, protocol=proto,
                           baseline={"depth_order": 50.0}))
        out.append(rec("probe-body-xview", bb, {"pck": pck, "pck_2": pck}, protocol="match",
                       baseline={"pck": 2.0, "pck_2": 4.0, "pck@same_position": 8.0}))
    return out


# --- the trivial baseline ----------------------------------------------------------------------------------------
def test_main_table_has_a_baseline_row_that_is_never_ranked() -> None:
    recs = [rec("synth-body-mesh", "cpc", {"pa_mpjpe": [60.0, 61.0, 62.0]}, baseline={"pa_mpjpe": 55.0}),
            rec("synth-body-mesh", "mae", {"pa_mpjpe": [70.0, 71.0, 72.0]}, baseline={"pa_mpjpe": 57.0})]
    (table,) = main_tables(recs)
    assert [r.label for r in table.rows] == ["cpc", "mae", BASELINE_LABEL]
    base = table.rows[-1]
    assert base.source == "baseline" and base.cells[0].mean == pytest.approx(56.0) and base.cells[0].std is None
    assert table.rows[0].cells[0].best and not base.cells[0].best  # better than every backbone, yet not bold
    md = to_markdown(table)
    assert f"| {BASELINE_LABEL} | 56.0 |" in md and "Trivial baseline: the task's prediction" in md
    lines = list(csv.DictReader(io.StringIO(to_csv(table))))
    assert [(x["row"], x["source"], x["mean"], x["n_seeds"], x["per_seed"]) for x in lines
            if x["source"] == "baseline"] == [(BASELINE_LABEL, "baseline", "56", "3", "56 56 56")]  # per seed: paired


def test_records_without_a_baseline_get_no_row() -> None:
    (table,) = main_tables([rec("synth-body-mesh", "cpc", {"pa_mpjpe": [60.0, 61.0, 62.0]})])
    assert [r.source for r in table.rows] == ["measured"] and not any("Trivial" in n for n in table.notes)


class Capture:
    """Stands in for ``plots._render``: draws on real axes and keeps them for inspection."""

    def __init__(self) -> None:
        self.axes: list[Any] = []

    def __call__(self, draw: Any, n_panels: int, title: str, nrows: int = 1) -> bytes:
        from matplotlib.figure import Figure

        axes = list(Figure().subplots(nrows, n_panels, squeeze=False).flat)
        draw(axes)
        self.axes += axes
        return b""


def baseline_lines(ax: Any) -> list[Any]:
    return [ln for ln in ax.get_lines() if ln.get_label() == P.BASELINE_LEGEND]


def test_bars_and_data_efficiency_curves_draw_the_baseline(monkeypatch: pytest.MonkeyPatch) -> None:
    cap = Capture()
    monkeypatch.setattr(P, "_render", cap)
    recs = [rec("synth-body-mesh", b, {"pa_mpjpe": v}, baseline={"pa_mpjpe": 90.0 + 10 * f}, fraction=f)
            for b, v in (("cpc", [60.0, 61.0, 62.0]), ("mae", [70.0, 71.0, 72.0])) for f in (0.1, 1.0)]
    for table in main_tables(recs):
        table.plot = "bars"
        P.table_plots(table)
    assert len(cap.axes) == 2
    for ax, want in zip(cap.axes, (100.0, 91.0), strict=True):
        (line,) = baseline_lines(ax)
        assert list(line.get_ydata()) == pytest.approx([want, want])  # horizontal: axhline
    cap.axes.clear()
    table = main_tables(recs)[0]
    table.columns += main_tables(recs)[1].columns
    table.rows[0].cells += main_tables(recs)[1].rows[0].cells
    table.rows[1].cells += main_tables(recs)[1].rows[1].cells
    table.rows[2].cells += main_tables(recs)[1].rows[2].cells
    table.plot = "curve"
    P.table_plots(table)
    (ax,) = cap.axes
    (line,) = baseline_lines(ax)
    assert list(line.get_xdata()) == [0.1, 1.0] and list(line.get_ydata()) == pytest.approx([91.0, 100.0])
    cap.axes.clear()
    one = main_tables(recs)[0]  # a single fraction: the line still spans the panel
    one.plot = "curve"
    P.table_plots(one)
    (line,) = baseline_lines(cap.axes[0])
    assert list(line.get_ydata()) == [100.0, 100.0] and list(line.get_xdata()) == [0, 1]


def test_a_schedule_that_grows_with_the_labels_is_one_curve(monkeypatch: pytest.MonkeyPatch) -> None:
    """More fine-tuning steps on more labels (the study's 200 at 5 %, 400 on the full set) join one curve, its
    steps named per fraction; another setting (the frame set's batch here) still keeps curves apart."""
    cap = Capture()
    monkeypatch.setattr(P, "_render", cap)
    recs = [rec("synth-body-mesh", b, {"pa_mpjpe": v}, baseline={"pa_mpjpe": 90.0}, fraction=f, steps=st)
            for b, v in (("cpc", [60.0, 61.0, 62.0]), ("mae", [70.0, 71.0, 72.0])) for f, st in ((0.05, 200),
                                                                                                (1.0, 400))]
    table = main_tables(recs)[0]
    for other in main_tables(recs)[1:]:
        table.columns += other.columns
        for r, o in zip(table.rows, other.rows, strict=True):
            r.cells += o.cells
    assert {c.key.setting for c in table.columns} == {"steps=200", "steps=400"}
    table.plot = "curve"
    P.table_plots(table)
    (ax,) = cap.axes
    cpc = next(c for c in ax.containers if c.get_label() == "cpc")  # errorbar: (data line, caps, bars)
    assert list(cpc.lines[0].get_xdata()) == [0.05, 1.0] and len(ax.containers) == 2
    assert "steps 200 at 5% / 400 at 100%" in " ".join(ax.get_title().split())
    assert P._split_steps("steps=200, data=body-lab@1") == ("data=body-lab@1", "200")
    assert P._split_steps("batch_size=8") == ("batch_size=8", "")


# --- probes ------------------------------------------------------------------------------------------------------
def test_probes_table_rows_backbones_columns_primary_metric_per_protocol() -> None:
    table = probes_table(probe_records())
    assert table is not None and table.name == "probes"
    assert [(c.key.protocol, c.key.task, c.key.metric) for c in table.columns] == [
        ("linear", "probe-body-facing", "yaw_err"), ("linear", "probe-body-depth", "depth_order"),
        ("attentive", "probe-body-facing", "yaw_err"), ("attentive", "probe-body-depth", "depth_order"),
        ("match", "probe-body-xview", "pck")]
    assert [r.label for r in table.rows] == ["cpc", "mae", "scratch", BASELINE_LABEL,
                                             "Trivial baseline (same position)"]
    best = [[c.best for c in r.cells] for r in table.measured_rows]
    assert best == [[True, False, True, False, True], [False, True, False, True, False],
                    [False, False, False, False, False]]  # yaw_err: lower is better; the rest: higher
    means = [c.mean if c else None for c in table.rows[3].cells]
    assert means == [90.0, 50.0, 90.0, 50.0, 2.0]
    assert [c is not None for c in table.rows[4].cells] == [False, False, False, False, True]
    assert table.rows[4].cells[4].mean == 8.0
    md = to_markdown(table)
    assert "probe-body-facing v1 · linear: yaw_err [deg] ↓" in md and "**21.0 ± 1.0**" in md
    assert "| Trivial baseline (same position) | – | – | – | – | 8.0 |" in md


def test_probes_table_leaves_snapshots_and_renamed_weights_to_the_curves() -> None:
    """A run's snapshots (``snapshots:RUN``) belong to the learning-curve tables; its final backbone file has the
    sha of the ``cpc`` row: neither adds a row to the probes table."""
    base = probe_records()
    cpc_sha = next(r for r in base if r["backbone"]["name"] == "cpc")["backbone"]["weights_sha256"]
    run = "runs/pretrain/body-cpc-vit_tiny-a"
    extra = [rec("probe-body-xview", f"{run}/snapshots/step-000100.safetensors", {"pck": [5.0, 5.0, 5.0],
                 "pck_2": [5.0, 5.0, 5.0]}, protocol="match", pretrain=snap_pre("cpc", "body-cpc-vit_tiny-a", 100)),
             rec("probe-body-xview", f"{run}/backbone.safetensors", {"pck": [40.0, 42.0, 44.0],
                 "pck_2": [40.0, 42.0, 44.0]}, protocol="match", sha=cpc_sha)]
    table = probes_table(base + extra)
    assert [r.label for r in table.measured_rows] == ["cpc", "mae", "scratch"]
    # nor to the main table of their protocol (25 snapshot rows made the match table and its bars unreadable)
    match = next(t for t in main_tables(base + extra) if t.name == "main-body-match")
    assert [r.label for r in match.measured_rows] == ["cpc", "mae", "scratch"]
    assert "learning-curve tables" in match.caption


def test_no_probe_records_no_probes_table() -> None:
    assert probes_table([rec("synth-body-mesh", "cpc", {"pa_mpjpe": [1.0, 2.0, 3.0]})]) is None


# --- learning curves ---------------------------------------------------------------------------------------------
def snap_pre(method: str, run: str, step: int, per_step: float = 2e9) -> dict[str, Any]:
    return {"method": method, "domain": "body", "step": step, "flops": per_step * step, "run": run,
            "pretrain": {"method": method, "loop": {"steps": 300}}}


def curve_records() -> list[dict[str, Any]]:
    out = []
    for method, run, base in (("cpc", "body-cpc-vit_tiny-a", 60.0), ("mae", "body-mae-vit_tiny-b", 70.0)):
        for step in (0, 100, 200, 300):
            spec = (f"runs/pretrain/{run}/snapshots/step-{step:06d}.safetensors" if step < 300
                    else f"runs/pretrain/{run}/backbone.safetensors")
            v = base - step / 20
            out.append(rec("synth-body-mesh", spec, {"mpjpe": [v + 30, v + 31, v + 32], "pa_mpjpe": [v, v + 1, v + 2]},
                           protocol="finetune", baseline={"pa_mpjpe": 95.0, "mpjpe": 120.0},
                           pretrain=snap_pre(method, run, step), sha=f"{method}{step}".ljust(64, "0"),
                           primary="pa_mpjpe"))
    out.append(rec("synth-body-mesh", "scratch", {"mpjpe": [99.0, 100.0, 101.0], "pa_mpjpe": [80.0, 81.0, 82.0]},
                   protocol="finetune", baseline={"pa_mpjpe": 95.0, "mpjpe": 120.0}, primary="pa_mpjpe"))
    # a plain final export of another run: one step, so no curve
    out.append(rec("synth-body-mesh", "dino", {"mpjpe": [9.0, 9.0, 9.0], "pa_mpjpe": [5.0, 5.0, 5.0]},
                   protocol="finetune", pretrain=snap_pre("dino", "body-dino-x", 300), primary="pa_mpjpe"))
    return out


def test_learning_table_rows_are_snapshots_in_step_order_with_scratch_at_zero() -> None:
    (table,) = learning_tables(curve_records())
    assert table.name == "learning-body-finetune" and table.plot == "learning"
    assert [c.key.metric for c in table.columns] == ["pa_mpjpe"]  # the primary metric only
    got = [(r.series, r.step, r.flops, r.cells[0].mean if r.cells[0] else None) for r in table.rows]
    assert got == [("scratch", 0, 0.0, 81.0)] + [
        (f"{m} body-{m}-vit_tiny-{x}", s, 2e9 * s, base - s / 20 + 1) for m, x, base in (("cpc", "a", 60.0),
                                                                                        ("mae", "b", 70.0))
        for s in (0, 100, 200, 300)] + [("", None, None, 95.0)]
    assert table.rows[4].label == "cpc body-cpc-vit_tiny-a · step 300 · 600 GFLOP" and table.rows[4].cells[0].best
    lines = list(csv.DictReader(io.StringIO(to_csv(table))))
    assert [(x["pretrain_step"], x["pretrain_flops"]) for x in lines[:3]] == [("0", "0"), ("0", "0"),
                                                                              ("100", "2e+11")]
    assert lines[-1]["source"] == "baseline" and lines[-1]["pretrain_step"] == ""


def test_no_learning_table_without_a_run_of_two_snapshots() -> None:
    assert learning_tables([r for r in curve_records() if r["backbone"]["name"] in ("dino", "scratch")]) == []


def test_learning_plot_steps_flops_scratch_and_baseline(monkeypatch: pytest.MonkeyPatch) -> None:
    cap = Capture()
    monkeypatch.setattr(P, "_render", cap)
    (table,) = learning_tables(curve_records())
    P.table_plots(table)
    by_step, by_flops = cap.axes
    assert by_step.get_xlabel() == "pretraining steps"
    assert by_flops.get_xlabel() == "pretraining compute [GFLOP]"
    labels = [c.get_label() for c in by_step.containers]
    assert labels == ["cpc body-cpc-vit_tiny-a", "mae body-mae-vit_tiny-b", "scratch (random init)"]
    cpc = by_step.containers[0].lines[0]
    assert list(cpc.get_xdata()) == [0, 100, 200, 300] and list(cpc.get_ydata()) == [61.0, 56.0, 51.0, 46.0]
    assert list(by_flops.containers[0].lines[0].get_xdata()) == pytest.approx([0, 200, 400, 600])
    assert list(by_step.containers[2].lines[0].get_xdata()) == [0]
    for ax in cap.axes:
        (line,) = baseline_lines(ax)
        assert list(line.get_ydata()) == [95.0, 95.0]


def test_flops_axis_units() -> None:
    assert P.flops_unit(5e11) == ("GFLOP", 1e9)
    assert P.flops_unit(3e12) == ("TFLOP", 1e12)
    assert P.flops_unit(2e16) == ("PFLOP", 1e15)


def test_new_tables_regenerate_byte_for_byte(tmp_path: Path) -> None:
    recs = probe_records() + curve_records()
    trees = []
    for name in ("a", "b"):
        board = build_leaderboard(recs)
        assert {"probes", "learning-body-finetune"} <= {t.name for t in board.tables}
        assert "learning-body-finetune--learning.png" in board.plots
        write_leaderboard(board, tmp_path / name)
        trees.append({p.relative_to(tmp_path / name): p.read_bytes() for p in (tmp_path / name).rglob("*")
                      if p.is_file()})
    assert trees[0] == trees[1]
    if (out := Path("/tmp/curves-pngs")).parent.is_dir():  # for looking at them by eye
        out.mkdir(exist_ok=True)
        for p, data in trees[0].items():
            if p.suffix == ".png":
                (out / p.name).write_bytes(data)
