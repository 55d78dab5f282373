"""The loop's speed log: GFLOP/s only where FLOPs were counted (fine-tuning does not count them: no "0.0 GFLOP/s")."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from harness.train import LoopConfig, OptimConfig, train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_worker import ToyData, ToyModel  # noqa: E402


@pytest.mark.parametrize("count", [False, True])
def test_gflops_logged_only_when_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, count: bool) -> None:
    monkeypatch.setenv("CPCBENCH_NO_PROGRESS", "1")
    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda r: messages.append(r.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("cpcbench")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        res = train(ToyModel(), ToyData(n=16), LoopConfig(steps=3, batch_size=8, log_every=1, device="cpu",
                                                          count_flops=count),
                    OptimConfig(base_lr=0.01, warmup_steps=1), tmp_path / "run")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    steps = [m for m in messages if " step " in m and "img/s" in m]
    lines = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(steps) == 3 and len(lines) == 3
    if count:
        assert res.flops_per_step > 0
        assert all(h["gflops_per_s"] > 0 for h in res.history + lines)
        assert all(" GFLOP/s" in m for m in steps)
    else:
        assert res.flops_per_step == 0
        assert not any("gflops_per_s" in h for h in res.history + lines)
        assert not any("GFLOP/s" in m for m in steps), steps
