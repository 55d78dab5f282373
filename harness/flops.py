"""FLOPs of one training step (forward + backward), counted once per run with torch's FlopCounterMode.

FlopCounterMode knows the CUDA attention kernels but counts 0 for the CPU one
(``aten._scaled_dot_product_flash_attention_for_cpu`` and its backward), which is what
``F.scaled_dot_product_attention`` runs on the CPU. We map those two ops to torch's own SDPA formulas
(``4 * B * H * Nq * Nk * D`` forward, 2.5x that backward), which counts exactly what the CUDA path counts,
instead of adding an analytic estimate afterwards. Convention: a multiply-add is 2 FLOPs; elementwise ops,
softmax and norms are not counted (as in torch and in MFU reports).

A FLOP budget (``cpcbench pretrain --flops 2e14``, ``parse_flops``) sets a run's steps to
``ceil(budget / flops_per_step)`` (``steps_for_budget``), with ``flops_per_step`` counted on the run's first
global batch before training starts (``first_batch_flops``), so that every method gets the same compute.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import re
import time
from typing import Any

from core.errors import CpcbenchError

log = logging.getLogger("cpcbench.train")


def _sdpa_forward(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_backward(grad_out_shape: Any, query_shape: Any, key_shape: Any, value_shape: Any, *args: Any,
                   **kwargs: Any) -> int:
    from torch.utils.flop_counter import sdpa_backward_flop_count

    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def _cpu_sdpa_mapping() -> dict[Any, Any]:
    """FlopCounterMode ``custom_mapping`` for the CPU attention kernels (argument shapes as the CUDA ones)."""
    import torch

    aten = torch.ops.aten
    mapping: dict[Any, Any] = {}
    for name, fn in (("_scaled_dot_product_flash_attention_for_cpu", _sdpa_forward),
                     ("_scaled_dot_product_flash_attention_for_cpu_backward", _sdpa_backward)):
        if hasattr(aten, name):
            mapping[getattr(aten, name)] = fn
    return mapping


def count_flops(model: Any, batch: Any, autocast_dtype: Any = None, device_type: str = "cpu") -> float:
    """FLOPs of ``model(batch)["loss"].backward()`` on a copy of ``model``, with every RNG left as it was.

    ``batch`` is what the loop feeds the model (already on the device). The copy keeps the real model's
    buffers and counters (EMA teachers, DINO centres) untouched, and the saved/restored python, numpy and
    torch RNG states keep a run that counts FLOPs bit-identical to one that does not.
    """
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    py_state, np_state = random.getstate(), np.random.get_state()
    devices = [torch.cuda.current_device()] if device_type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            from harness.fast import uncompile

            clone = uncompile(copy.deepcopy(model))  # a copy's compiled blocks would run the original's
            clone.train()
            counter = FlopCounterMode(display=False, custom_mapping=_cpu_sdpa_mapping())
            with counter:
                if autocast_dtype is not None:
                    with torch.autocast(device_type=device_type, dtype=autocast_dtype):
                        loss = clone(batch)["loss"]
                else:
                    loss = clone(batch)["loss"]
                loss.backward()
            del clone
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return float(counter.get_total_flops())


class FlopMeter:
    """FLOPs of one global batch, counted once on the first batch of a run (``count_flops``) and kept after.

    ``per_step`` is 0 while not counted (or never: ``enabled=False``) and -1 when the model could not be
    counted (not retried); a resumed run passes the count its checkpoint holds.
    """

    def __init__(self, enabled: bool, per_step: float = 0.0) -> None:
        self.enabled, self.per_step = enabled, per_step

    def measure(self, model: Any, batch: Any, autocast_dtype: Any, device_type: str, world: int) -> float:
        """Count on this batch if still needed; the seconds spent (to leave out of the step's throughput)."""
        if not self.enabled or self.per_step:
            return 0.0
        t0 = time.perf_counter()
        try:
            self.per_step = count_flops(model, batch, autocast_dtype, device_type) * world
        except (RuntimeError, TypeError, ValueError, NotImplementedError, AttributeError) as e:
            log.warning("could not count FLOPs (%s: %s); GFLOP/s is not logged", type(e).__name__, e)
            self.per_step = -1.0  # counted once: do not retry every step
        return time.perf_counter() - t0


_UNITS = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "g": 1e9, "T": 1e12, "t": 1e12, "P": 1e15, "p": 1e15,
          "E": 1e18}
