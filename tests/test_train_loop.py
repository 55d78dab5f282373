"""The one training loop (harness/train.py) and its parts: schedule, parameter groups, NaN stop, exact resume
after SIGKILL, DDP against one process, FLOP counting."""

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
from torch import nn

from core.checkpoints import CheckpointError, latest_train_state, load_train_state
from core.errors import CpcbenchError
from harness.distributed import StepBatchSampler
from harness.optim import effective_lr, lr_at, param_groups
from harness.train import LoopConfig, OptimConfig, train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_worker import ToyData, ToyModel  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WORKER = str(Path(__file__).resolve().parent / "train_worker.py")
ENV = {**os.environ, "CPCBENCH_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}


def tiny_vit(depth: int = 2) -> nn.Module:
    import timm

    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=depth, embed_dim=24,
                             num_heads=2, num_classes=0)


def quick(steps: int = 6, **kw) -> LoopConfig:
    return LoopConfig(steps=steps, batch_size=8, log_every=1, seed=1, device="cpu", **kw)


OPT = OptimConfig(base_lr=0.05, warmup_steps=2, clip_grad=1.0)


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_train_state(latest_train_state(run_dir))[1]


# --- schedule and groups -------------------------------------------------------------------------
def test_lr_schedule_values() -> None:
    assert effective_lr(1.5e-4, 512) == pytest.approx(3e-4)
    assert lr_at(0, 100, 10, 1.0) == pytest.approx(0.1)
    assert lr_at(9, 100, 10, 1.0) == pytest.approx(1.0)
    assert lr_at(10, 100, 10, 1.0) == pytest.approx(1.0)            # cosine starts at the peak
    assert lr_at(55, 100, 10, 1.0) == pytest.approx(0.5)            # half way through the cosine
    assert lr_at(100, 100, 10, 1.0, min_ratio=0.1) == pytest.approx(0.1)
    assert lr_at(0, 10, 0, 2.0) == pytest.approx(2.0)               # no warmup
    after = [lr_at(s, 100, 10, 1.0, 0.05) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(after, after[1:], strict=False)) and min(after) > 0.05


def test_no_weight_decay_on_biases_norms_tokens() -> None:
    vit = tiny_vit()
    groups = param_groups(vit, weight_decay=0.05)
    wd = {n: g["weight_decay"] for g in groups for n in g["param_names"]}
    assert set(wd) == {n for n, _ in vit.named_parameters()}
    for name in ("cls_token", "pos_embed", "blocks.0.norm1.weight", "blocks.0.attn.qkv.bias", "norm.bias"):
        assert wd[name] == 0.0, name
    for name in ("patch_embed.proj.weight", "blocks.1.attn.qkv.weight", "blocks.0.mlp.fc2.weight"):
        assert wd[name] == 0.05, name


