"""Array plumbing shared by the metrics (numpy): dtype handling, masks, input checks, fast small reductions.

Shapes follow ``tasks.metrics``: points [B, J, D], masks [B, J]. Every check raises ``CpcbenchError`` with one line.
Reductions over tiny trailing axes use einsum: numpy's strided reductions are several times slower there.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.errors import CpcbenchError


def to_float(x: Any, min_bits: int = 32) -> np.ndarray:
    """``x`` as a floating array with at least ``min_bits`` precision (float64 for integers)."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating) or np.finfo(x.dtype).bits < min_bits:
        return x.astype(np.float64 if min_bits > 32 or not np.issubdtype(x.dtype, np.floating) else np.float32)
    return x


def like_input(values: np.ndarray, ref: Any) -> np.ndarray:
    """Cast float results back to the input's float dtype (float32 in -> float32 out)."""
    ref = np.asarray(ref)
    return values.astype(ref.dtype if np.issubdtype(ref.dtype, np.floating) else np.float64, copy=False)


def joint_mask(valid: Any, shape: tuple[int, ...], like: np.ndarray, name: str = "valid") -> np.ndarray | None:
    """valid: [B, J] bool/0-1 or None -> float mask of ``like``'s dtype."""
    if valid is None:
        return None
    v = np.asarray(valid)
    if tuple(v.shape) != tuple(shape):
        raise CpcbenchError(f"{name} mask has shape {tuple(v.shape)}, expected {tuple(shape)} (one flag per joint)")
    return (v != 0).astype(like.dtype)


def check_pair(pred: Any, gt: Any, what: str = "pred/gt", dims: tuple[int, ...] = (2, 3)) -> None:
    if tuple(pred.shape) != tuple(gt.shape):
        raise CpcbenchError(f"{what}: prediction shape {tuple(pred.shape)} does not match ground truth "
                            f"{tuple(gt.shape)}")
    if pred.ndim != 3 or pred.shape[-1] not in dims:
        raise CpcbenchError(f"{what}: expected points [B, J, {'|'.join(map(str, dims))}], got {tuple(pred.shape)}")


def check_finite(x: Any, name: str, valid: Any = None) -> None:
    """Raise if ``x`` [B, J, D] has NaN/inf in any entry not masked out by ``valid`` [B, J]."""
    x = np.asarray(x)
    if np.isfinite(x).all():
        return
    bad = ~np.isfinite(x)
    if bad.ndim == 3:
        bad = bad.any(-1)
    if valid is not None:
        bad = bad & (valid != 0)
    if bad.any():
        first = int(np.nonzero(bad)[0][0])
        raise CpcbenchError(f"{name} contains NaN or inf values (first in sample {first}); "
                            f"mask those joints with `valid` or drop the samples")


def zero_masked(x: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """Zero out masked entries so NaN in masked joints cannot leak into sums."""
    if w is None:
        return x
    return np.where(w[..., None] > 0, x, np.zeros_like(x))


def require_valid(w: np.ndarray | None, what: str) -> None:
    """Raise if some sample has no valid joint (w: [B, J] float mask or None)."""
    if w is None:
        return
    empty = w.sum(-1) <= 0
    if empty.any():
        raise CpcbenchError(f"{what}: sample {int(np.flatnonzero(empty)[0])} has no valid joints; drop such samples "
                            "(frame filter) first")


def masked_mean(err: np.ndarray, w: np.ndarray | None, what: str) -> np.ndarray:
    """err: [B, J] -> [B]: mean over joints with w > 0."""
    if err.shape[-1] == 0:
        raise CpcbenchError(f"{what}: there are no joints/points to score (shape {tuple(err.shape)})")
    if w is None:
        return err.mean(-1)
    require_valid(w, what)
    return (err * w).sum(-1) / w.sum(-1)


def norm_last(x: np.ndarray) -> np.ndarray:
    """Euclidean norm over the last axis of [B, J, D] (einsum: numpy reduces tiny last axes slowly)."""
    if x.ndim == 3:
        return np.einsum("bjk,bjk->bj", x, x) ** 0.5
    return ((x * x).sum(-1)) ** 0.5


def mean_points(x: np.ndarray) -> np.ndarray:
    """[B, J, D] -> [B, D]: mean over points.

    einsum, single-threaded and ~10x faster than numpy's strided ``mean(1)``; a GEMM would be as fast on an
    idle machine but multi-threaded OpenBLAS collapses (50x slower) on a loaded one.
    """
    return np.einsum("bjk->bk", x) / x.shape[1]
