"""Array-library plumbing shared by the metrics: numpy or torch in, the same library out.

Shapes follow ``tasks.metrics``: points [B, J, D], masks [B, J]. Every check raises ``CpcbenchError`` with one line.
Reductions over tiny trailing axes use einsum / GEMM: numpy's strided reductions are several times slower there.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.errors import CpcbenchError

Array = Any  # numpy.ndarray | torch.Tensor


def is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def array_lib(x: Any) -> Any:
    if is_torch(x):
        import torch

        return torch
    return np


def as_array(x: Any, like: Any = None) -> Any:
    """``x`` as an array of the library of ``like`` (or of ``x`` itself); lists become numpy arrays."""
    if like is not None and is_torch(like):
        import torch

        return x if is_torch(x) else torch.as_tensor(np.asarray(x), device=like.device)
    if is_torch(x):
        return x
    return np.asarray(x)


def to_float(x: Any, min_bits: int = 32) -> Any:
    """Floating copy with at least ``min_bits`` precision (float64 for integers)."""
    if is_torch(x):
        import torch

        if not x.is_floating_point():
            return x.to(torch.float64)
        if torch.finfo(x.dtype).bits < min_bits:
            return x.to(torch.float32 if min_bits <= 32 else torch.float64)
        return x
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating) or np.finfo(x.dtype).bits < min_bits:
        return x.astype(np.float64 if min_bits > 32 or not np.issubdtype(x.dtype, np.floating) else np.float32)
    return x


def like_input(values: Any, ref: Any) -> Any:
    """Cast float results back to the input's float dtype (float32 in -> float32 out)."""
    if is_torch(ref):
        dt = ref.dtype if ref.is_floating_point() else values.dtype
        return values.to(dt)
    ref = np.asarray(ref)
    return values.astype(ref.dtype if np.issubdtype(ref.dtype, np.floating) else np.float64, copy=False)


def joint_mask(valid: Any, shape: tuple[int, ...], like: Any, name: str = "valid") -> Any | None:
    """valid: [B, J] bool/0-1 or None -> float mask of ``like``'s library and dtype."""
    if valid is None:
        return None
    v = as_array(valid, like)
    if tuple(v.shape) != tuple(shape):
        raise CpcbenchError(f"{name} mask has shape {tuple(v.shape)}, expected {tuple(shape)} (one flag per joint)")
    if is_torch(like):
        return (v != 0).to(like.dtype)
    return (v != 0).astype(like.dtype)


def check_pair(pred: Any, gt: Any, what: str = "pred/gt", dims: tuple[int, ...] = (2, 3)) -> None:
    if tuple(pred.shape) != tuple(gt.shape):
        raise CpcbenchError(f"{what}: prediction shape {tuple(pred.shape)} does not match ground truth "
                            f"{tuple(gt.shape)}")
    if pred.ndim != 3 or pred.shape[-1] not in dims:
        raise CpcbenchError(f"{what}: expected points [B, J, {'|'.join(map(str, dims))}], got {tuple(pred.shape)}")


def check_finite(x: Any, name: str, valid: Any = None) -> None:
    """Raise if ``x`` [B, J, D] has NaN/inf in any entry not masked out by ``valid`` [B, J]."""
    xp = array_lib(x)
    if bool(xp.isfinite(x).all()):
        return
    bad = ~xp.isfinite(x)
    if bad.ndim == 3:
        bad = bad.any(-1)
    if valid is not None:
        bad = bad & (valid != 0)
    if bool(bad.any()):
        idx = xp.nonzero(bad)[0] if not is_torch(x) else bad.nonzero()[:, 0]
        first = int(idx[0])
        raise CpcbenchError(f"{name} contains NaN or inf values (first in sample {first}); "
                            f"mask those joints with `valid` or drop the samples")


def zero_masked(x: Any, w: Any | None) -> Any:
    """Zero out masked entries so NaN in masked joints cannot leak into sums."""
    if w is None:
        return x
    xp = array_lib(x)
    return xp.where(w[..., None] > 0, x, xp.zeros_like(x))


def require_valid(w: Any | None, what: str) -> None:
    """Raise if some sample has no valid joint (w: [B, J] float mask or None)."""
    if w is None:
        return
    n = w.sum(-1)
    if bool((n <= 0).any()):
        first = int(np.flatnonzero(np.asarray((n <= 0).cpu() if is_torch(n) else n <= 0))[0])
        raise CpcbenchError(f"{what}: sample {first} has no valid joints; drop such samples (frame filter) first")


def masked_mean(err: Any, w: Any | None, what: str) -> Any:
    """err: [B, J] -> [B]: mean over joints with w > 0."""
    if err.shape[-1] == 0:
        raise CpcbenchError(f"{what}: there are no joints/points to score (shape {tuple(err.shape)})")
    if w is None:
        return err.mean(-1)
    require_valid(w, what)
    return (err * w).sum(-1) / w.sum(-1)


def norm_last(x: Any) -> Any:
    """Euclidean norm over the last axis of [B, J, D] (einsum: numpy reduces tiny last axes slowly)."""
    if x.ndim == 3:
        return array_lib(x).einsum("bjk,bjk->bj", x, x) ** 0.5
    return ((x * x).sum(-1)) ** 0.5


def mean_points(x: Any) -> Any:
    """[B, J, D] -> [B, D]: mean over points.

    numpy: einsum, single-threaded and ~10x faster than numpy's strided ``mean(1)``; a GEMM would be as fast on an
    idle machine but multi-threaded OpenBLAS collapses (50x slower) on a loaded one.
    """
    if is_torch(x):
        return x.mean(1)
    return np.einsum("bjk->bk", x) / x.shape[1]


def eye_like(x: Any, d: int, batch: int) -> Any:
    if is_torch(x):
        import torch

        return torch.eye(d, dtype=x.dtype, device=x.device).expand(batch, d, d).clone()
    return np.broadcast_to(np.eye(d, dtype=x.dtype), (batch, d, d)).copy()
