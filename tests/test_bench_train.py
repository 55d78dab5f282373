"""Benchmark of the training loop: a plain ViT-Tiny/16 at 128 px, batch 32, fp32 on the CPU, trained through
``harness.train.train``, against this CPU's fp32 matmul rate (4096², measured in the same run) and against a
bare forward/backward/AdamW step of the same model (the loop's own overhead). Prints; asserts no timings.

Protocol: 2 warm-up steps are excluded; throughput is the median over the logged steps after them; FLOPs
per step come from ``harness.flops.count_flops`` (FlopCounterMode + the CPU attention kernels).
``CPCBENCH_BENCH_SMOKE=1`` (``make test``): 32 px, batch 4, 3 steps, a 256² matmul.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import pytest
import torch
from bench_kit import matmul_gflops
from torch import nn

from harness.train import LoopConfig, OptimConfig, train

SMOKE = os.environ.get("CPCBENCH_BENCH_SMOKE") == "1"  # tiny sizes, few steps: checks the benchmark runs
BATCH, IMG, STEPS, WARMUP = (4, 32, 3, 1) if SMOKE else (32, 128, 8, 2)
MATMUL_N = 256 if SMOKE else 4096




class ViTClassifier(nn.Module):
    """timm ViT-Tiny/16 at ``img_size`` with a 10-way head; forward(batch) -> {"loss"}."""

    def __init__(self, img_size: int = IMG) -> None:
        super().__init__()
        import timm

        self.vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=img_size, num_classes=10)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"loss": nn.functional.cross_entropy(self.vit(batch["image"]), batch["label"])}


class RandomImages(torch.utils.data.Dataset):
    def __init__(self, n: int = 2 * BATCH) -> None:
        g = torch.Generator().manual_seed(0)
        self.images = torch.randn(n, 3, IMG, IMG, generator=g)
        self.labels = torch.randint(0, 10, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[i], "label": self.labels[i]}


def bare_step_img_per_s(model: nn.Module, data: RandomImages) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = {"image": data.images[:BATCH], "label": data.labels[:BATCH]}
    times = []
    for _ in range(WARMUP + (1 if SMOKE else 4)):
        t = time.perf_counter()
        loss = model(batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return BATCH / statistics.median(times[WARMUP:])


@pytest.mark.bench
def test_bench_vit_tiny_step_through_the_loop(tmp_path: Path) -> None:
    torch.manual_seed(0)
    peak = matmul_gflops(MATMUL_N)
    res = train(ViTClassifier(), RandomImages(), LoopConfig(steps=STEPS, batch_size=BATCH, log_every=1, device="cpu"),
                OptimConfig(base_lr=1e-3, warmup_steps=2), tmp_path / "run")
    after = [h for h in res.history if h["step"] > WARMUP]
    img_s = statistics.median(h["img_per_s"] for h in after)
    gflops = statistics.median(h["gflops_per_s"] for h in after)
    bare = bare_step_img_per_s(ViTClassifier(), RandomImages())
    print(f"\n[bench train] torch threads {torch.get_num_threads()}; the CPU is shared, numbers are noisy")
    print(f"[bench train] fp32 matmul {MATMUL_N}^2: {peak:.1f} GFLOP/s")
    print(f"[bench train] ViT-Tiny/16 {IMG}px batch {BATCH} through train(): {img_s:.1f} img/s, "
          f"{res.flops_per_step / 1e9:.1f} GFLOP/step, {gflops:.1f} GFLOP/s = {gflops / peak:.0%} of matmul")
    print(f"[bench train] bare forward/backward/AdamW step: {bare:.1f} img/s; loop/bare = {img_s / bare:.2f}")
    assert res.flops_per_step > 0 and all(h["loss"] == h["loss"] for h in res.history)
