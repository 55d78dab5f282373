"""A toy model and data set for the training-loop tests, and a script that trains them in a subprocess.

Run by tests/test_train_loop.py as ``python tests/train_worker.py --out DIR ...`` (resume after SIGKILL) and
under ``torchrun --nproc_per_node=2`` (DDP versus one process). Not collected by pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


class ToyData(torch.utils.data.Dataset):
    """Linear regression items with augmentation noise keyed by (seed, epoch, index)."""

    def __init__(self, n: int = 24, dim: int = 8, seed: int = 0, aug: float = 0.1) -> None:
        rng = np.random.default_rng(1234)
        self.x = rng.normal(size=(n, dim)).astype(np.float32)
        self.w = rng.normal(size=(dim, 2)).astype(np.float32)
        self.seed, self.aug, self.epoch = seed, aug, 0
        self.n = n

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        noise = np.random.default_rng([self.seed, self.epoch, i]).normal(size=self.x.shape[1]).astype(np.float32)
        x = self.x[i] + self.aug * noise
        return {"x": torch.from_numpy(x), "y": torch.from_numpy(x @ self.w), "index": torch.tensor(i)}


class ToyModel(nn.Module):
    """MLP regressor; with ``random=True`` it uses dropout and a random input mask (the global torch RNG).

    ``nan_at``: the loss is NaN from that forward call on. ``rank_part``: also report a part that only this
    rank reports, ``loss_rank<RANK>`` = RANK + 1.
    """

    def __init__(self, dim: int = 8, hidden: int = 16, random: bool = True, nan_at: int = 0,
                 sleep_after: int = 0, rank_part: bool = False) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.LayerNorm(hidden), nn.GELU(),
                                 nn.Dropout(0.1 if random else 0.0), nn.Linear(hidden, 2))
        self.register_buffer("ema", torch.zeros(hidden, dim))
        self.random, self.nan_at, self.sleep_after, self.rank_part = random, nan_at, sleep_after, rank_part
        self.calls = 0
        self.hook_steps: list[tuple[int, int]] = []

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        self.calls += 1
        x = batch["x"]
        if self.random:
            x = x * (torch.rand_like(x) > 0.2)
        err = (self.net(x) - batch["y"]) ** 2
        loss = err.mean()
        if self.nan_at and self.calls >= self.nan_at:
            loss = loss * float("nan")
        out = {"loss": loss, "loss_first": err[:, 0].mean().detach(), "pred": err}
        if self.rank_part:
            rank = int(os.environ.get("RANK", 0))
            out[f"loss_rank{rank}"] = float(rank + 1)
        return out

    def after_optimizer_step(self, step: int, total: int) -> None:
        self.hook_steps.append((step, total))
        self.ema.mul_(0.9).add_(0.1 * self.net[0].weight.detach())
        if self.sleep_after and step > self.sleep_after:
            time.sleep(60)  # the test SIGKILLs us here, after the checkpoint at `sleep_after` exists


def main() -> None:
    from core.errors import CpcbenchError
    from harness.distributed import destroy
    from harness.train import LoopConfig, OptimConfig, train

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--ckpt-every", type=int, default=0)
    ap.add_argument("--num-workers", type=int, default=0)
    ap.add_argument("--sleep-after", type=int, default=0)
    ap.add_argument("--deterministic-model", action="store_true")
    ap.add_argument("--rank-part", action="store_true", help="each rank reports a loss part of its own")
    ap.add_argument("--nan-at", type=int, default=0, help="the loss becomes NaN at this step ...")
    ap.add_argument("--nan-rank", type=int, default=-1, help="... on this rank only (-1: on every rank)")
    ap.add_argument("--resume", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    nan_here = a.nan_rank in (-1, int(os.environ.get("RANK", 0)))  # NaN only there
    model = ToyModel(random=not a.deterministic_model, sleep_after=a.sleep_after, rank_part=a.rank_part,
                     nan_at=a.nan_at if nan_here else 0)
    loop = LoopConfig(steps=a.steps, batch_size=a.batch, num_workers=a.num_workers, log_every=1,
                      ckpt_every=a.ckpt_every, seed=3, device="cpu")
    optim = OptimConfig(base_lr=0.05, warmup_steps=2, weight_decay=0.05, clip_grad=1.0)
    rank = int(os.environ.get("RANK", 0))
    try:
        res = train(model, ToyData(), loop, optim, Path(a.out), resume=a.resume, config={"toy": True})
    except CpcbenchError as e:  # every rank must stop at the same step: each writes its error, then all meet
        Path(a.out, f"error_rank{rank}.txt").write_text(str(e))
        destroy()
        sys.exit(3)
    if rank == 0:
        Path(a.out, "result.json").write_text(json.dumps({"history": res.history, "steps": res.steps,
                                                          "flops_per_step": res.flops_per_step}))
    destroy()


if __name__ == "__main__":
    main()
