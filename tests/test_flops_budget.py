"""Compute-matched pretraining (``cpcbench pretrain --flops BUDGET``): the steps of a run come from a FLOP budget and
the FLOPs of one step counted on its first batch, before the schedule is built; resume reaches the same steps;
``--snapshots 0,5%,50%`` name fractions of the run; learning curves of methods that differ in FLOPs per step are
drawn against FLOPs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from test_pretrain_cli import TINY, invoke, make_pair_frames
from test_pretrain_repro import assert_identical, weights
from test_table_curves import Capture, rec

from harness import plots as P
from harness.flops import parse_flops, steps_for_budget
from harness.pretrain import build_config
from harness.snapshots import Percent, parse_steps, snapshot_steps
from harness.table_curves import learning_tables


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    return make_pair_frames(tmp_path_factory.mktemp("frames"))


def args(frames: Path, out: Path, method: str, *extra: str) -> list[str]:
    return ["pretrain", "body", "--method", method, "--data", str(frames), *TINY, "--set", "eval_every=0",
            "--out", str(out), "--json", *extra]


def run(frames: Path, out: Path, method: str, *extra: str) -> dict:
    res = invoke(args(frames, out, method, *extra), out.parent)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout[res.stdout.index("{"):])


@pytest.fixture(scope="module")
def per_step(frames: Path, tmp_path_factory) -> dict[str, float]:
    """FLOPs of one step of cpc and of mae, as a 1-FLOP budget (one step) counts them."""
    root = tmp_path_factory.mktemp("probe")
    return {m: run(frames, root / m, m, "--flops", "1")["flops_per_step"] for m in ("cpc", "mae")}


def test_budget_sets_the_steps_and_schedule_of_each_method(tmp_path: Path, frames: Path, per_step: dict[str, float],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.train_step as ts
    from harness.backbones import resolve_backbone
    from harness.table_specs import get_field

    assert per_step["cpc"] > 2 * per_step["mae"] > 0  # CPC sees pairs and a decoder: equal steps are not equal compute
    budget = 2.5 * per_step["cpc"]
    totals: list[int] = []
    lr_at = ts.lr_at
    monkeypatch.setattr(ts, "lr_at", lambda step, total, *a: totals.append(total) or lr_at(step, total, *a))
    spent = {}
    for method in ("cpc", "mae"):
        totals.clear()
        out = tmp_path / method
        summary = run(frames, out, method, "--flops", repr(budget), "--snapshots", "0,50%,100%")
        fps = per_step[method]
        steps = math.ceil(budget / fps)
        assert summary["steps"] == steps and summary["flops_per_step"] == fps and summary["flops_budget"] == budget
        assert budget <= summary["flops"] == steps * fps < budget + fps
        assert totals == [steps] * steps  # the LR schedule was built for the derived steps
        cfg = yaml.safe_load((out / "config.yaml").read_text())
        assert cfg["loop"]["steps"] == steps and cfg["flops_budget"] == budget
        half = math.floor(steps / 2 + 0.5)
        assert sorted(p.name for p in (out / "snapshots").glob("*.safetensors")) == [
            f"step-{s:06d}.safetensors" for s in sorted({0, half, steps})]
        _, info = resolve_backbone(str(out / "snapshots" / f"step-{half:06d}.safetensors"))
        assert info["pretrain"]["flops"] == pytest.approx(half * fps) and info["pretrain"]["flops_per_step"] == fps
        record = {"backbone": {"pretrain": info["pretrain"]}}  # what a table spec's where: filter reads
        assert get_field(record, "pretrain.flops_budget") == budget and get_field(record, "pretrain.steps") == steps
        spent[method] = summary["flops"]
    assert spent["cpc"] != spent["mae"] and abs(spent["cpc"] - spent["mae"]) < max(per_step.values())


def test_the_budget_counts_what_the_loop_counts(tmp_path: Path, frames: Path, per_step: dict[str, float]) -> None:
    """The count before training is the loop's own count of its first global batch (a --steps run's)."""
    summary = run(frames, tmp_path / "steps", "mae", "--steps", "2", "--set", "loop.count_flops=true")
    assert summary["flops_per_step"] == per_step["mae"]


def test_resume_reaches_the_same_steps_without_counting_again(tmp_path: Path, frames: Path, per_step: dict[str, float],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Interrupted after its checkpoint of step 2, a budget run resumes to the steps and weights of an uninterrupted
    one, even where a new count would differ: the checkpoint's count sets the steps."""
    import harness.flops
    from harness.train_state import Checkpointer

    budget = repr(5.5 * per_step["mae"])  # 6 steps
    extra = ("--flops", budget, "--set", "loop.ckpt_every=2")
    ref = run(frames, tmp_path / "ref", "mae", *extra)
    assert ref["steps"] == 6

    class Stop(Exception):
        pass

    save = Checkpointer.save

    def save_then_stop(self, step, *a):
        save(self, step, *a)
        raise Stop

    with monkeypatch.context() as m:
        m.setattr(Checkpointer, "save", save_then_stop)
        res = invoke(args(frames, tmp_path / "cut", "mae", *extra), tmp_path)
        assert isinstance(res.exception, Stop)
    assert (tmp_path / "cut" / "checkpoints").is_dir() and not (tmp_path / "cut" / "backbone.safetensors").exists()
    count = harness.flops.count_flops
    monkeypatch.setattr(harness.flops, "count_flops", lambda *a, **k: 0.5 * count(*a, **k))  # would give 11 steps
    resumed = run(frames, tmp_path / "cut", "mae", *extra, "--resume")
    assert resumed["steps"] == 6 and resumed["flops_per_step"] == per_step["mae"] and resumed["flops"] == ref["flops"]
    assert yaml.safe_load((tmp_path / "cut" / "config.yaml").read_text())["loop"]["steps"] == 6
    assert_identical(*(weights(tmp_path / r / "backbone.safetensors") for r in ("cut", "ref")))


