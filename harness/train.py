"""The one training loop: pretraining (CPC, MAE, DINO, supervised) and fine-tuning all run through ``train``.

The model is a ``nn.Module`` whose ``forward(batch: dict) -> dict`` returns ``"loss"`` (a scalar tensor) and
optionally other scalar parts, which are logged; the loop never branches on the method. Recipe: AdamW
(Loshchilov & Hutter 2019; torch's fused kernel) with linear warmup and cosine decay, the learning rate scaled by
global batch / 256 (``harness.optim``), gradient clipping, fp32 on the CPU and bf16 autocast on a GPU, DDP under
``torchrun`` (gloo on the CPU, NCCL on GPUs) with the deterministic step sampler of ``harness.distributed``;
``loop.compile`` compiles the transformer blocks first (``harness.fast``).

Optional hooks, called when present: ``model.after_optimizer_step(step, total_steps)`` after each update
(``step`` counts completed updates, 1..total; e.g. DINO's EMA teacher) and ``dataset.set_epoch(epoch)``
before each epoch. A dataset with random augmentation must draw it from
``np.random.default_rng([seed, epoch, index])`` so that resuming is exact with any number of workers.

Checkpoints (``core.checkpoints.save_train_state``) hold the model, optimizer moments, step, the
python/numpy/torch RNG states of every rank, the data position and the history; ``resume=True`` continues
bit-identically on the CPU. A non-finite loss or gradient norm stops the run with a ``CpcbenchError``
before the bad update is applied or saved, so the last checkpoint stays good. ``run_dir/log.jsonl`` gets
one JSON line per logged step.

``train`` is the outline; its parts live beside it: ``harness.train_step`` (the batches and one optimizer
update), ``harness.train_log`` (history, ``log.jsonl``, progress, held-out evaluation), ``harness.train_state``
(the checkpointer, RNG states, exported weights) and ``harness.flops.FlopMeter``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import CpcbenchError
from harness.distributed import StepBatchSampler, barrier, placement
from harness.fast import warm_compiled
from harness.flops import FlopMeter
from harness.optim import effective_lr
from harness.optim import param_groups as default_param_groups
from harness.train_log import HeldOut, TrainLog
from harness.train_state import Checkpointer, export_state, preserved_rng, unwrap
from harness.train_step import TrainStep, batches

__all__ = ["LoopConfig", "OptimConfig", "TrainResult", "check_loop", "export_state", "preserved_rng", "train",
           "unwrap"]
log = logging.getLogger("cpcbench.train")


@dataclass(frozen=True)
class OptimConfig:
    base_lr: float = 1.5e-4        # per 256 samples: effective lr = base_lr * global_batch / 256
    weight_decay: float = 0.05     # not applied to biases, norms, tokens, pos embeds (ndim < 2)
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 20
    min_lr_ratio: float = 0.0      # cosine decays to base_lr_eff * min_lr_ratio
    clip_grad: float | None = 3.0
    layer_decay: float | None = None  # layer-wise LR decay for ViT fine-tuning (groups from `backbone.blocks`)


@dataclass(frozen=True)
class LoopConfig:
    steps: int = 100
    batch_size: int = 32           # global batch (split over DDP ranks)
    num_workers: int = 0
    log_every: int = 10
    ckpt_every: int = 0            # 0: only at the end; else every N steps (atomic, resumable)
    seed: int = 0
    device: str = "auto"
    count_flops: bool = True       # count FLOPs of one step once (on a copy of the model)
    compile: bool = False          # compile the transformer blocks before the first step (harness.fast)


@dataclass
class TrainResult:
    steps: int
    history: list[dict[str, Any]]  # per logged step: step, epoch, loss, parts, lr, grad_norm, img_per_s,
                                   # [gflops_per_s (only when FLOPs were counted)][, eval]
    final_loss: float
    wall_time_s: float
    flops_per_step: float          # forward + backward FLOPs of one global batch (0 when not counted)
    run_dir: Path
    checkpoint: Path | None = None  # the last step directory written
    evals: list[dict[str, Any]] = field(default_factory=list)
    compile: dict[str, Any] = field(default_factory=dict)  # {blocks, seconds} when loop.compile (not in step times)


def check_loop(loop: LoopConfig) -> None:
    """Refuse a loop that would train nothing (or cannot run): a ``CpcbenchError`` naming the setting."""
    checks = [(loop.steps >= 1, f"steps must be a positive number of optimizer steps, got {loop.steps}"),
              (loop.batch_size >= 1, f"batch size must be a positive number of items, got {loop.batch_size}"),
              (loop.num_workers >= 0, f"loop.num_workers must be >= 0, got {loop.num_workers}"),
              (loop.log_every >= 0, f"loop.log_every must be >= 0, got {loop.log_every}"),
              (loop.ckpt_every >= 0, f"loop.ckpt_every must be >= 0 (0: only at the end), got {loop.ckpt_every}")]
    for ok, message in checks:
        if not ok:
            raise CpcbenchError(message)


def train(model: Any, dataset: Any, loop: LoopConfig, optim: OptimConfig, run_dir: str | Path, *,
          resume: bool = False, config: dict[str, Any] | None = None, param_groups: list[dict] | None = None,
          collate_fn: Callable | None = None, desc: str = "train",
          eval_fn: Callable[[Any, int], dict] | None = None, eval_every: int = 0,
          snapshots: Any = None, flops_per_step: float = 0.0) -> TrainResult:
    """Train ``model`` on ``dataset`` for ``loop.steps`` optimizer steps of ``loop.batch_size`` items.

    ``param_groups``: AdamW groups to use instead of the default ones (each may set ``lr_scale`` and
    ``weight_decay``). ``eval_fn(model, step) -> dict`` runs on rank 0 every ``eval_every`` steps and at
    the end, in eval mode under ``no_grad`` with the RNG states preserved; its result is stored in the
    history entry of that step. ``resume=True`` continues from ``run_dir``'s latest checkpoint (none there is an
    error); without it, a ``run_dir`` that holds a checkpoint is refused. DataLoader workers: ``loop.num_workers``,
    at most the cores this process may use.

    A fresh run seeds python/numpy/torch with ``loop.seed + rank``; the model must be built before (under
    DDP, rank 0's initial weights are broadcast). Under ``torchrun`` call ``harness.distributed.destroy()``
    once the process is done with collectives.

    ``snapshots`` (a ``harness.snapshots.Snapshotter``): ``snapshots.write(model, step, flops_per_step)`` after
    each step it is ``due`` (and at step 0 of a fresh run), before that step's checkpoint; FLOPs are then counted
    even when ``loop.count_flops`` is off, so that each snapshot knows the pretraining FLOPs behind it.
    ``flops_per_step``: the FLOPs of one global batch, counted already (a FLOP budget set the steps from it): used
    instead of counting again; a checkpoint's count wins on resume.
    """
    from harness.runtime import autocast_dtype

    t_start = time.perf_counter()
    check_loop(loop)
    device, dist = placement(loop.device)
    rank, world = dist.rank, dist.world_size
    run_dir = Path(run_dir)
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
    amp = autocast_dtype(device)
    workers = _workers(loop.num_workers, rank)
    n, batch = len(dataset), loop.batch_size
    per_epoch = StepBatchSampler(n, batch, loop.seed, 0, rank, world).batches_per_epoch(n, batch)

    raw = unwrap(model).to(device)
    opt = _adamw(raw, optim, batch, param_groups)
    ckpt = Checkpointer(run_dir, loop, optim, config, n, per_epoch, rank, world)
    start = ckpt.open(raw, opt, resume)
    net = _ddp(raw, device) if dist.distributed else model  # else the caller's module, compiled or not
    net.train()
    update = TrainStep(net, raw, opt, effective_lr(optim.base_lr, batch), loop, optim, amp, device, world, run_dir)
    flops = FlopMeter(loop.count_flops or snapshots is not None, start.flops_per_step or flops_per_step)
    held_out = HeldOut(eval_fn, eval_every, loop.steps, amp, device.type)
    logbook = TrainLog(run_dir, desc, loop, per_epoch, rank, start.step, start.history, start.window)
    step = start.step
    compiled, compile_info = False, {}
    if snapshots is not None and step == 0 and snapshots.due(0):
        snapshots.write(raw, 0, 0.0)  # the run's random init
    try:
        for items in batches(dataset, loop, step, per_epoch, workers, collate_fn, device, rank, world):
            logbook.pause(flops.measure(raw, items, amp, device.type, world))
            if loop.compile and not compiled:
                compiled = True
                n_blocks, seconds = warm_compiled(raw, items, amp, device.type)
                logbook.pause(seconds)
                compile_info.update(blocks=n_blocks, seconds=round(seconds, 3))
            out = update(items, step)
            step += 1
            logbook.add(out.loss, out.parts, out.grad_norm)
            if snapshots is not None and snapshots.due(step):
                t0 = time.perf_counter()
                snapshots.write(raw, step, flops.per_step)
                logbook.pause(time.perf_counter() - t0)
            evaluate = held_out.due(step)
            if evaluate or logbook.due(step):
                entry = logbook.close_window(step, out.lr, flops.per_step)  # timed before the evaluation
                if evaluate and rank == 0:
                    entry["eval"] = held_out(raw, step)
                logbook.record(entry)
            logbook.progress(step, out.loss)
            if ckpt.due(step):
                t0 = time.perf_counter()
                ckpt.save(step, raw, opt, logbook.history, logbook.window, flops.per_step)
                logbook.pause(time.perf_counter() - t0)
        ckpt.finish(step, raw, opt, logbook.history, logbook.window, flops.per_step)
        if dist.distributed:
            barrier()  # every rank returns once the final checkpoint is on disk
    finally:
        logbook.close()
    history = logbook.history
    final = next((h["loss"] for h in reversed(history) if "loss" in h), float("nan"))
    return TrainResult(steps=step, history=history, final_loss=final, wall_time_s=time.perf_counter() - t_start,
                       flops_per_step=max(flops.per_step, 0.0), run_dir=run_dir,
                       checkpoint=ckpt.last if rank == 0 else None,
                       evals=[{"step": h["step"], **h["eval"]} for h in history if "eval" in h],
                       compile=compile_info)


def _workers(requested: int, rank: int) -> int:
    """DataLoader workers: at most the cores this process may use (more only slow the loop down)."""
    from core.io import usable_cpus

    workers = min(requested, usable_cpus())
    if workers < requested and rank == 0:
        log.info("%d DataLoader workers instead of %d: this process may use %d CPU cores", workers, requested,
                 usable_cpus())
    return workers


def _adamw(raw: Any, optim: OptimConfig, batch: int, groups: list[dict] | None) -> Any:
    """AdamW over ``groups`` (default: decay / no decay, layer-wise scales), each with ``lr_scale``."""
    import torch

    groups = groups if groups is not None else default_param_groups(raw, optim.weight_decay, optim.layer_decay)
    for g in groups:
        g.setdefault("lr_scale", 1.0)
        g.setdefault("weight_decay", optim.weight_decay)
    params = [p for g in groups for p in g["params"]]
    # the fused kernel (one pass over each parameter for moments, bias correction and update) where it exists
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.bfloat16) for p in params)
    return torch.optim.AdamW(groups, lr=effective_lr(optim.base_lr, batch), betas=optim.betas,
                             weight_decay=optim.weight_decay, fused=fused or None)


def _ddp(raw: Any, device: Any) -> Any:
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(raw, device_ids=[device.index] if device.type == "cuda" else None)
