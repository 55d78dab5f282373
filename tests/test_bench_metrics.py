"""Speed of the batched metrics against per-sample numpy loops measured in the same run (``make bench``).

Sizes are the real benchmarks': 3DPW test (35,515 samples x 14 LSP joints) for PA-MPJPE, FreiHAND evaluation
(3,960 meshes x 778 vertices) for F@5/F@15. Numbers are printed, never asserted (the machine is shared); the
results are also checked for equality with the loops, so a fast wrong answer cannot pass.
``CPCBENCH_BENCH_SMOKE=1`` (``make test``): 2,000 and 200 samples, one round each.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from tasks import metrics as M

pytestmark = pytest.mark.bench
SMOKE = os.environ.get("CPCBENCH_BENCH_SMOKE") == "1"  # small sizes, one round: checks the benchmark runs
ROUNDS = 1 if SMOKE else 3


def _best(fn, repeat: int = ROUNDS) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def _loop_pa_mpjpe(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """The per-sample reference loop (SPIN/HMR compute_similarity_transform, one SVD per sample)."""
    out = np.empty(len(pred))
    for i in range(len(pred)):
        S1, S2 = pred[i].T, gt[i].T
        mu1, mu2 = S1.mean(1, keepdims=True), S2.mean(1, keepdims=True)
        X1, X2 = S1 - mu1, S2 - mu2
        K = X1 @ X2.T
        U, _, Vh = np.linalg.svd(K)
        Z = np.eye(3)
        Z[-1, -1] = np.sign(np.linalg.det(U @ Vh))
        R = Vh.T @ Z @ U.T
        scale = np.trace(R @ K) / np.sum(X1 ** 2)
        aligned = scale * R @ S1 + (mu2 - scale * R @ mu1)
        out[i] = np.linalg.norm(aligned - S2, axis=0).mean()
    return out


def _loop_fscores(pred: np.ndarray, gt: np.ndarray, ths: tuple[float, ...]) -> np.ndarray:
    """Per-sample brute-force numpy nearest neighbours (as shreyashampali/ho3d eval.py's calculate_fscore)."""
    out = np.empty((len(pred), len(ths)))
    for i in range(len(pred)):
        d = np.sqrt(((gt[i][:, None, :] - pred[i][None, :, :]) ** 2).sum(-1))
        d1, d2 = d.min(1), d.min(0)
        for k, th in enumerate(ths):
            p, r = np.mean(d1 < th), np.mean(d2 < th)
            out[i, k] = 0.0 if p + r == 0 else 2 * p * r / (p + r)
    return out


def test_bench_pa_mpjpe_3dpw_size():
    rng = np.random.default_rng(0)
    n, j = (2_000 if SMOKE else 35_515), 14
    gt = rng.normal(size=(n, j, 3)) * 0.3
    pred = gt + rng.normal(size=(n, j, 3)) * 0.05 + rng.normal(size=(n, 1, 3))
    pred[: n // 50] *= np.array([1.0, -1.0, 1.0])  # 2% mirrored: det(M) < 0, the Kabsch det fix
    # interleave the two (best of 3 each) so that load changes on the shared machine hit both alike
    t_loop = t_fast = float("inf")
    for _ in range(ROUNDS):
        t, ref = _best(lambda: _loop_pa_mpjpe(pred, gt), repeat=1)
        t_loop = min(t_loop, t)
        t, got = _best(lambda: M.pa_mpjpe(pred, gt), repeat=1)
        t_fast = min(t_fast, t)
    np.testing.assert_allclose(got, ref, rtol=1e-8, atol=1e-12)
    print(f"\nPA-MPJPE {n} x {j}: per-sample numpy loop {t_loop:.3f} s | batched numpy {t_fast * 1e3:.1f} ms "
          f"({t_loop / t_fast:.0f}x) [shared machine: noisy]")


def test_bench_fscore_freihand_size():
    rng = np.random.default_rng(1)
    n, v = (200 if SMOKE else 3_960), 778
    gt = rng.normal(size=(n, v, 3)) * 0.03
    pred = gt + rng.normal(size=(n, v, 3)) * 0.004
    ths = (0.005, 0.015)
    sub = n // 10  # the brute-force loop is timed on 10% of the samples and scaled up
    t_loop_sub, ref = _best(lambda: _loop_fscores(pred[:sub], gt[:sub], ths), repeat=1)
    t_loop = t_loop_sub * n / sub
    t_fast, got = _best(lambda: M.f_scores(pred, gt, ths), repeat=1)
    np.testing.assert_allclose(got[:sub], ref, atol=1e-12)
    print(f"\nF@5/F@15 {n} x {v}: per-sample numpy brute-force loop {t_loop:.1f} s (timed on {sub}, scaled) | "
          f"cpcbench {t_fast:.2f} s ({t_loop / t_fast:.0f}x) [shared machine: noisy]")
