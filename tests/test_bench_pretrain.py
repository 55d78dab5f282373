"""Pretraining step throughput (``make bench``): images/s and achieved GFLOP/s of one optimizer step of CPC,
MAE and DINO (ViT-Tiny/16, 128 px, batch 32, fp32, CPU), next to this CPU's fp32 matmul GFLOP/s measured in
the same run. Target (issue 5): a CPC step reaches >= 60 % of the matmul rate. Reported, never asserted:
wall-clock numbers depend on the machine and on what else runs on it.

FLOPs per step: ``harness.flops.count_flops`` (torch's FlopCounterMode with the CPU attention kernels mapped
to torch's SDPA formulas), forward + backward; the optimizer update is not counted.
"""

from __future__ import annotations

import time

import pytest
import torch

import pretraining  # noqa: F401  (registration)
from harness.flops import count_flops
from harness.registry import METHODS
from pretraining.vit import build_vit

pytestmark = pytest.mark.bench
IMG, BATCH = 128, 32


def matmul_gflops(n: int = 1536, repeats: int = 5) -> float:
    """Best-of fp32 GFLOP/s of an n x n @ n x n matmul (2 n^3 FLOPs)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def batch_for(kind: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    if kind == "pairs":
        return {"img1": torch.randn(BATCH, 3, IMG, IMG, generator=g),
                "img2": torch.randn(BATCH, 3, IMG, IMG, generator=g), "kind": torch.arange(BATCH) % 2}
    if kind == "images":
        return {"image": torch.randn(BATCH, 3, IMG, IMG, generator=g)}
    if kind == "multicrop":
        return {"global": torch.randn(BATCH, 2, 3, IMG, IMG, generator=g),
                "local": torch.randn(BATCH, 4, 3, 48, 48, generator=g)}
    raise ValueError(kind)


def step_rate(name: str, steps: int = 4) -> tuple[float, float, float]:
    """(seconds per step, FLOPs per step, images per step) of forward + backward + AdamW."""
    torch.manual_seed(0)
    cls = METHODS.get(name)
    model = cls(build_vit("vit_tiny", img_size=IMG), cls.config_cls())
    batch = batch_for(cls.data_kind)
    flops = count_flops(model, batch)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def one() -> None:
        out = model(batch)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        if hasattr(model, "after_optimizer_step"):
            model.after_optimizer_step(1, 10)

    one()  # warm-up (allocator, oneDNN primitives)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        one()
        times.append(time.perf_counter() - t)
    images = {"pairs": 2 * BATCH, "images": BATCH, "multicrop": 6 * BATCH}[cls.data_kind]
    return sorted(times)[len(times) // 2], flops, images


@pytest.mark.parametrize("name", ["cpc", "mae", "dino"])
def test_step_throughput_vs_matmul(name: str) -> None:
    peak = matmul_gflops()
    sec, flops, images = step_rate(name)
    peak_after = matmul_gflops()
    peak = max(peak, peak_after)
    achieved = flops / sec / 1e9
    samples = BATCH / sec
    print(f"\n[bench pretrain] {name}: ViT-Tiny/16 {IMG}px batch {BATCH} (threads={torch.get_num_threads()}): "
          f"{sec * 1e3:.0f} ms/step, {samples:.1f} samples/s ({images / sec:.1f} images/s incl. views), "
          f"{flops / 1e9:.1f} GFLOP/step, {achieved:.1f} GFLOP/s = {100 * achieved / peak:.0f}% of fp32 matmul "
          f"{peak:.1f} GFLOP/s (target for cpc: >= 60%)")
    assert flops > 0 and sec > 0
