"""A pretraining run is a function of its config and seed (on the CPU), resumes exactly after SIGKILL, refuses
settings that would train nothing, lets command-line flags beat presets, states (and asks to confirm) a large
synthetic render, and speaks on rank 0 only under ``torchrun``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_pretrain_cli import TINY, invoke, make_pair_frames

ROOT = Path(__file__).resolve().parent.parent
STALL = str(Path(__file__).resolve().parent / "pretrain_stall.py")


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    return make_pair_frames(tmp_path_factory.mktemp("frames"))


def weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert set(a) == set(b) and a
    for k in a:
        assert torch.equal(a[k], b[k]), k


def final_state(run: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the objective (backbone, decoder, DINO teacher and centre) at the last checkpoint."""
    from core.checkpoints import latest_train_state, load_train_state

    return load_train_state(latest_train_state(run))[1]


def run_args(frames: Path, method: str, out: Path, steps: int = 3) -> list[str]:
    return ["pretrain", "body", "--method", method, "--data", str(frames), "--steps", str(steps), *TINY,
            "--set", "dino.local_crops=2", "--set", "eval_every=2", "--out", str(out)]


# --- the seed fixes the run --------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["cpc", "mae", "dino", "supervised"])
def test_same_command_gives_bit_identical_weights(tmp_path: Path, frames: Path, method: str) -> None:
    """Two runs of one command, the process's global RNGs (python, numpy, torch) in another state for each:
    same weights."""
    import random

    import numpy as np

    for i, name in enumerate(("a", "b")):
        random.seed(100 + i)
        np.random.seed(100 + i)
        torch.manual_seed(100 + i)
        res = invoke(run_args(frames, method, tmp_path / name), tmp_path)
        assert res.exit_code == 0, res.output
    assert_identical(weights(tmp_path / "a" / "backbone.safetensors"), weights(tmp_path / "b" / "backbone.safetensors"))
    assert_identical(final_state(tmp_path / "a"), final_state(tmp_path / "b"))


def test_another_seed_gives_other_weights(tmp_path: Path, frames: Path) -> None:
    for name, seed in (("a", 0), ("b", 1)):
        res = invoke([*run_args(frames, "cpc", tmp_path / name, steps=1), "--set", f"loop.seed={seed}"], tmp_path)
        assert res.exit_code == 0, res.output
    a, b = (weights(tmp_path / n / "backbone.safetensors") for n in ("a", "b"))
    assert not torch.equal(a["patch_embed.proj.weight"], b["patch_embed.proj.weight"])