@pytest.mark.parametrize(("extra", "message"), [
    (["--flops", "1e9", "--steps", "3"], "give --flops or --steps/--epochs, not both"),
    (["--flops", "1e9", "--epochs", "1"], "give --flops or --steps/--epochs, not both"),
    (["--set", "flops_budget=200T", "--set", "loop.steps=3"], "give --flops or --steps/--epochs, not both"),
    (["--set", "flops_budget=1e9", "--set", "epochs=2"], "give --flops or --steps/--epochs, not both"),
    (["--flops", "lots"], "--flops: 'lots' is not a FLOP count"),
    (["--flops", "0"], "--flops must be a positive"),
    (["--set", "flops_budget=2X"], "flops_budget: '2X' is not a FLOP count"),
    (["--flops", "1e9", "--snapshots", "0,150%"], "150% is past the end of the run"),
])
def test_bad_budgets_are_one_line_errors(tmp_path: Path, frames: Path, extra: list[str], message: str) -> None:
    res = invoke(["pretrain", "body", "--data", str(frames), *TINY, "--out", str(tmp_path / "run"), *extra], tmp_path)
    assert res.exit_code == 2, res.output
    err = res.output.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1], res.output
    assert "Traceback" not in res.output and not (tmp_path / "run").exists()


def test_flop_counts_parse_with_units() -> None:
    for text in ("2e14", "200T", "0.2P", "200 TFLOPs", "2E14", "200000G", 2e14):
        assert parse_flops(text) == pytest.approx(2e14), text
    assert parse_flops("1.5k") == 1500.0
    assert steps_for_budget(10.0, 3.0) == 4 and steps_for_budget(9.0, 3.0) == 3 and steps_for_budget(1.0, 5.0) == 1


def test_a_budget_drops_a_presets_epochs_and_reads_units_from_set() -> None:
    cfg = build_config("body", ["paper"], [], flops_budget=2e14)
    assert (cfg.flops_budget, cfg.epochs, cfg.warmup_epochs) == (2e14, 0.0, 0.0)
    assert build_config("body", overrides=["flops_budget=0.2P"]).flops_budget == pytest.approx(2e14)
    kept = build_config("body", ["paper"], ["warmup_epochs=2"], flops_budget=2e14)
    assert kept.warmup_epochs == 2.0  # given with the budget: warmup from epochs, steps from FLOPs


