"""What the speed benchmarks (``tests/test_bench_*.py``, ``make bench``) share: the smoke switch and the fp32
matmul rate every ratio is taken against."""

from __future__ import annotations

import os
import time

import torch

SMOKE = os.environ.get("CPCBENCH_BENCH_SMOKE") == "1"  # tiny sizes, one round: checks the benchmarks run (CI)


def matmul_gflops(n: int, repeats: int = 1 if SMOKE else 3) -> float:
    """fp32 GFLOP/s of an n x n @ n x n matmul (2 n^3 FLOPs) by wall time, best of ``repeats`` after a warm-up."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9
