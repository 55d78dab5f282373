"""Seeding/determinism, the usable CPU cores and device selection: one function each."""

from __future__ import annotations

import os
import random
from typing import Literal

DeviceName = Literal["auto", "cpu", "cuda"]


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python ``random``, numpy and torch (all devices); ``deterministic`` also asks torch for
    deterministic algorithms (errors on ops that have none) and disables cuDNN autotuning."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=False)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def get_device(name: str = "auto"):
    """``auto`` -> cuda if available else cpu; asking for cuda without a GPU is a clear error."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} asked for but no CUDA GPU is visible; use --device cpu or auto")
        return torch.device(name)
    raise ValueError(f"unknown device {name!r}; use auto, cpu or cuda[:N]")


def autocast_dtype(device) -> object | None:
    """bf16 autocast on a GPU, none (fp32) on the CPU: this CPU has no fast bf16 (~20x slower)."""
    import torch

    return torch.bfloat16 if getattr(device, "type", str(device)) == "cuda" else None
