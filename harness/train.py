"""The one training loop: pretraining (CPC, MAE, DINO, supervised) and fine-tuning all run through ``train``.

The model is a ``nn.Module`` whose ``forward(batch: dict) -> dict`` returns ``"loss"`` (a scalar tensor) and
optionally other scalar parts, which are logged; the loop never branches on the method. Recipe: AdamW
(Loshchilov & Hutter 2019) with linear warmup and cosine decay, the learning rate scaled by global batch / 256
(``harness.optim``), gradient clipping, fp32 on the CPU and bf16 autocast on a GPU, DDP under ``torchrun``
(gloo on the CPU, NCCL on GPUs) with the deterministic step sampler of ``harness.distributed``.

Optional hooks, called when present: ``model.after_optimizer_step(step, total_steps)`` after each update
(``step`` counts completed updates, 1..total; e.g. DINO's EMA teacher) and ``dataset.set_epoch(epoch)``
before each epoch. A dataset with random augmentation must draw it from
``np.random.default_rng([seed, epoch, index])`` so that resuming is exact with any number of workers.

Checkpoints (``core.checkpoints.save_train_state``) hold the model, optimizer moments, step, the
python/numpy/torch RNG states of every rank, the data position and the history; ``resume=True`` continues
bit-identically on the CPU. A non-finite loss or gradient norm stops the run with a ``CpcbenchError``
before the bad update is applied or saved, so the last checkpoint stays good. ``run_dir/log.jsonl`` gets
one JSON line per logged step.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.checkpoints import CheckpointError, latest_train_state, load_train_state, save_train_state
from core.errors import CpcbenchError
from harness.distributed import StepBatchSampler, all_gather_object, barrier, init_distributed
from harness.optim import effective_lr, lr_at
from harness.optim import param_groups as default_param_groups

log = logging.getLogger("cpcbench.train")
RESUME_KEYS = ("batch_size", "seed")  # changing these would change the data order: refused on resume


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


def unwrap(model: Any) -> Any:
    """The plain module under DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    from torch.nn.parallel import DistributedDataParallel

    while True:
        if isinstance(model, DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def export_state(model: Any) -> dict[str, Any]:
    """State dict of the unwrapped model, without ``module.`` / ``_orig_mod.`` prefixes."""
    out = {}
    for k, v in unwrap(model).state_dict().items():
        while k.startswith(("module.", "_orig_mod.")):
            k = k.split(".", 1)[1]
        out[k] = v
    return out


# --- RNG state ------------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [name, keys.astype(np.int64), pos, has_gauss, cached],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    def tuples(x: Any) -> Any:
        return tuple(tuples(v) for v in x) if isinstance(x, list | tuple) else x

    random.setstate(tuples(state["python"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys).astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Run a block (evaluation) without moving any training RNG."""
    saved = rng_state()
    try:
        yield
    finally:
        set_rng_state(saved)


# --- helpers --------------------------------------------------------------------------------------
def _to_device(batch: Any, device: Any) -> Any:
    import torch

    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _plain(x: Any) -> Any:
    """JSON-able copy of an eval result: tensors/numpy scalars become floats."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if hasattr(x, "item") and getattr(x, "ndim", 0) == 0:
        return x.item()
    if x is None or isinstance(x, bool | int | float | str):
        return x
    raise CpcbenchError(f"eval_fn returned a {type(x).__name__}; return numbers (or dicts/lists of numbers)")


def _progress(desc: str, total: int, done: int) -> Any:
    """A rich progress bar on stderr, or None when stderr is no terminal or CPCBENCH_NO_PROGRESS=1."""
    if os.environ.get("CPCBENCH_NO_PROGRESS") == "1" or not sys.stderr.isatty():
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]}  {task.fields[speed]}"), TimeRemainingColumn(),
                   console=Console(stderr=True))
    bar.start()
    bar.add_task(desc, total=total, completed=done, loss="-", speed="")
    return bar


def _nan_error(what: str, value: float, step: int, run_dir: Path) -> CpcbenchError:
    last = latest_train_state(run_dir)
    where = str(last) if last else f"none (set ckpt_every to keep one; run dir {run_dir})"
    return CpcbenchError(f"{what} became {value} at step {step}; last good checkpoint: {where}; lower the learning "
                         "rate or set gradient clipping, then continue from that checkpoint with --resume")


