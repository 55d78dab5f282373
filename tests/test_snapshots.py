"""Backbone snapshots of a pretraining run (``--snapshot-every`` / ``--snapshots``): written at their steps with
the step and FLOPs behind them, usable as backbone specs, kept and reproduced exactly on resume, and expanded by
``cpcbench sweep --backbones snapshots:RUN``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_pretrain_cli import TINY, invoke, make_pair_frames
from test_pretrain_repro import assert_identical, cli, kill_after_checkpoint, weights

from harness.snapshots import expand_snapshot_specs, parse_steps, run_files, snapshot_steps


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    return make_pair_frames(tmp_path_factory.mktemp("frames"))


def args(frames: Path, out: Path, *extra: str, steps: int = 4) -> list[str]:
    return ["pretrain", "body", "--method", "cpc", "--data", str(frames), "--steps", str(steps), *TINY,
            "--set", "eval_every=0", "--out", str(out), *extra]


def sidecar(path: Path) -> dict:
    return json.loads(path.with_suffix(".json").read_text())


def test_snapshots_are_written_with_step_and_flops_and_resolve_as_backbones(tmp_path: Path, frames: Path) -> None:
    from harness.backbones import resolve_backbone

    run = tmp_path / "run"
    res = invoke(args(frames, run, "--snapshots", "2,0", "--snapshot-every", "3"), tmp_path)
    assert res.exit_code == 0, res.output
    snaps = sorted(p.name for p in (run / "snapshots").glob("*.safetensors"))
    assert snaps == ["step-000000.safetensors", "step-000002.safetensors", "step-000003.safetensors"]
    side = {s: sidecar(run / "snapshots" / f"step-{s:06d}.safetensors") for s in (0, 2, 3)}
    final = sidecar(run / "backbone.safetensors")
    per_step = side[2]["config"]["flops"] / 2
    assert per_step > 0  # counted although TINY turns loop.count_flops off: snapshots need it
    for s, meta in side.items():
        assert meta["config"]["step"] == meta["step"] == s and meta["config"]["run"] == "run"
        assert meta["config"]["flops"] == pytest.approx(per_step * s)
        assert meta["config"]["backbone"] == final["config"]["backbone"]  # the export's sidecar config, plus
    assert final["config"]["step"] == 4 and final["config"]["flops"] == pytest.approx(per_step * 4)
    w = {s: weights(run / "snapshots" / f"step-{s:06d}.safetensors") for s in (0, 2, 3)}
    assert not torch.equal(w[0]["patch_embed.proj.weight"], w[2]["patch_embed.proj.weight"])
    assert not torch.equal(w[2]["patch_embed.proj.weight"], w[3]["patch_embed.proj.weight"])
    bb, info = resolve_backbone(str(run / "snapshots" / "step-000002.safetensors"))
    assert info["pretrain"]["step"] == 2 and info["pretrain"]["flops"] == pytest.approx(2 * per_step)
    assert info["load"]["missing"] == [] and info["method"] == "cpc"
    assert_identical({k: v for k, v in bb.state_dict().items() if k in w[2]}, w[2])


def test_step_zero_snapshot_is_the_runs_random_init(tmp_path: Path, frames: Path) -> None:
    """The step-0 snapshot is the backbone a run starts from: two runs of one seed with other schedules agree."""
    for name, steps in (("a", 1), ("b", 2)):
        res = invoke(args(frames, tmp_path / name, "--snapshots", "0", steps=steps), tmp_path)
        assert res.exit_code == 0, res.output
    assert_identical(*(weights(tmp_path / n / "snapshots" / "step-000000.safetensors") for n in ("a", "b")))


@pytest.mark.parametrize(("extra", "message"), [
    (["--snapshots", "1,x"], "'x' is not a step number"),
    (["--snapshots", "-1"], "is not a step number"),
    (["--snapshots", ","], "--snapshots is empty"),
    (["--snapshots", "9"], "step 9 is outside the run's 0..4 steps"),
    (["--snapshot-every", "0"], "--snapshot-every must be a positive"),
    (["--snapshot-every", "-2"], "--snapshot-every must be a positive"),
])
def test_bad_snapshot_steps_are_one_line_errors(tmp_path: Path, frames: Path, extra: list[str], message: str) -> None:
    res = invoke(args(frames, tmp_path / "run", *extra), tmp_path)
    assert res.exit_code == 2 and message in res.output, res.output
    assert "Traceback" not in res.output and not (tmp_path / "run").exists()


def test_snapshot_step_parsing() -> None:
    assert parse_steps("400, 100,100,0") == (0, 100, 400)
    assert snapshot_steps(2, (1,), 6) == (1, 2, 4, 6)
    assert snapshot_steps(0, (), 6) == ()


def test_sigkilled_run_keeps_its_snapshots_and_resumes_to_the_same_ones(tmp_path: Path, frames: Path) -> None:
    """Killed after the checkpoint of step 2: the snapshots of steps 0-2 are on disk and stay untouched by the
    resume; every snapshot (weights and sidecar) is byte-identical to an uninterrupted run's."""
    extra = ["--snapshots", "0,1,2,3", "--set", "loop.ckpt_every=2"]
    ref = cli(tmp_path, *args(frames, tmp_path / "ref", *extra))
    assert ref.returncode == 0, ref.stderr
    cut = tmp_path / "cut"
    kill_after_checkpoint(tmp_path, cut, args(frames, cut, *extra), step=2)
    before = {p.name: p.stat().st_mtime_ns for p in (cut / "snapshots").iterdir()}
    assert {f"step-00000{s}.safetensors" for s in (0, 1, 2)} <= set(before)
    assert "step-000003.safetensors" not in before
    resumed = cli(tmp_path, *args(frames, cut, *extra), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    for name, mtime in before.items():
        assert (cut / "snapshots" / name).stat().st_mtime_ns == mtime, f"{name} was rewritten"
    names = sorted(p.name for p in (tmp_path / "ref" / "snapshots").iterdir())
    assert names == sorted(p.name for p in (cut / "snapshots").iterdir()) and len(names) == 8
    for name in names:
        a, b = (tmp_path / "ref" / "snapshots" / name), (cut / "snapshots" / name)
        if name.endswith(".json"):
            ja, jb = json.loads(a.read_text()), json.loads(b.read_text())
            assert (ja["config"].pop("run"), jb["config"].pop("run")) == ("ref", "cut")
            assert ja == jb, name
        else:
            assert a.read_bytes() == b.read_bytes(), name


# --- sweep --backbones snapshots:RUN -------------------------------------------------------------------------------
def _fake_run(root: Path, steps: list[int], final: int | None) -> Path:
    from core.checkpoints import save_weights

    t = {"w": torch.zeros(2)}
    for s in steps:
        save_weights(root / "snapshots" / f"step-{s:06d}.safetensors", t, {"step": s}, step=s)
    if final is not None:
        save_weights(root / "backbone.safetensors", t, {"step": final}, steps=final)
    return root


def test_snapshots_spec_expands_in_step_order_plus_the_final_export(tmp_path: Path) -> None:
    run = _fake_run(tmp_path / "x", [200, 0, 1000, 100], final=1200)
    files = run_files(run)
    assert files == [str(run / "snapshots" / f"step-{s:06d}.safetensors") for s in (0, 100, 200, 1000)] + [
        str(run / "backbone.safetensors")]
    dup = _fake_run(tmp_path / "y", [0, 5], final=5)  # the final export is the last snapshot again
    assert run_files(dup) == [str(dup / "snapshots" / f"step-{s:06d}.safetensors") for s in (0, 5)]
    only = _fake_run(tmp_path / "z", [], final=7)
    assert run_files(only) == [str(only / "backbone.safetensors")]
    assert expand_snapshot_specs(["scratch", f"snapshots:{dup}", "cpc"]) == ["scratch", *run_files(dup), "cpc"]


@pytest.mark.parametrize("what", ["empty", "missing", "blank"])
def test_snapshots_spec_of_a_run_without_weights_is_an_error(tmp_path: Path, what: str) -> None:
    from typer.testing import CliRunner

    from harness.cli import app

    (tmp_path / "empty").mkdir()
    spec = {"empty": str(tmp_path / "empty"), "missing": str(tmp_path / "nope"), "blank": ""}[what]
    res = CliRunner().invoke(app, ["sweep", "--backbones", f"snapshots:{spec}", "--tasks", "synth-body-mesh",
                                   "--results", str(tmp_path / "res"), "--dry-run"])
    assert res.exit_code == 2 and "snapshots:" in res.output and "Traceback" not in res.output, res.output


def test_sweep_dry_run_lists_every_snapshot(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from harness.cli import app

    run = _fake_run(tmp_path / "x", [0, 2], final=4)
    res = CliRunner().invoke(app, ["sweep", "--backbones", f"snapshots:{run}", "--tasks", "synth-body-mesh",
                                   "--seeds", "1", "--results", str(tmp_path / "res"), "--dry-run", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout[res.stdout.index("{"):])
    assert out["cells"] == 3 and out["unresolved"] == 3  # fake weights: listed, not runnable
