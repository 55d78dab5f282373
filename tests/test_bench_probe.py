"""Benchmark of the feature cache (issue #15): a ``linear`` cell on cached features against the uncached
``--feature-cache off`` cell, same backbone (scratch ViT-Tiny/16), task, schedule (the task's: 300 steps of 32) and
seeds, in the same run; and ``extract_features`` alone against this CPU's fp32 matmul rate (1536², same run).
Prints; asserts no timings (the machine is shared), only that both cells' metrics were produced.

Two tasks at 64 px: ``synth-body-2d``, whose linear "probe" is the task's heatmap head (transposed convolutions:
on the CPU the head costs about half of an uncached step, which bounds the speed-up however fast the features
come), and ``synth-hand-gesture``, whose head is a linear layer on the pooled token (the probe the literature
means, where the cache removes nearly all the work).

Protocol: the cached cell runs twice, cold (the features computed, then the probe) and warm (the cache hit: no
training image is loaded); the speed ratio is uncached / warm, wall clock of ``evaluate`` for all seeds. The frame
sets are made without rendering (``tests/synth_frames.py``: 1,024 training and 64 test frames; their gesture labels
are not in the images, so the gesture metrics only show that both cells agree). FLOPs of the
extraction: forward FLOPs of one batch (FlopCounterMode with the CPU attention kernels of ``harness.flops``)
scaled to the split.
``CPCBENCH_BENCH_SMOKE=1`` (``make test``): 24 frames, 2 steps, one seed, a 256² matmul.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from bench_kit import matmul_gflops

pytestmark = pytest.mark.bench
SMOKE = os.environ.get("CPCBENCH_BENCH_SMOKE") == "1"  # tiny sizes: checks the benchmark runs
IMG = 64
SEQS, PER_SEQ = (3, 8) if SMOKE else (17, 64)  # the last sequence is the test split
SEEDS, STEPS = (1, 2) if SMOKE else (3, None)  # None: the task's schedule
MATMUL_N = 256 if SMOKE else 1536




def forward_flops(backbone: torch.nn.Module, images: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    from harness.flops import _cpu_sdpa_mapping

    backbone.eval()
    with torch.inference_mode(), FlopCounterMode(display=False, custom_mapping=_cpu_sdpa_mapping()) as fc:
        backbone.forward_features(images)
    return float(fc.get_total_flops())


def _summary(rec: dict) -> str:
    return ", ".join(f"{k} {np.mean(m['per_seed']):.2f} ± {np.std(m['per_seed']):.2f}"
                     for k, m in rec["metrics"].items())


def compare(tmp_path: Path, task: str, domain: str) -> Path:
    """Cold, warm and uncached linear cells of ``task``; prints their times and metrics; returns the frame set."""
    from synth_frames import make_frames

    import harness.evaluate as ev

    frames = make_frames(tmp_path / domain, domain, size=IMG, seqs=SEQS, frames_per_seq=PER_SEQ)

    def cell(feature_cache: str) -> tuple[float, dict]:
        cfg = ev.EvalConfig(backbone="scratch", task=task, protocol="linear", img_size=IMG, data_root=str(frames),
                            device="cpu", seeds=SEEDS, steps=STEPS, feature_cache=feature_cache)
        t = time.perf_counter()
        rec = ev.evaluate(cfg, tmp_path / "results", tmp_path / "runs")
        return time.perf_counter() - t, rec

    cold_s, _ = cell("on")
    warm_s, warm = cell("on")
    off_s, off = cell("off")
    assert warm["metrics"] and off["metrics"] and warm["config"]["feature_cache"] == "on"
    print(f"\nlinear cell, scratch ViT-Tiny, {task} {IMG} px, {SEEDS} seed(s), {warm['config']['steps']} steps, "
          f"{warm['per_seed'][0]['n_train']} train / {warm['n_samples']} test:")
    print(f"  cached, cold (features computed): {cold_s:7.2f} s")
    print(f"  cached, warm (cache hit):         {warm_s:7.2f} s   {_summary(warm)}")
    print(f"  uncached (--feature-cache off):   {off_s:7.2f} s   {_summary(off)}")
    print(f"  speed-up warm vs uncached: {off_s / warm_s:.1f}x (issue #15 wants >= 20x); cold: {off_s / cold_s:.1f}x")
    return frames


def test_bench_linear_cached_vs_uncached(tmp_path: Path) -> None:
    from harness.backbones import resolve_backbone
    from harness.features import extract_features
    from harness.registries import TASKS

    compare(tmp_path, "synth-hand-gesture", "hand")
    frames = compare(tmp_path, "synth-body-2d", "body")

    # extract_features alone, against the matmul rate of this CPU measured now
    torch.manual_seed(0)
    backbone, binfo = resolve_backbone("scratch", "body", IMG)
    task = TASKS.get("synth-body-2d")(str(frames))
    ds = task.build_dataset("train", IMG)
    t = time.perf_counter()
    fs = extract_features(backbone, binfo, task, "train", IMG, cache_root=tmp_path / "cold-cache", dataset=ds)
    extract_s = time.perf_counter() - t
    batch = torch.stack([ds[i]["image"] for i in range(min(32, len(ds)))])
    flops = forward_flops(backbone, batch) * len(ds) / len(batch)
    mm = matmul_gflops(MATMUL_N)
    print(f"  extract_features: {len(ds)} frames -> {tuple(fs.tokens.shape)} float16 in {extract_s:.2f} s, "
          f"{flops / extract_s / 1e9:.1f} GFLOP/s ({flops / 1e9:.1f} GFLOP forward) vs fp32 matmul "
          f"{MATMUL_N}² {mm:.1f} GFLOP/s ({100 * flops / extract_s / 1e9 / mm:.0f} %)")
