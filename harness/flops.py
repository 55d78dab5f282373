"""FLOPs of one training step (forward + backward), counted once per run with torch's FlopCounterMode.

FlopCounterMode knows the CUDA attention kernels but counts 0 for the CPU one
(``aten._scaled_dot_product_flash_attention_for_cpu`` and its backward), which is what
``F.scaled_dot_product_attention`` runs on the CPU. We map those two ops to torch's own SDPA formulas
(``4 * B * H * Nq * Nk * D`` forward, 2.5x that backward), which counts exactly what the CUDA path counts,
instead of adding an analytic estimate afterwards. Convention: a multiply-add is 2 FLOPs; elementwise ops,
softmax and norms are not counted (as in torch and in MFU reports).
"""

from __future__ import annotations

import copy
import logging
import random
import time
from typing import Any

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