def test_percent_snapshots_resolve_to_steps_of_the_run() -> None:
    parsed = parse_steps("0, 5%,10%,25%,50%, 7")
    assert parsed == (0, 7, Percent(5), Percent(10), Percent(25), Percent(50))
    assert snapshot_steps(0, parsed, 300) == (0, 7, 15, 30, 75, 150)
    assert snapshot_steps(0, parse_steps("50%,100%,12.5%"), 3) == (0, 2, 3)  # 0.375 -> 0, 1.5 -> 2 (halves up)
    assert snapshot_steps(0, parse_steps("10%,10.0%,30"), 300) == (30,)  # one step, one snapshot
    for bad, message in (("5%%", "not a step number or a percent"), ("-5%", "not a step number or a percent"),
                         ("101%", "101% is past the end")):
        with pytest.raises(Exception, match=message):
            parse_steps(bad)


# --- learning curves of methods that differ in FLOPs per step -------------------------------------------------------
def budget_records() -> list[dict]:
    """cpc at 6 GFLOP a step (0, 100, 200 steps) and mae at 2 GFLOP a step (0, 300, 600 steps): one budget."""
    out = []
    for method, per_step, steps in (("cpc", 6e9, (0, 100, 200)), ("mae", 2e9, (0, 300, 600))):
        run_name = f"body-{method}-vit_tiny-b"
        for i, step in enumerate(steps):
            pre = {"method": method, "domain": "body", "step": step, "flops": per_step * step, "run": run_name,
                   "flops_per_step": per_step, "pretrain": {"method": method, "flops_budget": 1.2e12}}
            out.append(rec("synth-body-mesh", f"runs/pretrain/{run_name}/snapshots/step-{step:06d}.safetensors",
                           {"pa_mpjpe": [60.0 - 5 * i, 61.0 - 5 * i, 62.0 - 5 * i]}, protocol="finetune",
                           baseline={"pa_mpjpe": 95.0}, pretrain=pre, sha=f"{method}{step}".ljust(64, "0"),
                           primary="pa_mpjpe"))
    out.append(rec("synth-body-mesh", "scratch", {"pa_mpjpe": [80.0, 81.0, 82.0]}, protocol="finetune",
                   baseline={"pa_mpjpe": 95.0}, primary="pa_mpjpe"))
    return out


def test_learning_plot_of_methods_under_one_budget_is_against_flops(monkeypatch: pytest.MonkeyPatch) -> None:
    cap = Capture()
    monkeypatch.setattr(P, "_render", cap)
    (table,) = learning_tables(budget_records())
    assert "differ in FLOPs per step" in table.caption
    assert [r.flops for r in table.rows if r.series.startswith("mae")] == [0.0, 6e11, 1.2e12]  # the FLOPs column
    P.table_plots(table)
    (ax,) = cap.axes  # one panel: steps would not compare the two runs
    assert ax.get_xlabel() == "pretraining compute [TFLOP]"
    labels = [c.get_label() for c in ax.containers]
    assert labels == ["cpc body-cpc-vit_tiny-b", "mae body-mae-vit_tiny-b", "scratch (random init)"]
    for c in ax.containers[:2]:  # both runs on one axis, at the same FLOPs
        assert list(c.lines[0].get_xdata()) == pytest.approx([0.0, 0.6, 1.2])


@pytest.mark.slow
def test_two_processes_count_the_global_batch(tmp_path: Path, frames: Path, per_step: dict[str, float]) -> None:
    """Under DDP (2 gloo processes, each half the global batch) the count is of the global batch: the same FLOPs
    per step, so the same steps, as one process."""
    import os
    import shutil
    import subprocess
    import sys

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    assert torchrun, "torchrun not found next to the python running the tests"
    budget = repr(3.5 * per_step["mae"])
    cmd = [torchrun, "--standalone", "--nproc_per_node=2", "-m", "harness.cli",
           *args(frames, tmp_path / "two", "mae", "--flops", budget)]
    env = {**os.environ, "CPCBENCH_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1", "CPCBENCH_RUNS": str(tmp_path),
           "CPCBENCH_DATA_CACHE": str(tmp_path / "data"), "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run(["timeout", "300", *cmd], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    side = json.loads((tmp_path / "two" / "backbone.json").read_text())["config"]
    assert side["flops_per_step"] == per_step["mae"] and side["steps"] == 4
    assert side["flops"] == pytest.approx(4 * per_step["mae"])
