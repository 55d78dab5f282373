"""Pose, mesh, dense and classification metrics with the field's reference conventions, batched.

Every function takes numpy arrays or torch tensors and returns **per-sample** values ``[B]`` in the same array
library (torch results stay on the input's device). Aggregation over samples (mean, std over seeds, stderr)
happens in one place, ``harness.results.summarize``. Lengths keep the input's units: convert metres to
millimetres before (``Protocol.prepare``) or after.

Conventions (``shared/reference/protocols-and-formats.md`` section A, with the file each was read from):

- Procrustes (PA-*), prediction aligned onto GT by a similarity transform (s, R, t), ``aligned = s * pred @ R.T + t``.
  Body family (nkolot/SPIN ``utils/pose_utils.py::compute_similarity_transform``, 4D-Humans, mmhuman3d, EMDB,
  aymenmir1/3dpw-eval): Kabsch with the det fix, no reflections (``allow_reflection=False``). Hand family
  (lmb-freiburg/freihand ``eval.py::align_w_scale``, shreyashampali/ho3d ``eval.py``): ``orthogonal_procrustes``
  without a det constraint, reflections allowed (``allow_reflection=True``). Both use the least-squares scale
  ``trace(R M) / |pred - mean|^2``. A prediction whose points all coincide (e.g. all zeros) aligns to the GT mean
  (s = 0, R = I), as the 3DPW challenge script special-cases it. With a ``valid`` mask the transform is estimated
  on the valid joints only.
- MPJPE-style errors are the mean over a sample's (valid) joints of the Euclidean distance ("per-sample" averaging
  of SPIN / 4D-Humans / EMDB / 3dpw-eval); the mean of those over samples is the reported number.
- PCK counts ``d <= t`` when ``inclusive`` (FreiHAND ``utils/eval_util.py``, 3DPW challenge) and ``d < t``
  otherwise (MPI-INF-3DHP ``mpii_compute_3d_pck.m``, mmhuman3d, mmpose).
- AUC: FreiHAND ``EvalUtil.get_measures(0, 0.05, 100)`` — thresholds ``linspace(lo, hi, steps)``, PCK curve
  integrated with the trapezoidal rule and divided by ``hi - lo`` (``integrate="trapz"``); the MPI-INF-3DHP MATLAB
  code averages the PCK curve over ``0:5:150`` (``integrate="mean"``). Per sample here; the mean over samples
  equals the per-keypoint-then-mean value of the reference when every joint is valid (integration is linear).
- F-score (FreiHAND ``eval.py::calculate_fscore``): nearest-neighbour distances GT->pred and pred->GT, precision
  and recall are the fractions strictly below the threshold, ``F = 2PR / (P + R)`` (0 when P + R = 0).
- mIoU: ``miou`` is per sample (mean over classes present in that sample's prediction or GT);
  ``intersection_union`` + ``miou_from_counts`` give the dataset-level mIoU of segmentation papers (sum
  intersections and unions over the data set per class, then mean over classes with a non-empty union).

Bad input raises ``CpcbenchError`` with one clear line: mismatched shapes, NaN/inf values (in valid entries), a
sample without any valid joint. An empty batch gives an empty result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from harness.errors import CpcbenchError

Array = Any  # numpy.ndarray | torch.Tensor

__all__ = [
    "accuracy", "apply_transform", "auc", "confusion_matrix", "f_score", "f_scores", "intersection_union",
    "miou", "miou_from_counts", "mpjpe", "nn_distances", "pa_mpjpe", "pa_pve", "pck", "pck_curve",
    "procrustes_align", "pve", "scale_translation_align", "similarity_transform",
]


# ----------------------------------------------------------------------------------------------------------------
# array-library helpers (numpy or torch, decided by the input)
# ----------------------------------------------------------------------------------------------------------------


def _is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def _xp(x: Any) -> Any:
    if _is_torch(x):
        import torch

        return torch
    return np


def _asarray(x: Any, like: Any = None) -> Any:
    """``x`` as an array of the library of ``like`` (or of ``x`` itself); lists become numpy arrays."""
    if like is not None and _is_torch(like):
        import torch

        return x if _is_torch(x) else torch.as_tensor(np.asarray(x), device=like.device)
    if _is_torch(x):
        return x
    return np.asarray(x)


def _float(x: Any, min_bits: int = 32) -> Any:
    """Floating copy with at least ``min_bits`` precision (float64 for integers)."""
    if _is_torch(x):
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


def _out_dtype_like(values: Any, ref: Any) -> Any:
    """Cast float results back to the input's float dtype (float32 in -> float32 out)."""
    if _is_torch(ref):
        dt = ref.dtype if ref.is_floating_point() else values.dtype
        return values.to(dt)
    ref = np.asarray(ref)
    return values.astype(ref.dtype if np.issubdtype(ref.dtype, np.floating) else np.float64, copy=False)


def _mask(valid: Any, shape: tuple[int, ...], like: Any, name: str = "valid") -> Any | None:
    """valid: [B, J] bool/0-1 or None -> float mask of ``like``'s library and dtype."""
    if valid is None:
        return None
    v = _asarray(valid, like)
    if tuple(v.shape) != tuple(shape):
        raise CpcbenchError(f"{name} mask has shape {tuple(v.shape)}, expected {tuple(shape)} (one flag per joint)")
    if _is_torch(like):
        return (v != 0).to(like.dtype)
    return (v != 0).astype(like.dtype)