def test_layer_decay_groups() -> None:
    class Finetune(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone, self.head = tiny_vit(depth=2), nn.Linear(24, 3)

    d = 0.5
    groups = param_groups(Finetune(), weight_decay=0.05, layer_decay=d)
    scale = {n: g["lr_scale"] for g in groups for n in g["param_names"]}
    assert scale["backbone.patch_embed.proj.weight"] == d ** 3
    assert scale["backbone.cls_token"] == scale["backbone.pos_embed"] == d ** 3
    assert scale["backbone.blocks.0.attn.qkv.weight"] == d ** 2
    assert scale["backbone.blocks.1.mlp.fc1.bias"] == d ** 1
    assert scale["backbone.norm.weight"] == scale["head.weight"] == 1.0
    with pytest.raises(CpcbenchError, match="layer_decay"):
        param_groups(nn.Linear(3, 3), 0.05, layer_decay=0.7)


def test_sampler_is_deterministic_and_splits_the_global_batch() -> None:
    whole = list(StepBatchSampler(20, 8, seed=5, epoch=1))
    ranks = [list(StepBatchSampler(20, 8, seed=5, epoch=1, rank=r, world=2)) for r in range(2)]
    assert len(whole) == 2 and all(len(b) == 8 for b in whole)
    assert [a + b for a, b in zip(*ranks, strict=True)] == whole
    assert list(StepBatchSampler(20, 8, seed=5, epoch=1, start=1)) == whole[1:]
    assert whole != list(StepBatchSampler(20, 8, seed=5, epoch=2))
    with pytest.raises(CpcbenchError, match="fewer than one global batch"):
        StepBatchSampler(4, 8, 0, 0)


# --- the loop in process --------------------------------------------------------------------------
def test_loop_logs_hooks_epochs_and_eval(tmp_path: Path) -> None:
    data, model = ToyData(n=20), ToyModel()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    epochs: list[int] = []
    set_epoch = data.set_epoch
    data.set_epoch = lambda e: (epochs.append(e), set_epoch(e))  # type: ignore[method-assign]
    res = train(model, data, quick(steps=6), OPT, tmp_path, eval_fn=lambda m, s: {"val": float(s)}, eval_every=4)
    assert res.steps == 6 and [h["step"] for h in res.history] == [1, 2, 3, 4, 5, 6]
    assert epochs == [0, 1, 2]                                       # 20 items, batch 8: 2 steps per epoch
    assert model.hook_steps == [(s, 6) for s in range(1, 7)]
    assert [e["step"] for e in res.evals] == [4, 6] and res.evals[0]["val"] == 4.0
    assert "loss_first" in res.history[0]["parts"] and "pred" not in res.history[0]["parts"]
    lines = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4, 5, 6] and lines[3]["eval"] == {"val": 4.0}
    assert res.flops_per_step > 0 and res.history[-1]["gflops_per_s"] > 0
    assert res.final_loss == res.history[-1]["loss"]
    assert not torch.equal(init["net.0.weight"], model.net[0].weight.detach())
    assert latest_train_state(tmp_path).name == "step_00000006"
    assert set(final_weights(tmp_path)) == set(model.state_dict())
    with pytest.raises(CpcbenchError, match="--resume"):             # never overwrite a run by accident
        train(ToyModel(), ToyData(n=20), quick(steps=6), OPT, tmp_path)


def test_eval_does_not_change_training(tmp_path: Path) -> None:
    torch.manual_seed(0)
    a = train(ToyModel(), ToyData(), quick(), OPT, tmp_path / "a")
    torch.manual_seed(0)
    b = train(ToyModel(), ToyData(), quick(), OPT, tmp_path / "b",
              eval_fn=lambda m, s: {"r": torch.rand(()).item()}, eval_every=1)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]


def test_autocast_path_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU's bf16 autocast branch (forward, FLOP count, eval), exercised with CPU autocast."""
    import harness.runtime

    monkeypatch.setattr(harness.runtime, "autocast_dtype", lambda device: torch.bfloat16)
    dtypes = []
    res = train(ToyModel(), ToyData(), quick(steps=2), OPT, tmp_path,
                eval_fn=lambda m, s: dtypes.append(m.net[0](torch.zeros(1, 8)).dtype) or {}, eval_every=1)
    assert res.steps == 2 and res.flops_per_step > 0 and dtypes == [torch.bfloat16] * 2
    assert all(v.dtype == torch.float32 for v in final_weights(tmp_path).values() if v.is_floating_point())


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    with pytest.raises(CpcbenchError, match=r"loss became nan at step 5; last good checkpoint: .*step_00000004"):
        train(ToyModel(nan_at=5), ToyData(), quick(steps=8, ckpt_every=2), OPT, tmp_path)
    assert latest_train_state(tmp_path).name == "step_00000004"
    assert not (tmp_path / "checkpoints" / "step_00000005").exists()
    step, weights, state = load_train_state(latest_train_state(tmp_path))
    assert step == 4 and all(torch.isfinite(v).all() for v in weights.values())
    res = train(ToyModel(), ToyData(), quick(steps=8, ckpt_every=2), OPT, tmp_path, resume=True)
    assert res.steps == 8 and all(h["loss"] == h["loss"] for h in res.history)


def test_export_state_unwraps_compile_and_progress_can_be_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.train_log import _progress
    from harness.train_state import export_state

    lin = nn.Linear(2, 3)
    compiled = torch.compile(lin)                                    # compiles lazily: nothing runs here
    assert set(compiled.state_dict()) == {"_orig_mod.weight", "_orig_mod.bias"}
    assert set(export_state(compiled)) == {"weight", "bias"}
    monkeypatch.setenv("CPCBENCH_NO_PROGRESS", "1")
    assert _progress("x", 10, 0) is None


