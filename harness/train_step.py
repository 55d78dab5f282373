"""One optimizer update of the training loop, and the batches it eats.

``batches`` yields the global batches of steps ``start..loop.steps - 1`` in the order of
``harness.distributed.StepBatchSampler`` (this rank's slice, on the device), calling ``dataset.set_epoch`` before
each epoch. ``TrainStep`` runs one update: learning rate from the schedule, forward (bf16 autocast on a GPU),
the loss averaged over ranks and the loss parts gathered by name, backward, clipping, a stop on a non-finite
loss or gradient norm before the update is applied, the update, and ``model.after_optimizer_step``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import CpcbenchError
from harness.distributed import StepBatchSampler, all_gather_object
from harness.optim import lr_at
from harness.train_state import nonfinite_error


def to_device(batch: Any, device: Any) -> Any:
    """``batch`` (tensors, or dicts/lists/tuples of them) moved to ``device``; anything else as is."""
    import torch

    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def batches(dataset: Any, loop: Any, start: int, per_epoch: int, workers: int, collate_fn: Callable | None,
            device: Any, rank: int, world: int) -> Iterator[Any]:
    """This rank's batch of every step from ``start`` to ``loop.steps`` (a ``LoopConfig``), on ``device``.

    One DataLoader per epoch, with ``workers`` processes; the order is a function of ``(loop.seed, step)`` only.
    """
    import torch
    from torch.utils.data import DataLoader

    step = start
    while step < loop.steps:
        epoch, first = divmod(step, per_epoch)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        sampler = StepBatchSampler(len(dataset), loop.batch_size, loop.seed, epoch, rank, world, start=first,
                                   stop=min(per_epoch, first + loop.steps - step))
        gen = torch.Generator().manual_seed(loop.seed * 1_000_003 + epoch)
        loader = DataLoader(dataset, batch_sampler=sampler, num_workers=workers, collate_fn=collate_fn,
                            pin_memory=device.type == "cuda", generator=gen)
        for items in loader:
            yield to_device(items, device)
            step += 1


@dataclass(frozen=True)
class StepOut:
    loss: float                # the loss averaged over ranks
    parts: dict[str, float]    # the scalar loss parts, each averaged over the ranks that report it
    grad_norm: float           # before clipping
    lr: float                  # the learning rate of this step (before a group's lr_scale)


def scalar_parts(out: dict[str, Any]) -> dict[str, float]:
    """The scalar entries of a forward's output other than ``loss`` (numbers or 0-d tensors), as floats."""
    import torch

    return {k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for k, v in out.items()
            if k != "loss" and (isinstance(v, int | float) or (isinstance(v, torch.Tensor) and v.ndim == 0))}


def merge_parts(per_rank: list[dict[str, float]]) -> dict[str, float]:
    """Average each part over the ranks that report it (a CPC batch without cross-pose pairs has no
    ``loss_cross_pose``): ``[{"a": 1, "b": 4}, {"a": 3}] -> {"a": 2, "b": 4}``."""
    gathered: dict[str, list[float]] = {}
    for parts in per_rank:
        for k, v in parts.items():
            gathered.setdefault(k, []).append(v)
    return {k: sum(v) / len(v) for k, v in gathered.items()}


class TrainStep:
    """``step(items, i) -> StepOut``: optimizer update number ``i`` (0-based) on this rank's batch ``items``.

    ``net`` is what runs forward (the DDP wrapper, or the caller's module); ``raw`` the plain module whose
    ``after_optimizer_step(i + 1, total)`` hook is called after the update. ``base_lr`` is the effective peak
    learning rate; ``amp`` the autocast dtype or None.
    """

    def __init__(self, net: Any, raw: Any, opt: Any, base_lr: float, loop: Any, optim: Any, amp: Any,
                 device: Any, world: int, run_dir: Path) -> None:
        self.net, self.raw, self.opt, self.base_lr, self.loop, self.optim = net, raw, opt, base_lr, loop, optim
        self.amp, self.device, self.world, self.run_dir = amp, device, world, run_dir
        self.params = [p for g in opt.param_groups for p in g["params"]]
        self.hook = getattr(raw, "after_optimizer_step", None)

    def __call__(self, items: Any, step: int) -> StepOut:
        import torch

        lr = lr_at(step, self.loop.steps, self.optim.warmup_steps, self.base_lr, self.optim.min_lr_ratio)
        for g in self.opt.param_groups:
            g["lr"] = lr * g["lr_scale"]
        with torch.autocast(self.device.type, dtype=self.amp) if self.amp is not None else contextlib.nullcontext():
            out = self.net(items)
        loss = self._loss(out)
        total, parts = self._across_ranks(loss, scalar_parts(out))
        if not math.isfinite(total):
            raise nonfinite_error("loss", total, step + 1, self.run_dir)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.optim.clip_grad or math.inf))
        if not math.isfinite(norm):
            raise nonfinite_error("gradient norm", norm, step + 1, self.run_dir)
        self.opt.step()
        if self.hook is not None:
            self.hook(step + 1, self.loop.steps)
        return StepOut(total, parts, norm, lr)

    def _loss(self, out: Any) -> Any:
        import torch

        name = type(self.raw).__name__
        if not isinstance(out, dict) or "loss" not in out:
            raise CpcbenchError(f"{name}.forward must return a dict with 'loss'")
        loss = out["loss"]
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            raise CpcbenchError(f"{name}.forward must return 'loss' as a scalar tensor, got "
                                f"{getattr(loss, 'shape', type(loss).__name__)}; reduce it with .mean()")
        return loss

    def _across_ranks(self, loss: Any, parts: dict[str, float]) -> tuple[float, dict[str, float]]:
        """The loss all-reduced to its mean over ranks; the parts gathered by name (every rank gets the same)."""
        total = loss.detach().float().reshape(1).clone()
        if self.world > 1:
            import torch.distributed as tdist

            tdist.all_reduce(total)
            total = total / self.world
            parts = merge_parts(all_gather_object(parts))
        return float(total.item()), parts