def _check_pair(pred: Any, gt: Any, what: str = "pred/gt", dims: tuple[int, ...] = (2, 3)) -> None:
    if tuple(pred.shape) != tuple(gt.shape):
        raise CpcbenchError(f"{what}: prediction shape {tuple(pred.shape)} does not match ground truth "
                            f"{tuple(gt.shape)}")
    if pred.ndim != 3 or pred.shape[-1] not in dims:
        raise CpcbenchError(f"{what}: expected points [B, J, {'|'.join(map(str, dims))}], got {tuple(pred.shape)}")


def _check_finite(x: Any, name: str, valid: Any = None) -> None:
    """Raise if ``x`` [B, J, D] has NaN/inf in any entry not masked out by ``valid`` [B, J]."""
    xp = _xp(x)
    if bool(xp.isfinite(x).all()):
        return
    bad = ~xp.isfinite(x)
    if bad.ndim == 3:
        bad = bad.any(-1)
    if valid is not None:
        bad = bad & (valid != 0)
    if bool(bad.any()):
        idx = xp.nonzero(bad)[0] if not _is_torch(x) else bad.nonzero()[:, 0]
        first = int(idx[0])
        raise CpcbenchError(f"{name} contains NaN or inf values (first in sample {first}); "
                            f"mask those joints with `valid` or drop the samples")


def _clean(x: Any, w: Any | None) -> Any:
    """Zero out masked entries so NaN in masked joints cannot leak into sums."""
    if w is None:
        return x
    xp = _xp(x)
    return xp.where(w[..., None] > 0, x, xp.zeros_like(x))


def _require_valid(w: Any | None, what: str) -> None:
    """Raise if some sample has no valid joint (w: [B, J] float mask or None)."""
    if w is None:
        return
    n = w.sum(-1)
    if bool((n <= 0).any()):
        first = int(np.flatnonzero(np.asarray((n <= 0).cpu() if _is_torch(n) else n <= 0))[0])
        raise CpcbenchError(f"{what}: sample {first} has no valid joints; drop such samples (frame filter) first")


def _masked_mean(err: Any, w: Any | None, what: str) -> Any:
    """err: [B, J] -> [B]: mean over joints with w > 0."""
    if err.shape[-1] == 0:
        raise CpcbenchError(f"{what}: there are no joints/points to score (shape {tuple(err.shape)})")
    if w is None:
        return err.mean(-1)
    _require_valid(w, what)
    return (err * w).sum(-1) / w.sum(-1)


def _norm(x: Any) -> Any:
    """Euclidean norm over the last axis of [B, J, D] (einsum: numpy reduces tiny last axes slowly)."""
    if x.ndim == 3:
        return _xp(x).einsum("bjk,bjk->bj", x, x) ** 0.5
    return ((x * x).sum(-1)) ** 0.5


def _mean_points(x: Any) -> Any:
    """[B, J, D] -> [B, D]: mean over points as one GEMM (much faster than numpy's strided reduction)."""
    B, J, D = x.shape
    if _is_torch(x):
        import torch

        avg = torch.eye(D, dtype=x.dtype, device=x.device).repeat(J, 1) / J
    else:
        avg = np.tile(np.eye(D, dtype=x.dtype), (J, 1)) / J
    return x.reshape(B, J * D) @ avg


def _eye_like(x: Any, d: int, batch: int) -> Any:
    if _is_torch(x):
        import torch

        return torch.eye(d, dtype=x.dtype, device=x.device).expand(batch, d, d).clone()
    return np.broadcast_to(np.eye(d, dtype=x.dtype), (batch, d, d)).copy()


# ----------------------------------------------------------------------------------------------------------------
# Procrustes
# ----------------------------------------------------------------------------------------------------------------


def similarity_transform(pred: Array, gt: Array, allow_reflection: bool = False,
                         valid: Array | None = None) -> tuple[Array, Array, Array]:
    """Least-squares similarity transform of ``pred`` onto ``gt``, batched (one SVD call, no Python loop).

    pred, gt: [B, J, D] (D = 2 or 3); valid: [B, J] or None (estimate on valid joints only).
    Returns s [B], R [B, D, D], t [B, D] with ``aligned = s[:, None, None] * pred @ R.mT + t[:, None]``.
    ``allow_reflection=False``: det(R) = +1 (Kabsch/Umeyama det fix, body family); True: R may be a reflection
    (FreiHAND ``align_w_scale``). A degenerate prediction (all points equal) gives s = 0, R = I, t = GT mean.
    """
    _check_pair(pred, gt, "procrustes")
    w = _mask(valid, tuple(pred.shape[:2]), _float(pred))
    _require_valid(w, "procrustes")
    _check_finite(pred, "prediction", w)
    _check_finite(gt, "ground truth", w)
    return _similarity(pred, gt, allow_reflection, w)