# --- the loop -------------------------------------------------------------------------------------
def train(model: Any, dataset: Any, loop: LoopConfig, optim: OptimConfig, run_dir: str | Path, *,
          resume: bool = False, config: dict[str, Any] | None = None, param_groups: list[dict] | None = None,
          collate_fn: Callable | None = None, desc: str = "train",
          eval_fn: Callable[[Any, int], dict] | None = None, eval_every: int = 0) -> TrainResult:
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
    """
    import torch
    from torch.utils.data import DataLoader

    from core.io import usable_cpus
    from harness.flops import count_flops
    from harness.runtime import autocast_dtype, get_device, seed_everything

    t_start = time.perf_counter()
    check_loop(loop)
    try:
        device = get_device(loop.device)
    except (RuntimeError, ValueError) as e:
        raise CpcbenchError(str(e)) from None
    dist = init_distributed(device.type)
    rank, world = dist.rank, dist.world_size
    if device.type == "cuda" and dist.distributed:
        device = torch.device("cuda", dist.local_rank)
    run_dir = Path(run_dir)
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
    amp = autocast_dtype(device)
    workers = min(loop.num_workers, usable_cpus())  # more processes than cores only slow the loop down
    if workers < loop.num_workers and rank == 0:
        log.info("%d DataLoader workers instead of %d: this process may use %d CPU cores", workers,
                 loop.num_workers, usable_cpus())
    n, batch = len(dataset), loop.batch_size
    per_epoch = StepBatchSampler(n, batch, loop.seed, 0, rank, world).batches_per_epoch(n, batch)

    raw = unwrap(model).to(device)
    groups = param_groups if param_groups is not None else default_param_groups(
        raw, optim.weight_decay, optim.layer_decay)
    for g in groups:
        g.setdefault("lr_scale", 1.0)
        g.setdefault("weight_decay", optim.weight_decay)
    base_lr = effective_lr(optim.base_lr, batch)
    opt = torch.optim.AdamW(groups, lr=base_lr, betas=optim.betas, weight_decay=optim.weight_decay)
    params = [p for g in opt.param_groups for p in g["params"]]

    step, history, flops = 0, [], 0.0
    window = {"loss": 0.0, "parts": {}, "part_counts": {}, "count": 0}
    ckpt_dir = latest_train_state(run_dir)
    if ckpt_dir is not None and not resume:
        raise CpcbenchError(f"{run_dir} already holds a checkpoint ({ckpt_dir.name}): pass --resume to continue "
                            "it, or choose a new output directory")
    if ckpt_dir is None and resume:
        raise CpcbenchError(f"{run_dir} holds no training checkpoint, so there is nothing to resume; start a new "
                            "run without --resume")
    if ckpt_dir is not None:
        step, history, window, flops = _restore(ckpt_dir, raw, opt, loop, optim, n, rank, world)
        if rank == 0:
            log.info("resuming %s from step %d", run_dir, step)
            _truncate_log(run_dir / "log.jsonl", step)
    else:
        seed_everything(loop.seed + rank)
        if rank == 0:
            (run_dir / "log.jsonl").unlink(missing_ok=True)

    if dist.distributed:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(raw, device_ids=[device.index] if device.type == "cuda" else None)
    else:
        net = model  # the caller's module, compiled or not (it shares parameters with `raw`)
    net.train()
    saved_step = step
    last_ckpt = ckpt_dir
    bar = _progress(desc, loop.steps, step) if rank == 0 else None
    t_window, steps_window = time.perf_counter(), 0
    t_loop, first_step = t_window, step

    def checkpoint() -> Path | None:
        rngs = all_gather_object(rng_state())
        if rank != 0:
            return None
        state = {"optimizer": opt.state_dict(), "rng": rngs, "history": history, "window": window,
                 "flops_per_step": flops, "world_size": world, "loop": asdict(loop), "optim": asdict(optim),
                 "sampler": {"epoch": step // per_epoch, "batch": step % per_epoch, "global_batch": batch,
                             "dataset_len": n, "seed": loop.seed}}
        return save_train_state(run_dir, step, export_state(raw), state, config)

    try:
        while step < loop.steps:
            epoch, first = divmod(step, per_epoch)
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)
            sampler = StepBatchSampler(n, batch, loop.seed, epoch, rank, world, start=first,
                                       stop=min(per_epoch, first + loop.steps - step))
            gen = torch.Generator().manual_seed(loop.seed * 1_000_003 + epoch)
            loader = DataLoader(dataset, batch_sampler=sampler, num_workers=workers, collate_fn=collate_fn,
                                pin_memory=device.type == "cuda", generator=gen)
            for items in loader:
                items = _to_device(items, device)
                if loop.count_flops and not flops:
                    t0 = time.perf_counter()
                    try:
                        flops = count_flops(raw, items, amp, device.type) * world
                    except (RuntimeError, TypeError, ValueError, NotImplementedError, AttributeError) as e:
                        log.warning("could not count FLOPs (%s: %s); GFLOP/s is not logged", type(e).__name__, e)
                        flops = -1.0  # counted once: do not retry every step
                    t_window += time.perf_counter() - t0  # not part of the step's throughput
                lr = lr_at(step, loop.steps, optim.warmup_steps, base_lr, optim.min_lr_ratio)
                for g in opt.param_groups:
                    g["lr"] = lr * g["lr_scale"]
                with torch.autocast(device.type, dtype=amp) if amp is not None else contextlib.nullcontext():
                    out = net(items)
                if not isinstance(out, dict) or "loss" not in out:
                    raise CpcbenchError(f"{type(raw).__name__}.forward must return a dict with 'loss'")
                loss = out["loss"]
                if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
                    raise CpcbenchError(f"{type(raw).__name__}.forward must return 'loss' as a scalar tensor, got "
                                        f"{getattr(loss, 'shape', type(loss).__name__)}; reduce it with .mean()")
                # Loss parts may differ between ranks and steps (a CPC batch without cross-pose pairs has no
                # loss_cross_pose): the loss is all-reduced, the parts are gathered by name and averaged over
                # the ranks (and logged steps) that report them.
                parts = {k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for k, v in out.items()
                         if k != "loss" and (isinstance(v, int | float) or (isinstance(v, torch.Tensor)
                                                                            and v.ndim == 0))}
                total = loss.detach().float().reshape(1).clone()
                if dist.distributed:
                    import torch.distributed as tdist

                    tdist.all_reduce(total)
                    total = total / world
                    gathered: dict[str, list[float]] = {}
                    for rank_parts in all_gather_object(parts):
                        for k, v in rank_parts.items():
                            gathered.setdefault(k, []).append(v)
                    parts = {k: sum(v) / len(v) for k, v in gathered.items()}
                vals = [float(total.item())]
                if not math.isfinite(vals[0]):
                    raise _nan_error("loss", vals[0], step + 1, run_dir)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                norm = float(torch.nn.utils.clip_grad_norm_(params, optim.clip_grad or math.inf))
                if not math.isfinite(norm):
                    raise _nan_error("gradient norm", norm, step + 1, run_dir)
                opt.step()
                step += 1
                steps_window += 1
                if hasattr(raw, "after_optimizer_step"):
                    raw.after_optimizer_step(step, loop.steps)
                window["loss"] += vals[0]
                window["grad_norm"] = window.get("grad_norm", 0.0) + norm
                window["count"] += 1
                for k, v in parts.items():
                    window["parts"][k] = window["parts"].get(k, 0.0) + v
                    window["part_counts"][k] = window["part_counts"].get(k, 0) + 1

                do_eval = eval_fn is not None and eval_every > 0 and (step % eval_every == 0 or step == loop.steps)
                do_log = step == loop.steps or do_eval or (loop.log_every > 0 and step % loop.log_every == 0)
                if do_log:
                    dt = max(time.perf_counter() - t_window, 1e-9)
                    c = max(window["count"], 1)
                    entry = {"step": step, "epoch": (step - 1) // per_epoch, "loss": window["loss"] / c,
                             "parts": {k: v / window["part_counts"][k] for k, v in window["parts"].items()},
                             "lr": lr,
                             "grad_norm": window.get("grad_norm", 0.0) / c,
                             "img_per_s": batch * steps_window / dt}
                    if flops > 0:  # not counted (count_flops=False, fine-tuning) or not countable: omitted
                        entry["gflops_per_s"] = flops * steps_window / dt / 1e9
                    if do_eval and rank == 0:
                        raw.eval()
                        with preserved_rng(), torch.no_grad(), (torch.autocast(device.type, dtype=amp)
                                                                if amp is not None else contextlib.nullcontext()):
                            result = eval_fn(raw, step)
                        if not isinstance(result, dict):
                            raise CpcbenchError(f"eval_fn must return a dict of numbers, got {type(result).__name__}")
                        entry["eval"] = _plain(result)
                        raw.train()
                    history.append(entry)
                    window = {"loss": 0.0, "parts": {}, "part_counts": {}, "count": 0}
                    t_window, steps_window = time.perf_counter(), 0
                    if rank == 0:
                        with open(run_dir / "log.jsonl", "a") as f:
                            f.write(json.dumps(entry) + "\n")
                        if bar is None:
                            eta = (loop.steps - step) * (time.perf_counter() - t_loop) / max(step - first_step, 1)
                            gf = f" {entry['gflops_per_s']:.1f} GFLOP/s" if "gflops_per_s" in entry else ""
                            log.info("%s step %d/%d loss %.4f lr %.2e %.1f img/s%s eta %s", desc, step,
                                     loop.steps, entry["loss"], lr, entry["img_per_s"], gf, _hms(eta))
                if bar is not None:
                    bar.update(bar.task_ids[0], completed=step, loss=f"{vals[0]:.4f}",
                               speed=f"{history[-1]['img_per_s']:.1f} img/s" if history else "")
                if loop.ckpt_every > 0 and step % loop.ckpt_every == 0 and step < loop.steps:
                    t0 = time.perf_counter()
                    last_ckpt = checkpoint() or last_ckpt
                    saved_step = step
                    t_window += time.perf_counter() - t0
        if step != saved_step or ckpt_dir is None:
            last_ckpt = checkpoint() or last_ckpt
        if dist.distributed:
            barrier()  # every rank returns once the final checkpoint is on disk
    finally:
        if bar is not None:
            bar.stop()
    final = next((h["loss"] for h in reversed(history) if "loss" in h), float("nan"))
    return TrainResult(steps=step, history=history, final_loss=final, wall_time_s=time.perf_counter() - t_start,
                       flops_per_step=max(flops, 0.0), run_dir=run_dir, checkpoint=last_ckpt if rank == 0 else None,
                       evals=[{"step": h["step"], **h["eval"]} for h in history if "eval" in h])


def _restore(ckpt_dir: Path, raw: Any, opt: Any, loop: LoopConfig, optim: OptimConfig, n: int, rank: int,
             world: int) -> tuple[int, list[dict[str, Any]], dict[str, Any], float]:
    """Load model, optimizer and RNG state from ``ckpt_dir``; (step, history, log window, flops per step)."""
    from harness.runtime import seed_everything

    step, model_state, state = load_train_state(ckpt_dir)
    for key in RESUME_KEYS:
        if state["loop"][key] != getattr(loop, key):
            raise CheckpointError(f"cannot resume {ckpt_dir}: it was trained with {key}={state['loop'][key]}, "
                                  f"now {key}={getattr(loop, key)}; use the same value or a new output directory")
    if state["sampler"]["dataset_len"] != n:
        raise CheckpointError(f"cannot resume {ckpt_dir}: the dataset had {state['sampler']['dataset_len']} "
                              f"items, now {n}; resume with the same data or start a new run")
    changed = [k for k, v in asdict(optim).items() if _plain_cfg(v) != _plain_cfg(state["optim"].get(k))]
    changed += ["steps"] if state["loop"]["steps"] != loop.steps else []
    if changed and rank == 0:
        log.warning("resuming %s with changed %s: the run will not match an uninterrupted one",
                    ckpt_dir, ", ".join(changed))
    fresh = [{k: g[k] for k in ("weight_decay", "betas", "eps", "lr_scale") if k in g} for g in opt.param_groups]
    try:
        raw.load_state_dict(model_state, strict=True)
        opt.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise CheckpointError(f"checkpoint {ckpt_dir} does not fit this model/optimizer ({e})") from None
    for g, hyper in zip(opt.param_groups, fresh, strict=True):
        g.update(hyper)  # the current config's hyperparameters win over the saved ones (moments are kept)
    if len(state["rng"]) == world:
        set_rng_state(state["rng"][rank])
    else:
        log.warning("resuming with %d processes instead of %d: RNG streams are reseeded", world, len(state["rng"]))
        seed_everything(loop.seed + rank + 1000 * step)
    return step, state["history"], state["window"], float(state["flops_per_step"])


def _plain_cfg(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint we resume from (the killed run got further)."""
    from core.io import atomic_write_text

    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step]
    atomic_write_text(path, "".join(line + "\n" for line in keep))
