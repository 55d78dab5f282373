"""What a training run keeps on disk: the checkpointer of the one loop, RNG states and exported weights.

A checkpoint (``core.checkpoints.save_train_state``) holds the model (unwrapped, no ``module.`` prefixes), the
optimizer moments, the step, the python/numpy/torch RNG states of every rank, the data position, the history
and the open log window. ``Checkpointer.open`` decides how a run starts: a fresh run is seeded with
``loop.seed + rank``; ``resume=True`` restores the latest checkpoint (resuming with a different batch size,
seed or data set is refused); a run directory that already holds a checkpoint is never overwritten.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.checkpoints import CheckpointError, latest_train_state, load_train_state, save_train_state
from core.errors import CpcbenchError

log = logging.getLogger("cpcbench.train")
RESUME_KEYS = ("batch_size", "seed")  # changing these would change the data order: refused on resume


# --- weights and RNG ------------------------------------------------------------------------------
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


def rng_state() -> dict[str, Any]:
    """The python, numpy, torch (and initialised CUDA) RNG states of this process."""
    import numpy as np
    import torch

    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [name, keys.astype(np.int64), pos, has_gauss, cached],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of ``rng_state`` (also for a state read back from JSON, where tuples became lists)."""
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


def nonfinite_error(what: str, value: float, step: int, run_dir: Path) -> CpcbenchError:
    """The error that stops a run whose loss or gradient norm is no longer finite, naming the last good checkpoint."""
    last = latest_train_state(run_dir)
    where = str(last) if last else f"none (set ckpt_every to keep one; run dir {run_dir})"
    return CpcbenchError(f"{what} became {value} at step {step}; last good checkpoint: {where}; lower the learning "
                         "rate or set gradient clipping, then continue from that checkpoint with --resume")


# --- the checkpointer -----------------------------------------------------------------------------
@dataclass
class Start:
    """Where a run starts: step 0 and nothing logged, or what a checkpoint held."""
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    window: dict[str, Any] | None = None  # the log window open at the checkpoint (steps not yet logged)
    flops_per_step: float = 0.0


class Checkpointer:
    """Opens a run (fresh or resumed) and saves its state every ``loop.ckpt_every`` steps and at the end.

    ``loop`` and ``optim`` are the run's ``LoopConfig`` / ``OptimConfig``; ``n`` items, ``per_epoch`` steps per
    epoch; ``config`` is stored beside the weights. ``save`` is collective (every rank's RNG state is gathered)
    and writes on rank 0 only.
    """

    def __init__(self, run_dir: Path, loop: Any, optim: Any, config: dict[str, Any] | None, n: int,
                 per_epoch: int, rank: int, world: int) -> None:
        self.run_dir, self.loop, self.optim, self.config = run_dir, loop, optim, config
        self.n, self.per_epoch, self.rank, self.world = n, per_epoch, rank, world
        self.resumed_from: Path | None = None
        self.last: Path | None = None     # the last step directory written (or resumed from)
        self.saved_step = 0

    def open(self, raw: Any, opt: Any, resume: bool) -> Start:
        """Restore ``raw``/``opt`` and the RNGs from the latest checkpoint (``resume``), or seed a fresh run."""
        from harness.runtime import seed_everything

        ckpt_dir = latest_train_state(self.run_dir)
        if ckpt_dir is not None and not resume:
            raise CpcbenchError(f"{self.run_dir} already holds a checkpoint ({ckpt_dir.name}): pass --resume to "
                                "continue it, or choose a new output directory")
        if ckpt_dir is None and resume:
            raise CpcbenchError(f"{self.run_dir} holds no training checkpoint, so there is nothing to resume; "
                                "start a new run without --resume")
        self.resumed_from = self.last = ckpt_dir
        log_path = self.run_dir / "log.jsonl"
        if ckpt_dir is None:
            seed_everything(self.loop.seed + self.rank)
            if self.rank == 0:
                log_path.unlink(missing_ok=True)
            return Start()
        start = self._restore(ckpt_dir, raw, opt)
        self.saved_step = start.step
        if self.rank == 0:
            log.info("resuming %s from step %d", self.run_dir, start.step)
            _truncate_log(log_path, start.step)
        return start

    def due(self, step: int) -> bool:
        """A periodic checkpoint after ``step`` (the last step's is written by ``finish``)."""
        every = self.loop.ckpt_every
        return every > 0 and step % every == 0 and step < self.loop.steps

    def save(self, step: int, raw: Any, opt: Any, history: list[dict[str, Any]], window: dict[str, Any],
             flops_per_step: float) -> None:
        """Write step ``step`` (collective; rank 0 writes)."""
        self._write(step, raw, opt, history, window, flops_per_step)
        self.saved_step = step

    def finish(self, step: int, raw: Any, opt: Any, history: list[dict[str, Any]], window: dict[str, Any],
               flops_per_step: float) -> None:
        """Write the final state unless it is on disk already (a resumed run that had nothing left to do)."""
        if step != self.saved_step or self.resumed_from is None:
            self._write(step, raw, opt, history, window, flops_per_step)

    def _write(self, step: int, raw: Any, opt: Any, history: list[dict[str, Any]], window: dict[str, Any],
               flops_per_step: float) -> None:
        from harness.distributed import all_gather_object

        rngs = all_gather_object(rng_state())
        if self.rank != 0:
            return
        loop, batch = self.loop, self.loop.batch_size
        state = {"optimizer": opt.state_dict(), "rng": rngs, "history": history, "window": window,
                 "flops_per_step": flops_per_step, "world_size": self.world, "loop": asdict(loop),
                 "optim": asdict(self.optim),
                 "sampler": {"epoch": step // self.per_epoch, "batch": step % self.per_epoch, "global_batch": batch,
                             "dataset_len": self.n, "seed": loop.seed}}
        self.last = save_train_state(self.run_dir, step, export_state(raw), state, self.config)

    def _restore(self, ckpt_dir: Path, raw: Any, opt: Any) -> Start:
        from harness.runtime import seed_everything

        loop, rank, world = self.loop, self.rank, self.world
        step, model_state, state = load_train_state(ckpt_dir)
        for key in RESUME_KEYS:
            if state["loop"][key] != getattr(loop, key):
                raise CheckpointError(f"cannot resume {ckpt_dir}: it was trained with {key}={state['loop'][key]}, "
                                      f"now {key}={getattr(loop, key)}; use the same value or a new output directory")
        if state["sampler"]["dataset_len"] != self.n:
            raise CheckpointError(f"cannot resume {ckpt_dir}: the dataset had {state['sampler']['dataset_len']} "
                                  f"items, now {self.n}; resume with the same data or start a new run")
        changed = [k for k, v in asdict(self.optim).items() if _listed(v) != _listed(state["optim"].get(k))]
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
            log.warning("resuming with %d processes instead of %d: RNG streams are reseeded", world,
                        len(state["rng"]))
            seed_everything(loop.seed + rank + 1000 * step)
        return Start(step, state["history"], state["window"], float(state["flops_per_step"]))


def _listed(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint we resume from (the killed run got further)."""
    from core.io import atomic_write_text

    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step]
    atomic_write_text(path, "".join(line + "\n" for line in keep))