def _similarity(pred: Array, gt: Array, allow_reflection: bool, w: Array | None) -> tuple[Array, Array, Array]:
    xp = _xp(pred)
    # float64 for the 3x3 algebra: exact enough near degenerate configurations and cheap.
    p = _float(pred, 64)
    g = _float(gt, 64)
    if _is_torch(p):
        g = g.to(p.dtype)
    B, _, D = p.shape
    if w is None:
        mu_p = _mean_points(p)
        mu_g = _mean_points(g)
        X = p - mu_p[:, None]
        Y = g - mu_g[:, None]
        Xw = X
    else:
        ww = w.to(p.dtype) if _is_torch(p) else w.astype(p.dtype)
        p = _clean(p, ww)
        g = _clean(g, ww)
        n = ww.sum(1)[:, None]
        mu_p = (p * ww[..., None]).sum(1) / n
        mu_g = (g * ww[..., None]).sum(1) / n
        X = p - mu_p[:, None]
        Y = g - mu_g[:, None]
        Xw = X * ww[..., None]
    var = xp.einsum("bjk,bjk->b", Xw, X)
    M = Xw.swapaxes(1, 2) @ Y  # [B, D, D] = sum_j x_j y_j^T
    R = _optimal_rotation(M, allow_reflection)
    z_dot_s = xp.einsum("bij,bji->b", R, M)  # trace(R M) = sum of (sign-fixed) singular values
    degenerate = var <= 0
    safe_var = xp.where(degenerate, xp.ones_like(var), var)
    s = xp.where(degenerate, xp.zeros_like(var), z_dot_s / safe_var)
    if bool(degenerate.any()):
        R = xp.where(degenerate[:, None, None], _eye_like(R, D, B), R)
    t = mu_g - s[:, None] * xp.einsum("bik,bk->bi", R, mu_p)
    return _out_dtype_like(s, pred), _out_dtype_like(R, pred), _out_dtype_like(t, pred)


def _rotation_svd(M: Array, allow_reflection: bool) -> Array:
    """R = V diag(1, .., 1, d) U^T from M = U S V^T, d = sign(det(V U^T)) (or 1 when reflections are allowed)."""
    xp = _xp(M)
    U, _, Vh = xp.linalg.svd(M)
    V = Vh.swapaxes(1, 2)
    Ut = U.swapaxes(1, 2)
    if allow_reflection:
        return V @ Ut
    z = xp.ones_like(M[:, 0])
    d = xp.sign(xp.linalg.det(V @ Ut))
    z[:, -1] = xp.where(d == 0, xp.ones_like(d), d)
    return (V * z[:, None, :]) @ Ut


def _polar3(A: Array, max_iter: int = 30, tol: float = 1e-24) -> tuple[Array, Array, Array]:
    """Orthogonal polar factor of 3x3 matrices by scaled Newton iteration (Higham 1986), elementwise on [B] arrays.

    A: [B, 3, 3] -> (Q [B, 3, 3], det(A) [B], converged [B] bool). Q = V U^T for A = V S U^T, the rotation (or
    reflection, when det(A) < 0) closest to A. ~6 iterations for well-conditioned A; much faster than a batched
    LAPACK SVD of many tiny matrices. Singular or non-converged samples are flagged for the SVD fallback.
    """
    x = [A[:, i, j] * 1.0 for i in range(3) for j in range(3)]
    det0 = None
    delta = None
    for _ in range(max_iter):
        a, b, c, d, e, f, g, h, i = x
        cof = [e * i - f * h, f * g - d * i, d * h - e * g, c * h - b * i, a * i - c * g, b * g - a * h,
               b * f - c * e, c * d - a * f, a * e - b * d]
        det = a * cof[0] + b * cof[1] + c * cof[2]
        if det0 is None:
            det0 = det
        nx = sum(v * v for v in x)
        nc = sum(v * v for v in cof)
        ok = (det != 0) & (nx > 0)
        det_s = det + (~ok) * 1.0  # avoid division by zero; those samples go to the SVD fallback
        gam = (nc / (det_s * det_s * (nx + (~ok) * 1.0)) + (~ok) * 1.0) ** 0.25
        k1, k2 = 0.5 * gam, 0.5 / (gam * det_s)
        new = [k1 * u + k2 * w for u, w in zip(x, cof, strict=True)]
        delta = sum((u - w) * (u - w) for u, w in zip(new, x, strict=True))
        x = new
        if bool((delta[ok] < tol).all()) if bool(ok.any()) else True:
            break
    xp = _xp(A)
    Q = xp.stack(x, -1).reshape(A.shape)
    finite = xp.isfinite(Q).all(-1).all(-1)
    return Q, det0, ok & (delta < tol) & finite


def _optimal_rotation(M: Array, allow_reflection: bool) -> Array:
    """The R maximising trace(R M) (Kabsch; det(R) = +1 unless ``allow_reflection``). M: [B, D, D] -> [B, D, D].

    3D: polar factor of M^T by Newton iteration where it is the answer (det(M) > 0, or reflections allowed), a
    batched SVD for the rest (det(M) <= 0 without reflections, near-singular M, no convergence).
    """
    B, D, _ = M.shape
    if D != 3 or B == 0:
        return _rotation_svd(M, allow_reflection)
    Q, det, ok = _polar3(M.swapaxes(1, 2))
    scale3 = _xp(M).einsum("bij,bij->b", M, M) ** 1.5
    ok = ok & (abs(det) > 1e-10 * scale3)
    if not allow_reflection:
        ok = ok & (det > 0)
    if bool(ok.all()):
        return Q
    xp = _xp(M)
    bad = xp.nonzero(~ok)[0] if not _is_torch(M) else (~ok).nonzero()[:, 0]
    Q[bad] = _rotation_svd(M[bad], allow_reflection)
    return Q


