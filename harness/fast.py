"""Compiled transformer blocks: the one speed lever of the loop that is a choice (issue 14).

``torch.compile`` (TorchInductor's C++/OpenMP code generation on the CPU, Triton on a GPU) fuses what eager
PyTorch runs as separate kernels around the matrix products: layer norms, GELU, the RoPE rotation, residual adds,
bias adds and the copies of the attention reshapes. We compile each transformer block (``pretraining.layers.Block``
and ``DecoderBlock``, timm's ``Block``) in place, not the whole model: the masking, gathers and loss bookkeeping
around them stay eager (they hold data-dependent shapes that would break a whole-model graph), and identical blocks
share one compiled graph per input shape (dynamo lifts a module's parameters to graph inputs), so compiling a
12-block encoder costs about as much as compiling one block.

Costs and guarantees:
- Compiling takes tens of seconds on 2 cores (``make bench`` reports it apart from the step time); it pays on
  long runs only, so it is opt-in: ``cpcbench pretrain --compile``, ``cpcbench eval --compile``,
  ``LoopConfig(compile=True)``. ``warm_compiled`` compiles on a deep copy of the model before the first step, so
  the run's logged throughput never contains compile time, and the copy's backward leaves the real model and the
  RNG streams untouched.
- Shapes are static (``dynamic=False``): a run whose batches keep their shape compiles once per block type and
  token count; nothing recompiles per batch.
- Results equal eager ones to float tolerance (tests/test_fast.py: 20 steps of every method, losses within 1e-5).
- No C++ compiler, or a block inductor cannot compile: a warning and the eager path (``compiler_problem``).
"""

from __future__ import annotations

import copy
import logging
import shutil
import time
from typing import Any

log = logging.getLogger("cpcbench.train")


def block_types() -> tuple[type, ...]:
    """The module classes compiled by ``compile_blocks``."""
    from timm.models.vision_transformer import Block as TimmBlock

    from pretraining.layers import Block, DecoderBlock

    return (Block, DecoderBlock, TimmBlock)


def compiler_problem(device_type: str = "cpu") -> str | None:
    """Why ``torch.compile`` cannot run here (None when it can): inductor's CPU backend needs a C++ compiler."""
    import os

    try:
        import torch._inductor  # noqa: F401
    except ImportError as e:  # pragma: no cover - a torch without inductor
        return f"torch has no inductor backend ({e})"
    if device_type == "cpu":
        cxx = os.environ.get("CXX", "g++")
        if shutil.which(cxx) is None and shutil.which("c++") is None:
            return f"no C++ compiler ({cxx!r} not on PATH); install g++ (Debian: apt install g++)"
    return None


def compile_blocks(model: Any) -> int:
    """Compile every transformer block of ``model`` in place (``nn.Module.compile``); returns how many."""
    import torch

    torch._dynamo.config.suppress_errors = True  # a block inductor cannot compile runs eagerly, with a warning
    kinds = block_types()
    n = 0
    for m in model.modules():
        if isinstance(m, kinds) and getattr(m, "_compiled_call_impl", None) is None:
            m.compile(dynamic=False)
            n += 1
    return n


def uncompile(model: Any) -> Any:
    """``model`` with every in-place compiled module back to eager (for deep copies: a copy's compiled call would
    still run the original's blocks)."""
    for m in model.modules():
        if getattr(m, "_compiled_call_impl", None) is not None:
            m._compiled_call_impl = None
    return model


def warm_compiled(model: Any, batch: Any, amp: Any, device_type: str) -> tuple[int, float]:
    """Compile ``model``'s blocks and trace them on ``batch`` (forward + backward of a deep copy, every RNG
    preserved), so the first real step runs compiled code. -> (blocks compiled, seconds spent). Falls back to
    eager (0 blocks) with a warning when compiling is impossible here."""
    import contextlib

    import torch

    from harness.train_state import preserved_rng

    problem = compiler_problem(device_type)
    if problem:
        log.warning("--compile: %s; training eagerly", problem)
        return 0, 0.0
    t0 = time.perf_counter()
    clone = uncompile(copy.deepcopy(model))
    n = compile_blocks(model)
    compile_blocks(clone)
    with preserved_rng():
        clone.train()
        ctx = torch.autocast(device_type, dtype=amp) if amp is not None else contextlib.nullcontext()
        with ctx:
            loss = clone(batch)["loss"]
        loss.backward()
    del clone
    seconds = time.perf_counter() - t0
    log.info("compiled %d transformer blocks in %.1f s (before the first step; not in the step times)", n, seconds)
    return n, seconds