# --- exact resume after SIGKILL, against an independent uninterrupted run ----------------------------------------
ENV = {**os.environ, "CPCBENCH_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**ENV, "CPCBENCH_RUNS": str(tmp_path), "CPCBENCH_DATA_CACHE": str(tmp_path / "data")}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=180)


def kill_after_checkpoint(tmp_path: Path, run_dir: Path, args: list[str], step: int) -> None:
    """Run ``cpcbench ARGS`` (writing ``run_dir``) in a process that stalls once the checkpoint of ``step`` is on
    disk (tests/pretrain_stall.py), and SIGKILL it there."""
    env = {**ENV, "CPCBENCH_RUNS": str(tmp_path), "CPCBENCH_DATA_CACHE": str(tmp_path / "data")}
    proc = subprocess.Popen([sys.executable, STALL, str(step), *args], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pointer = run_dir / "checkpoints" / "latest.json"
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and not pointer.is_file():
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        assert json.loads(pointer.read_text())["step"] == step
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.parametrize("method", ["dino"])
def test_sigkilled_run_resumes_to_the_uninterrupted_weights(tmp_path: Path, frames: Path, method: str) -> None:
    args = [*run_args(frames, method, tmp_path / "ref", steps=4), "--set", "loop.ckpt_every=2"]
    ref = cli(tmp_path, *args)
    assert ref.returncode == 0, ref.stderr
    cut = tmp_path / "cut"
    cut_args = [a if a != str(tmp_path / "ref") else str(cut) for a in args]
    kill_after_checkpoint(tmp_path, cut, cut_args, step=2)
    assert not (cut / "backbone.safetensors").exists()
    resumed = cli(tmp_path, *cut_args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert_identical(weights(tmp_path / "ref" / "backbone.safetensors"), weights(cut / "backbone.safetensors"))
    assert_identical(final_state(tmp_path / "ref"), final_state(cut))


# --- settings that would train nothing ---------------------------------------------------------------------------
@pytest.mark.parametrize(("flags", "message"), [
    (["--steps", "-5"], "steps must be a positive"),
    (["--steps", "0"], "steps must be a positive"),
    (["--batch-size", "0"], "batch size must be a positive"),
    (["--epochs", "0"], "--epochs must be a positive"),
    (["--epochs", "-1"], "--epochs must be a positive"),
    (["--set", "epochs=-2"], "epochs must be >= 0"),
    (["--steps", "4", "--epochs", "1"], "--steps or --epochs"),
])
def test_nonpositive_schedules_are_refused_before_anything_is_written(tmp_path: Path, frames: Path,
                                                                      flags: list[str], message: str) -> None:
    runs = tmp_path / "runs"
    res = invoke(["pretrain", "body", "--data", str(frames), *flags], runs)
    assert res.exit_code == 2, res.output
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last
    assert not runs.exists() or not any(runs.rglob("*")), sorted(runs.rglob("*"))


def test_resume_with_nothing_to_resume_is_an_error(tmp_path: Path, frames: Path) -> None:
    out = tmp_path / "fresh"
    res = invoke([*run_args(frames, "cpc", out, steps=1), "--resume"], tmp_path)
    assert res.exit_code == 2 and "nothing to resume" in res.output.strip().splitlines()[-1]
    assert not out.exists()


def test_a_run_that_did_not_train_exports_nothing(tmp_path: Path, frames: Path, monkeypatch) -> None:
    import harness.train
    from harness.train import TrainResult

    monkeypatch.setattr(harness.train, "train", lambda model, ds, loop, optim, run_dir, **kw: TrainResult(
        steps=0, history=[], final_loss=float("nan"), wall_time_s=0.0, flops_per_step=0.0, run_dir=Path(run_dir)))
    res = invoke(run_args(frames, "cpc", tmp_path / "idle"), tmp_path)
    assert res.exit_code == 2 and "trained no step" in res.output
    assert not (tmp_path / "idle" / "backbone.safetensors").exists()


# --- flags beat presets; a large render is stated and must be confirmed -------------------------------------------
def test_command_line_steps_beat_the_preset_epochs() -> None:
    from harness.pretrain import build_config

    cfg = build_config("body", ["paper"], [], **{"loop.steps": 7})
    assert cfg.loop.steps == 7 and cfg.epochs == 0 and cfg.warmup_epochs == 0 and cfg.arch == "vit_base"
    cfg = build_config("body", ["paper"], ["loop.steps=9"])
    assert cfg.loop.steps == 9 and cfg.epochs == 0
    assert build_config("body", ["paper"], [], epochs=2.0).epochs == 2.0


def test_paper_preset_with_steps_trains_those_steps(tmp_path: Path, frames: Path) -> None:
    res = invoke(["pretrain", "body", "--preset", "paper", "--arch", "vit_tiny", "--data", str(frames), *TINY,
                  "--steps", "2", "--set", "eval_every=0", "--out", str(tmp_path / "p"), "--json"], tmp_path)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout[res.stdout.index("{"):])["steps"] == 2


def test_a_large_synthetic_render_must_be_confirmed(tmp_path: Path, monkeypatch) -> None:
    import shutil
    from types import SimpleNamespace

    import humans.world

    rendered: list[tuple] = []

    def fake_ensure(domain: str, frames: int, size: int, *a, **kw):
        rendered.append((domain, frames, size))
        raise humans.world.DataError("render stopped by the test")

    monkeypatch.setattr(humans.world, "ensure_frames", fake_ensure)
    # whatever this machine's disk holds: the refusal tested here is the confirmation, not the free space
    monkeypatch.setattr(shutil, "disk_usage", lambda p: SimpleNamespace(total=10**14, used=0, free=10**14))
    res = invoke(["pretrain", "body", "--preset", "paper"], tmp_path)
    assert res.exit_code == 2, res.output
    last = res.output.strip().splitlines()[-1]
    assert "200,000" in last and "224 px" in last and " GB" in last and "--data" in last and "--frames" in last
    assert rendered == [] and not (tmp_path / "pretrain").exists()
    res = invoke(["pretrain", "body", "--preset", "paper", "--frames", "30000"], tmp_path)
    assert rendered == [("body", 30000, 224)] and "render stopped by the test" in res.output
    res = invoke(["pretrain", "body", "--frames", "0"], tmp_path)
    assert res.exit_code == 2 and "--frames must be a positive" in res.output


def test_render_estimate_scales_with_frames_and_size() -> None:
    from humans.frames import estimate_render

    small, big = estimate_render("body", 2048, 128), estimate_render("body", 200_000, 224)
    assert 40e9 < big.bytes < 60e9 and big.seconds > 3600 and big.frames == 200_000
    assert small.bytes < 1e9 and not small.large and big.large
    assert estimate_render("hand", 2048, 128).bytes < small.bytes
    assert "GB" in big.describe() and "200,000" in big.describe()


def test_data_synth_refuses_a_render_the_disk_cannot_hold(tmp_path: Path, monkeypatch) -> None:
    import shutil as sh

    monkeypatch.setattr(sh, "disk_usage", lambda p: sh._ntuple_diskusage(10**12, 10**12 - 10**9, 10**9))
    res = invoke(["data", "synth", "body", "--frames", "200000", "--size", "224", "--out", str(tmp_path / "d")],
                 tmp_path)
    assert res.exit_code == 2 and "free" in res.output and "GB" in res.output
    assert not (tmp_path / "d").exists()


def test_dataloader_workers_never_exceed_the_cores(tmp_path: Path, monkeypatch) -> None:
    import torch.utils.data
    from train_worker import ToyData, ToyModel

    from harness.train import LoopConfig, OptimConfig, train

    seen: list[int] = []
    real = torch.utils.data.DataLoader

    class Recording(real):
        def __init__(self, *a, num_workers: int = 0, **kw) -> None:
            seen.append(num_workers)
            super().__init__(*a, num_workers=0, **kw)

    monkeypatch.setattr(torch.utils.data, "DataLoader", Recording)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    train(ToyModel(), ToyData(), LoopConfig(steps=2, batch_size=8, num_workers=8, device="cpu",
                                            count_flops=False), OptimConfig(), tmp_path)
    assert seen and set(seen) == {1}


# --- torchrun: rank 0 speaks --------------------------------------------------------------------------------------
def test_torchrun_prints_one_json_document(tmp_path: Path, frames: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    assert torchrun, "torchrun not found next to the python running the tests"
    env = {**ENV, "CPCBENCH_RUNS": str(tmp_path), "CPCBENCH_DATA_CACHE": str(tmp_path / "data")}
    proc = subprocess.run(["timeout", "120", torchrun, "--standalone", "--nproc_per_node=2", "-m", "harness.cli",
                           *run_args(frames, "cpc", tmp_path / "ddp", steps=2), "--json"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)  # exactly one document: a second one would not parse
    assert summary["steps"] == 2 and Path(summary["backbone"]).is_file()
    assert proc.stderr.count("pretraining cpc on") == 1