_FLOPS = re.compile(r"\s*(\d*\.?\d+(?:[eE][+-]?\d+)?)\s*([kKMGgTtPpE]?)(?:FLOPs?|FLOPS|flops?)?\s*")


def parse_flops(text: str | float, flag: str = "--flops") -> float:
    """A positive FLOP count: ``2e14``, ``"2e14"``, ``"200T"``, ``"0.2P"``, ``"200 TFLOP"`` -> 2e14 (units k M G T P
    E); anything else is a one-line ``CpcbenchError`` naming ``flag``."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        value = float(text)
    else:
        m = _FLOPS.fullmatch(str(text))
        if m is None:
            raise CpcbenchError(f"{flag}: {text!r} is not a FLOP count; give e.g. 2e14, 200T or 0.2P")
        value = float(m.group(1)) * _UNITS[m.group(2)]
    if not (math.isfinite(value) and value > 0):
        raise CpcbenchError(f"{flag} must be a positive, finite number of FLOPs, got {text!r}")
    return value


def steps_for_budget(budget: float, per_step: float) -> int:
    """The steps a budget of ``budget`` FLOPs buys at ``per_step`` FLOPs a step: ``ceil(budget / per_step)``, at
    least 1, so that ``steps * per_step`` lies in ``[budget, budget + per_step)``."""
    if not per_step > 0:
        raise CpcbenchError(f"a FLOP budget needs the FLOPs of one step, got {per_step}")
    return max(1, math.ceil(budget / per_step))


def first_batch_flops(model: Any, dataset: Any, loop: Any, collate_fn: Any, device: Any, rank: int,
                      world: int) -> float:
    """FLOPs of the run's first global batch, counted before training (``count_flops`` of this rank's batch of
    step 0 times ``world``, as ``FlopMeter`` counts), with every RNG as it was. ``loop`` is the run's
    ``LoopConfig``; ``model`` is moved to ``device`` (where the loop trains it anyway)."""
    from dataclasses import replace

    from harness.distributed import StepBatchSampler
    from harness.runtime import autocast_dtype
    from harness.train_state import preserved_rng
    from harness.train_step import batches

    n = len(dataset)
    per_epoch = StepBatchSampler(n, loop.batch_size, loop.seed, 0, rank, world).batches_per_epoch(n, loop.batch_size)
    with preserved_rng():
        first = batches(dataset, replace(loop, steps=1), 0, per_epoch, 0, collate_fn, device, rank, world)
        items = next(first)
        first.close()
        try:
            return count_flops(model.to(device), items, autocast_dtype(device), device.type) * world
        except (RuntimeError, TypeError, ValueError, NotImplementedError, AttributeError) as e:
            raise CpcbenchError(f"cannot count the FLOPs of one step ({type(e).__name__}: {e}); a FLOP budget "
                                "needs them: set --steps instead") from None


def budget_schedule(cfg: Any, model: Any, train_ds: Any, collate: Any, run_dir: Any, resume: bool,
                    dist: Any) -> tuple[Any, float]:
    """(the ``PretrainConfig`` ``cfg`` with ``loop.steps = ceil(flops_budget / flops_per_step)``, that
    ``flops_per_step``): the FLOPs of one global batch counted on the run's first batch (every rank takes rank 0's
    count), or on resume the count its checkpoint holds, never a new one: a resumed run reaches the steps and
    schedule of the run it continues."""
    from core.checkpoints import latest_train_state, train_state_info
    from core.config import with_overrides
    from harness.distributed import all_gather_object, placement

    ckpt = latest_train_state(run_dir) if resume else None
    per_step = float(train_state_info(ckpt).get("flops_per_step") or 0.0) if ckpt is not None else 0.0
    source = "the checkpoint's count"
    if per_step <= 0:
        device, _ = placement(cfg.loop.device)
        counted = first_batch_flops(model, train_ds, cfg.loop, collate, device, dist.rank, dist.world_size)
        per_step, source = float(all_gather_object(counted)[0]), "counted on the first batch"
    steps = steps_for_budget(cfg.flops_budget, per_step)
    if dist.is_main:
        log.info("FLOP budget %.4g: %.4g FLOPs per step (%s) -> %d steps, %.4g FLOPs", cfg.flops_budget, per_step,
                 source, steps, steps * per_step)
    return with_overrides(cfg, {"loop.steps": steps}), per_step