def apply_transform(x: Array, s: Array, R: Array, t: Array) -> Array:
    """x: [B, N, D] -> s * x @ R^T + t (the transform of ``similarity_transform``; N may differ from J)."""
    xf = _float(x)
    R = R.to(xf.dtype) if _is_torch(xf) else R.astype(xf.dtype, copy=False)
    s = s.to(xf.dtype) if _is_torch(xf) else s.astype(xf.dtype, copy=False)
    t = t.to(xf.dtype) if _is_torch(xf) else t.astype(xf.dtype, copy=False)
    return s[:, None, None] * (xf @ R.swapaxes(1, 2)) + t[:, None, :]


def procrustes_align(pred: Array, gt: Array, allow_reflection: bool = False, valid: Array | None = None) -> Array:
    """pred aligned onto gt by the least-squares similarity transform: [B, J, D] -> [B, J, D]."""
    s, R, t = similarity_transform(pred, gt, allow_reflection=allow_reflection, valid=valid)
    return apply_transform(pred, s, R, t)


def scale_translation_align(pred: Array, gt: Array, bone: tuple[int, int] = (0, 4), root: int = 0) -> Array:
    """HO3D's "scale-translation aligned" keypoints (shreyashampali/ho3d ``eval.py::align_sc_tr``).

    pred, gt: [B, J, 3]. pred is scaled so that the length of ``bone`` (joints 0-4 of the submission order in the
    official script) equals the GT's (left unscaled where the predicted bone has zero length), then translated so
    its ``root`` joint coincides with the GT's. No rotation. Returns [B, J, 3].
    """
    _check_pair(pred, gt, "scale_translation_align", dims=(3,))
    p, g = _float(pred), _float(gt)
    _check_finite(p, "prediction")
    _check_finite(g, "ground truth")
    a, b = bone
    sp = _norm(p[:, b] - p[:, a])
    sg = _norm(g[:, b] - g[:, a])
    xp = _xp(p)
    ratio = xp.where(sp > 0, sg / xp.where(sp > 0, sp, xp.ones_like(sp)), sg)  # the script skips /s when s == 0
    q = p * ratio[:, None, None]
    return q - q[:, root:root + 1] + g[:, root:root + 1]


# ----------------------------------------------------------------------------------------------------------------
# joint and vertex errors
# ----------------------------------------------------------------------------------------------------------------


def _root_point(x: Array, root: int | Sequence[int]) -> Array:
    idx = [int(root)] if isinstance(root, int | np.integer) else [int(i) for i in root]
    if not idx:
        raise CpcbenchError("root must be a joint index or a non-empty list of joint indices")
    if min(idx) < -x.shape[1] or max(idx) >= x.shape[1]:
        raise CpcbenchError(f"root joint(s) {idx} out of range for {x.shape[1]} joints")
    return x[:, idx].mean(1)


def joint_errors(pred: Array, gt: Array, root: int | Sequence[int] | None = None,
                 valid: Array | None = None) -> Array:
    """Per-joint Euclidean errors [B, J] after optional root alignment (masked entries are 0)."""
    _check_pair(pred, gt, "mpjpe")
    p, g = _float(pred), _float(gt)
    w = _mask(valid, tuple(p.shape[:2]), p)
    _check_finite(p, "prediction", w)
    _check_finite(g, "ground truth", w)
    p, g = _clean(p, w), _clean(g, w)
    if root is not None:
        p = p - _root_point(p, root)[:, None]
        g = g - _root_point(g, root)[:, None]
    err = _norm(p - g)
    return err if w is None else err * w


def mpjpe(pred: Array, gt: Array, root: int | Sequence[int] | None = None, valid: Array | None = None) -> Array:
    """Mean per-joint position error per sample.

    pred, gt: [B, J, D]; root: None (no alignment), a joint index, or joint indices whose mean is subtracted from
    both (e.g. ``[1, 2]`` = SMPL hip midpoint, EMDB); valid: [B, J] or None. Returns [B] in the input's units.
    The root is computed from the given joints even when they are masked out; pass valid roots.
    """
    if root is not None and valid is not None:
        # root joints must be present: they define the frame of every other joint
        v = _asarray(valid, pred)
        idx = [int(root)] if isinstance(root, int | np.integer) else [int(i) for i in root]
        if not bool((v[:, idx] != 0).all()):
            raise CpcbenchError(f"root joint(s) {idx} are masked out in some samples; root alignment needs them")
    err = joint_errors(pred, gt, root=root, valid=valid)
    w = _mask(valid, tuple(pred.shape[:2]), _float(pred))
    return _out_dtype_like(_masked_mean(err, w, "mpjpe"), _float(pred))


def pa_mpjpe(pred: Array, gt: Array, allow_reflection: bool = False, valid: Array | None = None) -> Array:
    """Procrustes-aligned MPJPE per sample: [B, J, D] -> [B] (input units). See ``similarity_transform``."""
    _check_pair(pred, gt, "pa_mpjpe")
    p = _float(pred)
    w = _mask(valid, tuple(p.shape[:2]), p)
    if p.shape[0] == 0:
        return _out_dtype_like(p.sum((1, 2)) if not _is_torch(p) else p.sum(dim=(1, 2)), p)
    _require_valid(w, "pa_mpjpe")
    _check_finite(p, "prediction", w)
    _check_finite(gt, "ground truth", w)
    s, R, t = _similarity(pred, gt, allow_reflection, w)
    aligned = apply_transform(_clean(p, w), s, R, t)
    g = _clean(_float(gt), w)
    g = g.to(aligned.dtype) if _is_torch(g) else g.astype(aligned.dtype, copy=False)
    err = _norm(aligned - g)
    return _out_dtype_like(_masked_mean(err, w, "pa_mpjpe"), p)