def test_forward_must_return_a_scalar_loss(tmp_path: Path) -> None:
    class Bad(ToyModel):
        def forward(self, batch: dict) -> dict:
            return {"loss": super().forward(batch)["pred"]}

    with pytest.raises(CpcbenchError, match="scalar tensor"):
        train(Bad(), ToyData(), quick(steps=2), OPT, tmp_path)


def test_nan_gradient_stops_even_without_clipping(tmp_path: Path) -> None:
    class NanGrad(ToyModel):
        def forward(self, batch: dict) -> dict:
            out = super().forward(batch)
            w = self.net[0].weight
            out["loss"] = out["loss"] + (torch.sqrt((w * 0).sum()) if self.calls >= 3 else 0.0)  # d/dw: nan
            return out

    with pytest.raises(CpcbenchError, match="gradient norm became nan at step 3"):
        train(NanGrad(), ToyData(), quick(steps=5, ckpt_every=2),
              OptimConfig(base_lr=0.05, warmup_steps=2, clip_grad=None), tmp_path)
    assert latest_train_state(tmp_path).name == "step_00000002"


def test_resume_refuses_a_different_batch_size(tmp_path: Path) -> None:
    train(ToyModel(), ToyData(), quick(steps=2), OPT, tmp_path)
    with pytest.raises(CheckpointError, match="batch_size"):
        train(ToyModel(), ToyData(), LoopConfig(steps=4, batch_size=4, device="cpu", seed=1), OPT, tmp_path,
              resume=True)


# --- exact resume after SIGKILL (subprocesses) ----------------------------------------------------
def run_worker(out: Path, *args: str, timeout: float = 120) -> None:
    subprocess.run([sys.executable, WORKER, "--out", str(out), *args], check=True, env=ENV, cwd=ROOT,
                   timeout=timeout)


def kill_after_checkpoint(out: Path, step: int, *args: str) -> None:
    """Start a run that stalls after step ``step``'s checkpoint, then SIGKILL it there."""
    proc = subprocess.Popen([sys.executable, WORKER, "--out", str(out), "--sleep-after", str(step), *args],
                            env=ENV, cwd=ROOT)
    pointer = out / "checkpoints" / "latest.json"
    deadline = time.time() + 90
    try:
        while time.time() < deadline and proc.poll() is None:
            if pointer.is_file() and json.loads(pointer.read_text())["step"] == step:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        assert json.loads(pointer.read_text())["step"] == step
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def check_resume_identical(tmp_path: Path, *extra: str) -> None:
    n = 4  # ToyData(24 items) / batch 8 = 3 steps per epoch: the resume point lies inside epoch 1
    run_worker(tmp_path / "ref", "--steps", str(2 * n), *extra)
    kill_after_checkpoint(tmp_path / "cut", n, "--steps", str(2 * n), "--ckpt-every", str(n), *extra)
    run_worker(tmp_path / "cut", "--steps", str(2 * n), "--ckpt-every", str(n), "--resume", *extra)
    ref, cut = final_weights(tmp_path / "ref"), final_weights(tmp_path / "cut")
    assert set(ref) == set(cut)
    for k in ref:
        assert torch.equal(ref[k], cut[k]), k
    h_ref = json.loads((tmp_path / "ref" / "result.json").read_text())["history"]
    h_cut = json.loads((tmp_path / "cut" / "result.json").read_text())["history"]
    assert [h["loss"] for h in h_ref] == [h["loss"] for h in h_cut]
    logged = [json.loads(x)["step"] for x in (tmp_path / "cut" / "log.jsonl").read_text().splitlines()]
    assert logged == list(range(1, 2 * n + 1))


def test_resume_after_sigkill_is_exact(tmp_path: Path) -> None:
    check_resume_identical(tmp_path)


@pytest.mark.slow
def test_resume_after_sigkill_is_exact_with_workers(tmp_path: Path) -> None:
    check_resume_identical(tmp_path, "--num-workers", "2")


# --- DDP --------------------------------------------------------------------------------------------
def run_torchrun(out: Path, *args: str, check: bool = True) -> int:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    assert torchrun, "torchrun not found next to the python running the tests"
    return subprocess.run(["timeout", "120", torchrun, "--standalone", "--nproc_per_node=2", WORKER, "--out",
                           str(out), *args], check=check, env=ENV, cwd=ROOT, timeout=150).returncode


