"""Process groups from ``torchrun`` environment variables and a deterministic, resumable batch sampler.

``torchrun --nproc_per_node=K`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; ``init_distributed`` joins
the group (gloo on the CPU, NCCL on GPUs) once; ``placement`` also names the device a rank trains on. Without
those variables everything runs in one process.

Data order (``StepBatchSampler``): epoch ``e`` is the permutation ``default_rng([seed, e]).permutation(n)``,
cut into ``n // global_batch`` global batches (the remainder is dropped); global batch ``k`` is split into
contiguous per-rank slices. The batch of step ``s`` is therefore a pure function of ``(seed, s, global_batch,
n)``: resuming at step ``s`` starts there without touching the items before it, and the union over ranks of
a DDP step is exactly the batch one process would see.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from core.errors import CpcbenchError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def env_info() -> DistInfo:
    """Rank/world from the torchrun variables (defaults: one process)."""
    try:
        return DistInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                        int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError as e:
        raise CpcbenchError(f"malformed RANK/WORLD_SIZE/LOCAL_RANK environment ({e}); launch with torchrun") from None


def init_distributed(device_type: str = "cpu") -> DistInfo:
    """Join the process group when ``WORLD_SIZE > 1`` (idempotent). gloo on the CPU, NCCL on CUDA."""
    import torch
    import torch.distributed as dist

    info = env_info()
    if not info.distributed or (dist.is_available() and dist.is_initialized()):
        return info
    if not dist.is_available():
        raise CpcbenchError("WORLD_SIZE > 1 but this torch build has no torch.distributed; run one process")
    backend = "nccl" if device_type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend=backend)
    return info


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (a one-element list outside DDP)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def destroy() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        # All ranks leave together: a rank that tears gloo down while another still works (e.g. rank 0 writing
        # results) made the late rank abort at exit ("terminate called without an active exception").
        dist.barrier()
        dist.destroy_process_group()


class StepBatchSampler:
    """Per-rank index batches for one epoch, from batch ``start`` on (a ``batch_sampler`` for a DataLoader).

    Args:
        n: dataset length. global_batch: items per step over all ranks. seed, epoch: fix the permutation.
        rank, world: this process's slice. start: first batch of the epoch to yield (resume).
        stop: one past the last batch to yield (default: the end of the epoch).
    """

    def __init__(self, n: int, global_batch: int, seed: int, epoch: int, rank: int = 0, world: int = 1,
                 start: int = 0, stop: int | None = None) -> None:
        if global_batch % world:
            raise CpcbenchError(f"global batch {global_batch} is not divisible by {world} processes; "
                                f"use a batch size that is a multiple of {world}")
        if n < global_batch:
            raise CpcbenchError(f"the dataset has {n} items, fewer than one global batch of {global_batch}; "
                                "lower the batch size or use more data")
        self.n, self.global_batch, self.seed, self.epoch = n, global_batch, seed, epoch
        self.rank, self.world = rank, world
        self.per_rank = global_batch // world
        self.start = start
        self.stop = self.batches_per_epoch(n, global_batch) if stop is None else stop

    @staticmethod
    def batches_per_epoch(n: int, global_batch: int) -> int:
        return n // global_batch

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        import numpy as np

        perm = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        for k in range(self.start, self.stop):
            lo = k * self.global_batch + self.rank * self.per_rank
            yield perm[lo:lo + self.per_rank].tolist()


def placement(device_name: str) -> tuple[Any, DistInfo]:
    """The device this process trains on and its place in the process group (joined under torchrun)."""
    import torch

    from harness.runtime import get_device

    try:
        device = get_device(device_name)
    except (RuntimeError, ValueError) as e:
        raise CpcbenchError(str(e)) from None
    dist = init_distributed(device.type)
    if device.type == "cuda" and dist.distributed:
        device = torch.device("cuda", dist.local_rank)
    return device, dist