def pve(pred_verts: Array, gt_verts: Array, root_pred: Array | None = None, root_gt: Array | None = None) -> Array:
    """Per-vertex error per sample: mean over V of |pred - gt|.

    pred_verts, gt_verts: [B, V, 3]; root_pred, root_gt: [B, 3] points subtracted from the respective mesh (e.g.
    each model's pelvis, SMPL joint 0, or the hip midpoint of EMDB), both or neither. Returns [B].
    """
    _check_pair(pred_verts, gt_verts, "pve")
    if (root_pred is None) != (root_gt is None):
        raise CpcbenchError("pve: give both root_pred and root_gt (each mesh is centred on its own root) or neither")
    p, g = _float(pred_verts), _float(gt_verts)
    _check_finite(p, "predicted vertices")
    _check_finite(g, "ground-truth vertices")
    if root_pred is not None:
        rp, rg = _float(_asarray(root_pred, p)), _float(_asarray(root_gt, p))
        for name, r in (("root_pred", rp), ("root_gt", rg)):
            if tuple(r.shape) != (p.shape[0], p.shape[2]):
                raise CpcbenchError(f"pve: {name} has shape {tuple(r.shape)}, expected [B, 3] = "
                                    f"{(p.shape[0], p.shape[2])}")
            _check_finite(r, name)
        p = p - rp[:, None].to(p.dtype) if _is_torch(p) else p - rp[:, None]
        g = g - rg[:, None].to(g.dtype) if _is_torch(g) else g - rg[:, None]
    return _out_dtype_like(_masked_mean(_norm(p - g), None, "pve"), _float(pred_verts))


def pa_pve(pred_verts: Array, gt_verts: Array, allow_reflection: bool = False,
           transform_from: tuple[Array, Array] | None = None) -> Array:
    """Procrustes-aligned per-vertex error per sample: [B, V, 3] -> [B].

    transform_from=None: the transform is estimated on the vertices themselves (FreiHAND mesh, Multi-HMR).
    transform_from=(pred_joints, gt_joints) [B, J, 3]: estimated on the joints and applied to the vertices (EMDB
    MVE-PA, ``eth-ait/emdb evaluation_metrics.py``).
    """
    _check_pair(pred_verts, gt_verts, "pa_pve")
    if transform_from is None:
        return pa_mpjpe(pred_verts, gt_verts, allow_reflection=allow_reflection)
    pj, gj = transform_from
    if pj.shape[0] != pred_verts.shape[0]:
        raise CpcbenchError(f"pa_pve: transform_from joints have batch {pj.shape[0]}, vertices {pred_verts.shape[0]}")
    s, R, t = similarity_transform(pj, gj, allow_reflection=allow_reflection)
    _check_finite(_float(pred_verts), "predicted vertices")
    _check_finite(_float(gt_verts), "ground-truth vertices")
    aligned = apply_transform(pred_verts, s, R, t)
    g = _float(gt_verts)
    g = g.to(aligned.dtype) if _is_torch(g) else g.astype(aligned.dtype)
    return _out_dtype_like(_norm(aligned - g).mean(-1), _float(pred_verts))


# ----------------------------------------------------------------------------------------------------------------
# PCK and AUC
# ----------------------------------------------------------------------------------------------------------------


def pck(pred: Array, gt: Array, threshold: float, normalize: Array | float | None = None, inclusive: bool = True,
        valid: Array | None = None) -> Array:
    """Fraction of (valid) joints within ``threshold`` per sample: [B, J, D] -> [B] in [0, 1].

    normalize: per-sample scale [B] (or a scalar) that distances are divided by (2D PCK: bbox size, head size,
    torso size); inclusive: ``d <= t`` (FreiHAND, 3DPW challenge) or ``d < t`` (MPI-INF-3DHP, mmpose).
    """
    _check_pair(pred, gt, "pck")
    p = _float(pred)
    w = _mask(valid, tuple(p.shape[:2]), p)
    d = joint_errors(pred, gt, valid=valid)
    if normalize is not None:
        n = _float(_asarray(normalize, p))
        if n.ndim == 0:
            n = n * _xp(p).ones_like(d[:, 0])
        if tuple(n.shape) != (p.shape[0],):
            raise CpcbenchError(f"pck: normalize must be a scalar or one scale per sample [B], got {tuple(n.shape)}")
        if not bool(_xp(n).isfinite(n).all()) or bool((n <= 0).any()):
            raise CpcbenchError("pck: normalize scales must be finite and > 0 (bbox/head/torso size per sample)")
        d = d / (n.to(d.dtype) if _is_torch(d) else n.astype(d.dtype))[:, None]
    hit = (d <= threshold) if inclusive else (d < threshold)
    hit = hit.to(p.dtype) if _is_torch(p) else hit.astype(p.dtype)
    return _out_dtype_like(_masked_mean(hit, w, "pck"), p)


def _threshold_weights(lo: float, hi: float, steps: int, integrate: str) -> np.ndarray:
    thr = np.linspace(lo, hi, steps)
    if integrate == "trapz":
        if steps < 2 or not hi > lo:
            raise CpcbenchError(f"auc: need hi > lo and steps >= 2 for the trapezoidal rule, got {lo}, {hi}, {steps}")
        dt = np.diff(thr)
        w = np.zeros(steps)
        w[:-1] += dt / 2
        w[1:] += dt / 2
        w /= w.sum()  # == trapz(ones, thr): the AUC lies in [0, 1]
    elif integrate == "mean":
        if steps < 1:
            raise CpcbenchError(f"auc: steps must be >= 1, got {steps}")
        w = np.full(steps, 1.0 / steps)
    else:
        raise CpcbenchError(f"auc: integrate must be 'trapz' (FreiHAND, 3DPW) or 'mean' (MPI-INF-3DHP), "
                            f"got {integrate!r}")
    return thr, w