def test_loss_parts_are_averaged_over_the_ranks_that_report_them() -> None:
    from harness.train_step import merge_parts

    assert merge_parts([{"a": 1.0, "b": 4.0}, {"a": 3.0}]) == {"a": 2.0, "b": 4.0}
    assert merge_parts([{}, {"c": 5.0}]) == {"c": 5.0} and merge_parts([{}, {}]) == {}


def test_ddp_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    args = ["--steps", "4", "--batch", "8", "--deterministic-model", "--rank-part"]
    run_worker(tmp_path / "one", *args)
    run_torchrun(tmp_path / "two", *args)
    one = json.loads((tmp_path / "one" / "result.json").read_text())["history"]
    two = json.loads((tmp_path / "two" / "result.json").read_text())["history"]
    assert [h["loss"] for h in two] == pytest.approx([h["loss"] for h in one], rel=1e-5)
    # a part every rank reports is the whole batch's; one that a single rank reports is that rank's value
    assert [h["parts"]["loss_first"] for h in two] == pytest.approx([h["parts"]["loss_first"] for h in one],
                                                                     rel=1e-5)
    assert all(h["parts"]["loss_rank0"] == 1.0 and h["parts"]["loss_rank1"] == 2.0 for h in two)
    logged = [json.loads(x) for x in (tmp_path / "two" / "log.jsonl").read_text().splitlines()]
    assert [x["parts"] for x in logged] == [h["parts"] for h in two]
    w1, w2 = final_weights(tmp_path / "one"), final_weights(tmp_path / "two")
    assert set(w1) == set(w2)                                        # no "module." prefixes
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-5, atol=1e-6)


def test_ddp_nan_on_one_rank_stops_every_rank_at_that_step(tmp_path: Path) -> None:
    """Rank 1's loss alone turns NaN at step 3: both ranks stop there with the error (none waits in a
    collective for the other), and the step-2 checkpoint is the last one."""
    assert run_torchrun(tmp_path, "--steps", "6", "--batch", "8", "--ckpt-every", "2", "--nan-at", "3",
                        "--nan-rank", "1", check=False) != 0
    for rank in (0, 1):
        message = (tmp_path / f"error_rank{rank}.txt").read_text()
        assert message.startswith("loss became nan at step 3; last good checkpoint:"), message
        assert message.endswith("continue from that checkpoint with --resume") and "step_00000002" in message
    assert latest_train_state(tmp_path).name == "step_00000002"
    assert not (tmp_path / "checkpoints" / "step_00000003").exists()


@pytest.mark.slow
def test_ddp_resume_is_exact(tmp_path: Path) -> None:
    """Two ranks with their own RNG streams (dropout, random masks): rewinding to the step-3 checkpoint and
    resuming reproduces the step-6 weights."""
    args = ["--steps", "6", "--batch", "8", "--ckpt-every", "3"]
    run_torchrun(tmp_path, *args)
    ckdir = tmp_path / "checkpoints"
    done = final_weights(tmp_path)
    shutil.rmtree(ckdir / "step_00000006")
    (ckdir / "latest.json").write_text(json.dumps({"step": 3, "dir": "step_00000003"}))
    run_torchrun(tmp_path, *args, "--resume")
    again = final_weights(tmp_path)
    for k in done:
        assert torch.equal(done[k], again[k]), k


# --- FLOPs ------------------------------------------------------------------------------------------
def test_flops_count_cpu_attention() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    from harness.flops import count_flops

    class Wrapped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.vit = tiny_vit(depth=2)

        def forward(self, batch: dict) -> dict:
            return {"loss": self.vit.forward_features(batch["image"]).pow(2).mean()}

    model, b = Wrapped(), {"image": torch.randn(2, 3, 32, 32)}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    total = count_flops(model, b)
    assert torch.equal(torch.get_rng_state(), rng)                   # counting leaves the RNG where it was
    with FlopCounterMode(display=False) as plain:
        model(b)["loss"].backward()
    model.zero_grad(set_to_none=True)
    B, N, C, depth = 2, 1 + 4, 24, 2
    attention = depth * 4 * B * N * N * C * 3.5                      # forward 4BN²C, backward 2.5x that
    assert total - plain.get_total_flops() == attention
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
