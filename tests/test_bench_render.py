"""Rendering throughput of the synthetic world next to ViT-Tiny/16 training throughput, same run, same size.

Reports (never asserts on wall-clock): body frames/s at 128 px rendered with 1 and 2 worker processes
(2 workers: steady rate, and wall clock including process start-up), random cross-view/cross-pose pair
reads/s from the written shards with a one-shard cache (what pretraining's data loader does), and
ViT-Tiny/16 images/s (fwd + bwd + AdamW, batch 32, fp32). Ratios > 1 mean the data side keeps up;
pretraining reads pre-rendered shards, so only the read rate matters during training.
``CPCBENCH_BENCH_SMOKE=1`` (``make test``): 64 px, 2 cameras x 2 frames per sequence, 20 pair reads, training
batch 4 for one step.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

SMOKE = os.environ.get("CPCBENCH_BENCH_SMOKE") == "1"  # tiny sizes, one round: checks the benchmark runs
SIZE = 64 if SMOKE else 128
WORLD = {"cameras": 2, "seq_len": 2} if SMOKE else {}  # generator overrides (humans.world.generate)


def _train_images_per_s(steps: int = 1 if SMOKE else 4, batch: int = 4 if SMOKE else 32) -> float:
    import timm
    import torch

    model = timm.create_model("vit_tiny_patch16_224", img_size=SIZE, num_classes=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, SIZE, SIZE)

    def step() -> None:
        loss = model(x).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - t)


def _pair_reads_per_s(root: Path, n: int = 20 if SMOKE else 200) -> float:
    from humans.frames import FrameStore, PairSampler

    store = FrameStore(root, cache_shards=1)  # near worst case: most pairs need a shard read from disk
    sampler = PairSampler(store.manifest, mix=0.5, min_gap=1 if SMOKE else 2, max_gap=12)
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    for _ in range(n):
        i, j, _ = sampler.sample(rng)
        store.load(i)["rgb"], store.load(j)["rgb"]
    return n / (time.perf_counter() - t)


@pytest.mark.bench
def test_render_vs_train_throughput(tmp_path: Path) -> None:
    from humans.world import generate, make_config

    train_before = _train_images_per_s()  # in a process that has not rendered yet
    per_seq = make_config("body", 1, **WORLD).frames_per_sequence
    # imports, model files, GL context
    generate("body", per_seq, size=SIZE, out=tmp_path / "warm", workers=1, **WORLD)
    n1 = 2 * per_seq
    t = time.perf_counter()
    generate("body", n1, size=SIZE, seed=1, out=tmp_path / "w1", workers=1, **WORLD)
    fps1 = n1 / (time.perf_counter() - t)
    # 2 workers: the difference of a short and a longer run gives the steady rate without process start-up
    t = time.perf_counter()
    generate("body", 2 * per_seq, size=SIZE, seed=2, out=tmp_path / "w2a", workers=2, **WORLD)
    short = time.perf_counter() - t
    n2 = 6 * per_seq
    t = time.perf_counter()
    generate("body", n2, size=SIZE, seed=2, out=tmp_path / "w2", workers=2, **WORLD)
    long = time.perf_counter() - t
    fps2, fps2_steady = n2 / long, (n2 - 2 * per_seq) / max(long - short, 1e-6)
    pairs = _pair_reads_per_s(tmp_path / "w2")
    train = _train_images_per_s()
    shard_mb = sum(p.stat().st_size for p in (tmp_path / "w2" / "shards").glob("*.npz")) / n2 / 1e6
    print(f"\n[bench render] body frames at {SIZE}px: 1 worker {fps1:.1f} frames/s, 2 workers {fps2_steady:.1f} "
          f"frames/s steady ({fps2:.1f} incl. process start-up); shards {shard_mb * 1000:.0f} KB/frame")
    print(f"[bench render] ViT-Tiny/16 {SIZE}px training (batch 32, fwd+bwd+AdamW): {train_before:.1f} images/s "
          f"before rendering, {train:.1f} images/s after rendering in the same process")
    train = train_before  # ratios against training in a process that never rendered (as pretraining does)
    print(f"[bench render] ratio rendering/training: 1 worker {fps1 / train:.2f}x, "
          f"2 workers {fps2_steady / train:.2f}x")
    print(f"[bench render] random pair reads from shards: {pairs:.1f} pairs/s = {2 * pairs / train:.2f}x the "
          "training image rate (pretraining reads pre-rendered shards)")
    assert fps1 > 0 and fps2 > 0 and train > 0 and pairs > 0