def auc(errors: Array, lo: float, hi: float, steps: int, valid: Array | None = None, inclusive: bool = True,
        integrate: Literal["trapz", "mean"] = "trapz") -> Array:
    """Area under the PCK curve per sample, normalised to [0, 1].

    errors: [B, J] per-joint errors (or [B], one error per sample) in the units of lo/hi; thresholds are
    ``linspace(lo, hi, steps)`` (FreiHAND: 0-50 mm, 100 steps; MPI-INF-3DHP: 0-150 mm, 31 steps with
    ``integrate="mean"`` and ``inclusive=False``; 3DPW challenge: 0-199 mm, 200 steps). Exact and O(N log T): each
    error's PCK indicator is integrated in closed form from the first threshold it passes.
    """
    e = _float(_asarray(errors))
    if e.ndim == 1:
        e = e[:, None]
        if valid is not None:
            valid = _asarray(valid, e)[:, None]
    if e.ndim != 2:
        raise CpcbenchError(f"auc: errors must be [B, J] or [B], got {tuple(e.shape)}")
    w = _mask(valid, tuple(e.shape), e)
    _check_finite(e, "errors", w)
    thr, wt = _threshold_weights(float(lo), float(hi), int(steps), integrate)
    tail = np.concatenate([np.cumsum(wt[::-1])[::-1], [0.0]])  # tail[k] = sum of weights of thresholds k..T-1
    side = "left" if inclusive else "right"  # first threshold t with e <= t (inclusive) or e < t
    if _is_torch(e):
        import torch

        thr_t = torch.as_tensor(thr, dtype=torch.float64, device=e.device)
        k = torch.searchsorted(thr_t, e.to(torch.float64).contiguous(), right=not inclusive)
        per = torch.as_tensor(tail, dtype=torch.float64, device=e.device)[k].to(e.dtype)
    else:
        k = np.searchsorted(thr, e.astype(np.float64), side=side)
        per = tail[k].astype(e.dtype)
    return _out_dtype_like(_masked_mean(_clean(per[..., None], w)[..., 0] if w is not None else per, w, "auc"), e)


def pck_curve(errors: Array, lo: float, hi: float, steps: int, valid: Array | None = None,
              inclusive: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Data-set PCK curve (for plots): thresholds [T] and the fraction of valid (sample, joint) pairs within each."""
    e = np.asarray(errors.detach().cpu() if _is_torch(errors) else errors, dtype=np.float64).reshape(len(errors), -1)
    v = np.ones_like(e, bool) if valid is None else np.asarray(
        valid.detach().cpu() if _is_torch(valid) else valid).reshape(e.shape) != 0
    thr = np.linspace(lo, hi, steps)
    vals = np.sort(e[v])
    n = max(len(vals), 1)
    cnt = np.searchsorted(vals, thr, side="right" if inclusive else "left")
    return thr, cnt / n


# ----------------------------------------------------------------------------------------------------------------
# F-score (nearest neighbours in both directions)
# ----------------------------------------------------------------------------------------------------------------


def nn_distances(pred_verts: Array, gt_verts: Array, chunk: int = 0) -> tuple[Array, Array]:
    """Nearest-neighbour distances in both directions.

    pred_verts: [B, Vp, 3], gt_verts: [B, Vg, 3] (Vp may differ from Vg). Returns (d_gt [B, Vg]: for each GT
    point the distance to the closest predicted point; d_pred [B, Vp]: for each predicted point the distance to
    the closest GT point), float64. On the CPU a k-d tree per sample (scipy ``cKDTree``, exact, ~1 ms for
    778 x 778 points: faster than any brute-force batch on a few cores); CUDA tensors use batched ``torch.cdist``
    in blocks of ``chunk`` samples (0 = automatic).
    """
    if pred_verts.ndim != 3 or gt_verts.ndim != 3 or pred_verts.shape[0] != gt_verts.shape[0] \
            or pred_verts.shape[-1] != gt_verts.shape[-1]:
        raise CpcbenchError(f"f_score: expected vertices [B, V, 3] with the same B, got {tuple(pred_verts.shape)} "
                            f"and {tuple(gt_verts.shape)}")
    if pred_verts.shape[1] == 0 or gt_verts.shape[1] == 0:
        raise CpcbenchError("f_score: a point set is empty; expected vertices [B, V, 3] with V > 0")
    _check_finite(pred_verts, "predicted vertices")
    _check_finite(gt_verts, "ground-truth vertices")
    if _is_torch(pred_verts) and pred_verts.device.type != "cpu":
        return _nn_cdist(pred_verts, gt_verts.to(pred_verts.device), chunk)
    from scipy.spatial import cKDTree

    def as_np(x: Any) -> np.ndarray:
        return np.asarray(x.detach().cpu() if _is_torch(x) else x, dtype=np.float64)

    p, g = as_np(pred_verts), as_np(gt_verts)
    B = p.shape[0]
    d_gt = np.empty(g.shape[:2])
    d_pred = np.empty(p.shape[:2])
    for b in range(B):  # one tree query per sample; each is vectorised C++
        d_gt[b] = cKDTree(p[b]).query(g[b], k=1)[0]
        d_pred[b] = cKDTree(g[b]).query(p[b], k=1)[0]
    if _is_torch(pred_verts):
        import torch

        return torch.from_numpy(d_gt), torch.from_numpy(d_pred)
    return d_gt, d_pred


def _nn_cdist(p: Array, g: Array, chunk: int) -> tuple[Array, Array]:
    """Batched brute-force nearest neighbours with torch (for accelerators). [B, Vp, 3], [B, Vg, 3]."""
    import torch

    B, Vp, _ = p.shape
    Vg = g.shape[1]
    d_gt = torch.empty(B, Vg, dtype=torch.float64, device=p.device)
    d_pred = torch.empty(B, Vp, dtype=torch.float64, device=p.device)
    if chunk <= 0:
        chunk = max(1, int(50_000_000 // max(Vp * Vg, 1)))
    with torch.no_grad():
        for i in range(0, B, chunk):
            a = p[i:i + chunk].to(torch.float64)
            b = g[i:i + chunk].to(torch.float64)
            c = b.mean(1, keepdim=True)  # centre: smaller magnitudes, more exact distances
            D = torch.cdist(a - c, b - c, compute_mode="donot_use_mm_for_euclid_dist")  # [c, Vp, Vg]
            d_pred[i:i + chunk] = D.amin(2)
            d_gt[i:i + chunk] = D.amin(1)
    return d_gt, d_pred


def _fscore_from(d_gt: Array, d_pred: Array, th: float, inclusive: bool) -> Array:
    xp = _xp(d_gt)
    if inclusive:
        prec, rec = (d_gt <= th), (d_pred <= th)
    else:
        prec, rec = (d_gt < th), (d_pred < th)
    prec = (prec * 1.0).mean(-1)
    rec = (rec * 1.0).mean(-1)
    den = prec + rec
    return xp.where(den > 0, 2 * prec * rec / xp.where(den > 0, den, xp.ones_like(den)), xp.zeros_like(den))


def f_scores(pred_verts: Array, gt_verts: Array, thresholds: Sequence[float], inclusive: bool = False) -> Array:
    """F-scores per sample and threshold: [B, T] (nearest neighbours computed once for all thresholds)."""
    d_gt, d_pred = nn_distances(pred_verts, gt_verts)
    cols = [_fscore_from(d_gt, d_pred, float(t), inclusive) for t in thresholds]
    xp = _xp(d_gt)
    out = xp.stack(cols, -1) if _is_torch(d_gt) else np.stack(cols, -1)
    ref = _float(pred_verts)
    if _is_torch(ref):
        out = out.to(ref.device)
    return _out_dtype_like(out, ref)


def f_score(pred_verts: Array, gt_verts: Array, threshold: float, inclusive: bool = False) -> Array:
    """FreiHAND F-score per sample at ``threshold`` (input units; F@5mm: 0.005 m): [B, V, 3] -> [B] in [0, 1].

    precision = fraction of GT points whose nearest predicted point is closer than the threshold, recall = the
    same for predicted points; F = 2PR / (P + R), 0 when both are 0. Strict ``<`` as in FreiHAND's
    ``calculate_fscore`` unless ``inclusive``.
    """
    return f_scores(pred_verts, gt_verts, [threshold], inclusive=inclusive)[:, 0]


# ----------------------------------------------------------------------------------------------------------------
# dense labels and classification
# ----------------------------------------------------------------------------------------------------------------


def _labels_pair(pred: Array, gt: Array, num_classes: int) -> tuple[Array, Array]:
    p, g = _asarray(pred), _asarray(gt, pred)
    if tuple(p.shape) != tuple(g.shape):
        raise CpcbenchError(f"miou: predicted labels {tuple(p.shape)} do not match GT labels {tuple(g.shape)}")
    if p.ndim < 2:
        raise CpcbenchError(f"miou: expected label maps [B, H, W] (or [B, N]), got {tuple(p.shape)}")
    if num_classes < 1:
        raise CpcbenchError(f"miou: num_classes must be >= 1, got {num_classes}")
    return p.reshape(p.shape[0], -1), g.reshape(g.shape[0], -1)


def intersection_union(pred_labels: Array, gt_labels: Array, num_classes: int,
                       ignore_index: int | None = 255) -> tuple[Array, Array]:
    """Per-sample, per-class intersection and union pixel counts: [B, H, W] -> ([B, C], [B, C]).

    Pixels whose GT equals ``ignore_index`` (or lies outside [0, C)) are ignored; predicted labels outside [0, C)
    count as wrong. Sum both over samples and call ``miou_from_counts`` for the dataset-level mIoU.
    """
    p, g = _labels_pair(pred_labels, gt_labels, num_classes)
    C = num_classes
    B = p.shape[0]
    if _is_torch(p):
        import torch

        p, g = p.long(), g.long().to(p.device)
        keep = (g >= 0) & (g < C)
        if ignore_index is not None:
            keep &= g != ignore_index
        offs = torch.arange(B, device=p.device)[:, None] * C
        pc = torch.where((p >= 0) & (p < C), p, torch.full_like(p, -1))
        inter = torch.bincount((offs + g)[keep & (pc == g)], minlength=B * C).reshape(B, C)
        area_g = torch.bincount((offs + g)[keep], minlength=B * C).reshape(B, C)
        ok = keep & (pc >= 0)
        area_p = torch.bincount((offs + pc)[ok], minlength=B * C).reshape(B, C)
    else:
        p, g = p.astype(np.int64), g.astype(np.int64)
        keep = (g >= 0) & (g < C)
        if ignore_index is not None:
            keep &= g != ignore_index
        offs = np.arange(B)[:, None] * C
        pc = np.where((p >= 0) & (p < C), p, -1)
        inter = np.bincount((offs + g)[keep & (pc == g)], minlength=B * C).reshape(B, C)
        area_g = np.bincount((offs + g)[keep], minlength=B * C).reshape(B, C)
        ok = keep & (pc >= 0)
        area_p = np.bincount((offs + pc)[ok], minlength=B * C).reshape(B, C)
    return inter, area_p + area_g - inter


def miou_from_counts(inter: Array, union: Array) -> tuple[float, np.ndarray]:
    """Dataset-level mIoU from summed counts: inter, union [C] (or [B, C], summed here) -> (mIoU, IoU per class).

    Classes with an empty union (absent from both prediction and GT everywhere) are NaN per class and left out of
    the mean, as in mmsegmentation's ``nanmean``.
    """
    i = np.asarray(inter.detach().cpu() if _is_torch(inter) else inter, dtype=np.float64)
    u = np.asarray(union.detach().cpu() if _is_torch(union) else union, dtype=np.float64)
    if i.ndim == 2:
        i, u = i.sum(0), u.sum(0)
    iou = np.full_like(i, np.nan)
    np.divide(i, u, out=iou, where=u > 0)
    if not np.isfinite(iou).any():
        raise CpcbenchError("miou: no class occurs in prediction or GT; nothing to score")
    return float(np.nanmean(iou)), iou


def miou(pred_labels: Array, gt_labels: Array, num_classes: int, ignore_index: int | None = 255,
         ignore_background: bool = False) -> Array:
    """Per-sample mIoU: for each sample, the mean IoU over classes present in its prediction or GT. [B, ...] -> [B].

    ignore_background: leave class 0 out of the mean over classes (part segmentation: mean over parts); its pixels
    still count, a background pixel predicted as part k enlarges k's union. A sample in which no (scored) class
    occurs in prediction or GT has nothing to get wrong and scores 1.0. The mean of per-sample mIoU is not the
    dataset-level mIoU of segmentation papers; for that sum ``intersection_union`` over the data set and use
    ``miou_from_counts`` (or ``confusion_matrix``).
    """
    inter, union = intersection_union(pred_labels, gt_labels, num_classes, ignore_index)
    xp = _xp(inter)
    present = union > 0
    if ignore_background:
        present[:, 0] = False
    n = present.sum(-1)
    fi = inter * 1.0
    fu = xp.where(present, union * 1.0, xp.ones_like(fi))
    total = (fi / fu * present).sum(-1)
    return xp.where(n > 0, total / xp.where(n > 0, n, xp.ones_like(n)), xp.ones_like(total))


def confusion_matrix(pred_labels: Array, gt_labels: Array, num_classes: int,
                     ignore_index: int | None = 255) -> np.ndarray:
    """Dataset-level confusion matrix [C, C] (rows GT, columns prediction); predictions outside [0, C) dropped."""
    p, g = _labels_pair(pred_labels, gt_labels, num_classes)
    p = np.asarray(p.detach().cpu() if _is_torch(p) else p, dtype=np.int64).ravel()
    g = np.asarray(g.detach().cpu() if _is_torch(g) else g, dtype=np.int64).ravel()
    keep = (g >= 0) & (g < num_classes) & (p >= 0) & (p < num_classes)
    if ignore_index is not None:
        keep &= g != ignore_index
    return np.bincount(g[keep] * num_classes + p[keep], minlength=num_classes ** 2).reshape(num_classes,
                                                                                           num_classes)


def accuracy(logits_or_labels: Array, labels: Array, k: int = 1) -> Array:
    """Per-sample correctness (1.0 or 0.0): logits [B, C] (top-k) or predicted labels [B] vs labels [B] -> [B]."""
    x = _asarray(logits_or_labels)
    y = _asarray(labels, x)
    if y.ndim != 1:
        raise CpcbenchError(f"accuracy: labels must be [B], got {tuple(y.shape)}")
    if x.shape[0] != y.shape[0]:
        raise CpcbenchError(f"accuracy: {x.shape[0]} predictions for {y.shape[0]} labels")
    if x.ndim == 2:
        if k < 1 or k > x.shape[1]:
            raise CpcbenchError(f"accuracy: k={k} must be between 1 and the number of classes {x.shape[1]}")
        _check_finite(_float(x), "logits")
        if _is_torch(x):
            top = x.topk(k, dim=1).indices
            hit = (top == y.to(top.device)[:, None].long()).any(1)
            return hit.to(x.dtype if x.is_floating_point() else _float(x).dtype)
        top = np.argsort(-x, axis=1, kind="stable")[:, :k]
        return (top == y[:, None]).any(1).astype(_float(x).dtype)
    if x.ndim == 1:
        if k != 1:
            raise CpcbenchError("accuracy: top-k needs logits [B, C], not labels")
        hit = x == y
        return hit.to(_float(x).dtype) if _is_torch(x) else hit.astype(np.float64)
    raise CpcbenchError(f"accuracy: expected logits [B, C] or labels [B], got {tuple(x.shape)}")
