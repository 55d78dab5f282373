"""Pose, mesh, dense and classification metrics with the field's reference conventions, batched.

Every function takes numpy arrays (anything ``np.asarray`` accepts) and returns **per-sample** values ``[B]``
as numpy arrays, float32 in -> float32 out. Aggregation over samples (mean, std over seeds, stderr)
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
  on the valid joints only. Implemented, batched, in ``tasks.procrustes`` and re-exported here.
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

Note: PA-MPJPE <= root-aligned MPJPE is *not* a theorem (Procrustes minimises squared error, MPJPE averages norms;
one outlier joint is a counterexample); PA-MPJPE <= root-aligned RMSE is.

Bad input raises ``CpcbenchError`` with one clear line: mismatched shapes, NaN/inf values (in valid entries), a
sample without any valid joint. An empty batch gives an empty result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from core.errors import CpcbenchError
from tasks.arrays import (
    check_finite,
    check_pair,
    joint_mask,
    like_input,
    masked_mean,
    norm_last,
    to_float,
    zero_masked,
)
from tasks.procrustes import (
    apply_transform,
    procrustes_align,
    scale_translation_align,
    similarity_transform,
)

__all__ = [
    "accuracy", "apply_transform", "auc", "confusion_matrix", "f_score", "f_scores", "intersection_union",
    "miou", "miou_from_counts", "mpjpe", "nn_distances", "pa_mpjpe", "pa_pve", "pck", "pck_curve",
    "procrustes_align", "pve", "scale_translation_align", "similarity_transform",
]


# ----------------------------------------------------------------------------------------------------------------
# joint and vertex errors
# ----------------------------------------------------------------------------------------------------------------


def _root_point(x: np.ndarray, root: int | Sequence[int]) -> np.ndarray:
    idx = [int(root)] if isinstance(root, int | np.integer) else [int(i) for i in root]
    if not idx:
        raise CpcbenchError("root must be a joint index or a non-empty list of joint indices")
    if min(idx) < -x.shape[1] or max(idx) >= x.shape[1]:
        raise CpcbenchError(f"root joint(s) {idx} out of range for {x.shape[1]} joints")
    return x[:, idx].mean(1)


def joint_errors(pred: np.ndarray, gt: np.ndarray, root: int | Sequence[int] | None = None,
                 valid: np.ndarray | None = None) -> np.ndarray:
    """Per-joint Euclidean errors [B, J] after optional root alignment (masked entries are 0)."""
    check_pair(pred, gt, "mpjpe")
    p, g = to_float(pred), to_float(gt)
    w = joint_mask(valid, tuple(p.shape[:2]), p)
    check_finite(p, "prediction", w)
    check_finite(g, "ground truth", w)
    p, g = zero_masked(p, w), zero_masked(g, w)
    if root is not None:
        p = p - _root_point(p, root)[:, None]
        g = g - _root_point(g, root)[:, None]
    err = norm_last(p - g)
    return err if w is None else err * w


def mpjpe(pred: np.ndarray, gt: np.ndarray, root: int | Sequence[int] | None = None,
          valid: np.ndarray | None = None) -> np.ndarray:
    """Mean per-joint position error per sample.

    pred, gt: [B, J, D]; root: None (no alignment), a joint index, or joint indices whose mean is subtracted from
    both (e.g. ``[1, 2]`` = SMPL hip midpoint, EMDB); valid: [B, J] or None. Returns [B] in the input's units.
    With a ``valid`` mask the root joints must be valid in every sample (else ``CpcbenchError``).
    """
    if root is not None and valid is not None:
        # root joints must be present: they define the frame of every other joint
        v = np.asarray(valid)
        idx = [int(root)] if isinstance(root, int | np.integer) else [int(i) for i in root]
        if not bool((v[:, idx] != 0).all()):
            raise CpcbenchError(f"root joint(s) {idx} are masked out in some samples; root alignment needs them")
    err = joint_errors(pred, gt, root=root, valid=valid)
    w = joint_mask(valid, tuple(pred.shape[:2]), to_float(pred))
    return like_input(masked_mean(err, w, "mpjpe"), to_float(pred))


def pa_mpjpe(pred: np.ndarray, gt: np.ndarray, allow_reflection: bool = False,
             valid: np.ndarray | None = None) -> np.ndarray:
    """Procrustes-aligned MPJPE per sample: [B, J, D] -> [B] (input units). See ``similarity_transform``."""
    check_pair(pred, gt, "pa_mpjpe")
    p = to_float(pred)
    w = joint_mask(valid, tuple(p.shape[:2]), p)
    if p.shape[0] == 0:
        return like_input(p.sum((1, 2)), p)
    s, R, t = similarity_transform(pred, gt, allow_reflection=allow_reflection, valid=valid)
    aligned = apply_transform(zero_masked(p, w), s, R, t)
    g = zero_masked(to_float(gt), w)
    g = g.astype(aligned.dtype, copy=False)
    err = norm_last(aligned - g)
    return like_input(masked_mean(err, w, "pa_mpjpe"), p)


def pve(pred_verts: np.ndarray, gt_verts: np.ndarray, root_pred: np.ndarray | None = None,
        root_gt: np.ndarray | None = None) -> np.ndarray:
    """Per-vertex error per sample: mean over V of |pred - gt|.

    pred_verts, gt_verts: [B, V, 3]; root_pred, root_gt: [B, 3] points subtracted from the respective mesh (e.g.
    each model's pelvis, SMPL joint 0, or the hip midpoint of EMDB), both or neither. Returns [B].
    """
    check_pair(pred_verts, gt_verts, "pve")
    if (root_pred is None) != (root_gt is None):
        raise CpcbenchError("pve: give both root_pred and root_gt (each mesh is centred on its own root) or neither")
    p, g = to_float(pred_verts), to_float(gt_verts)
    check_finite(p, "predicted vertices")
    check_finite(g, "ground-truth vertices")
    if root_pred is not None:
        rp, rg = to_float(root_pred), to_float(root_gt)
        for name, r in (("root_pred", rp), ("root_gt", rg)):
            if tuple(r.shape) != (p.shape[0], p.shape[2]):
                raise CpcbenchError(f"pve: {name} has shape {tuple(r.shape)}, expected [B, 3] = "
                                    f"{(p.shape[0], p.shape[2])}")
            check_finite(r, name)
        p, g = p - rp[:, None], g - rg[:, None]
    return like_input(masked_mean(norm_last(p - g), None, "pve"), to_float(pred_verts))


def pa_pve(pred_verts: np.ndarray, gt_verts: np.ndarray, allow_reflection: bool = False,
           transform_from: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Procrustes-aligned per-vertex error per sample: [B, V, 3] -> [B].

    transform_from=None: the transform is estimated on the vertices themselves (FreiHAND mesh, Multi-HMR).
    transform_from=(pred_joints, gt_joints) [B, J, 3]: estimated on the joints and applied to the vertices (EMDB
    MVE-PA, ``eth-ait/emdb evaluation_metrics.py``).
    """
    check_pair(pred_verts, gt_verts, "pa_pve")
    if transform_from is None:
        return pa_mpjpe(pred_verts, gt_verts, allow_reflection=allow_reflection)
    pj, gj = transform_from
    if pj.shape[0] != pred_verts.shape[0]:
        raise CpcbenchError(f"pa_pve: transform_from joints have batch {pj.shape[0]}, vertices {pred_verts.shape[0]}")
    s, R, t = similarity_transform(pj, gj, allow_reflection=allow_reflection)
    check_finite(to_float(pred_verts), "predicted vertices")
    check_finite(to_float(gt_verts), "ground-truth vertices")
    aligned = apply_transform(pred_verts, s, R, t)
    g = to_float(gt_verts).astype(aligned.dtype)
    return like_input(norm_last(aligned - g).mean(-1), to_float(pred_verts))


# ----------------------------------------------------------------------------------------------------------------
# PCK and AUC
# ----------------------------------------------------------------------------------------------------------------


def pck(pred: np.ndarray, gt: np.ndarray, threshold: float, normalize: np.ndarray | float | None = None,
        inclusive: bool = True, valid: np.ndarray | None = None) -> np.ndarray:
    """Fraction of (valid) joints within ``threshold`` per sample: [B, J, D] -> [B] in [0, 1].

    normalize: per-sample scale [B] (or a scalar) that distances are divided by (2D PCK: bbox size, head size,
    torso size); inclusive: ``d <= t`` (FreiHAND, 3DPW challenge) or ``d < t`` (MPI-INF-3DHP, mmpose).
    """
    check_pair(pred, gt, "pck")
    p = to_float(pred)
    w = joint_mask(valid, tuple(p.shape[:2]), p)
    d = joint_errors(pred, gt, valid=valid)
    if normalize is not None:
        n = to_float(normalize)
        if n.ndim == 0:
            n = n * np.ones_like(d[:, 0])
        if tuple(n.shape) != (p.shape[0],):
            raise CpcbenchError(f"pck: normalize must be a scalar or one scale per sample [B], got {tuple(n.shape)}")
        if not np.isfinite(n).all() or (n <= 0).any():
            raise CpcbenchError("pck: normalize scales must be finite and > 0 (bbox/head/torso size per sample)")
        d = d / n.astype(d.dtype)[:, None]
    hit = ((d <= threshold) if inclusive else (d < threshold)).astype(p.dtype)
    return like_input(masked_mean(hit, w, "pck"), p)


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


def auc(errors: np.ndarray, lo: float, hi: float, steps: int, valid: np.ndarray | None = None, inclusive: bool = True,
        integrate: Literal["trapz", "mean"] = "trapz") -> np.ndarray:
    """Area under the PCK curve per sample, normalised to [0, 1].

    errors: [B, J] per-joint errors (or [B], one error per sample) in the units of lo/hi; thresholds are
    ``linspace(lo, hi, steps)`` (FreiHAND: 0-50 mm, 100 steps; MPI-INF-3DHP: 0-150 mm, 31 steps with
    ``integrate="mean"`` and ``inclusive=False``; 3DPW challenge: 0-199 mm, 200 steps). Exact and O(N log T): each
    error's PCK indicator is integrated in closed form from the first threshold it passes.
    """
    e = to_float(errors)
    if e.ndim == 1:
        e = e[:, None]
        if valid is not None:
            valid = np.asarray(valid)[:, None]
    if e.ndim != 2:
        raise CpcbenchError(f"auc: errors must be [B, J] or [B], got {tuple(e.shape)}")
    w = joint_mask(valid, tuple(e.shape), e)
    check_finite(e, "errors", w)
    thr, wt = _threshold_weights(float(lo), float(hi), int(steps), integrate)
    tail = np.concatenate([np.cumsum(wt[::-1])[::-1], [0.0]])  # tail[k] = sum of weights of thresholds k..T-1
    side = "left" if inclusive else "right"  # first threshold t with e <= t (inclusive) or e < t
    per = tail[np.searchsorted(thr, e.astype(np.float64), side=side)].astype(e.dtype)
    return like_input(masked_mean(zero_masked(per[..., None], w)[..., 0] if w is not None else per, w, "auc"), e)


def pck_curve(errors: np.ndarray, lo: float, hi: float, steps: int, valid: np.ndarray | None = None,
              inclusive: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Data-set PCK curve (for plots): thresholds [T] and the fraction of valid (sample, joint) pairs within each."""
    e = np.asarray(errors, dtype=np.float64).reshape(len(errors), -1)
    v = np.ones_like(e, bool) if valid is None else np.asarray(valid).reshape(e.shape) != 0
    thr = np.linspace(lo, hi, steps)
    vals = np.sort(e[v])
    n = max(len(vals), 1)
    cnt = np.searchsorted(vals, thr, side="right" if inclusive else "left")
    return thr, cnt / n


# ----------------------------------------------------------------------------------------------------------------
# F-score (nearest neighbours in both directions)
# ----------------------------------------------------------------------------------------------------------------


def nn_distances(pred_verts: np.ndarray, gt_verts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-neighbour distances in both directions.

    pred_verts: [B, Vp, 3], gt_verts: [B, Vg, 3] (Vp may differ from Vg). Returns (d_gt [B, Vg]: for each GT
    point the distance to the closest predicted point; d_pred [B, Vp]: for each predicted point the distance to
    the closest GT point), float64. A k-d tree per sample (scipy ``cKDTree``, exact, ~1 ms for 778 x 778 points:
    faster than any brute-force batch on a few cores).
    """
    if pred_verts.ndim != 3 or gt_verts.ndim != 3 or pred_verts.shape[0] != gt_verts.shape[0] \
            or pred_verts.shape[-1] != gt_verts.shape[-1]:
        raise CpcbenchError(f"f_score: expected vertices [B, V, 3] with the same B, got {tuple(pred_verts.shape)} "
                            f"and {tuple(gt_verts.shape)}")
    if pred_verts.shape[1] == 0 or gt_verts.shape[1] == 0:
        raise CpcbenchError("f_score: a point set is empty; expected vertices [B, V, 3] with V > 0")
    check_finite(pred_verts, "predicted vertices")
    check_finite(gt_verts, "ground-truth vertices")
    from scipy.spatial import cKDTree

    p, g = np.asarray(pred_verts, dtype=np.float64), np.asarray(gt_verts, dtype=np.float64)
    d_gt = np.empty(g.shape[:2])
    d_pred = np.empty(p.shape[:2])
    for b in range(p.shape[0]):  # one tree query per sample; each is vectorised C++
        d_gt[b] = cKDTree(p[b]).query(g[b], k=1)[0]
        d_pred[b] = cKDTree(g[b]).query(p[b], k=1)[0]
    return d_gt, d_pred


def _fscore_from(d_gt: np.ndarray, d_pred: np.ndarray, th: float, inclusive: bool) -> np.ndarray:
    if inclusive:
        prec, rec = (d_gt <= th), (d_pred <= th)
    else:
        prec, rec = (d_gt < th), (d_pred < th)
    prec = (prec * 1.0).mean(-1)
    rec = (rec * 1.0).mean(-1)
    den = prec + rec
    return np.where(den > 0, 2 * prec * rec / np.where(den > 0, den, 1.0), 0.0)


def f_scores(pred_verts: np.ndarray, gt_verts: np.ndarray, thresholds: Sequence[float],
             inclusive: bool = False) -> np.ndarray:
    """F-scores per sample and threshold: [B, T] (nearest neighbours computed once for all thresholds)."""
    d_gt, d_pred = nn_distances(pred_verts, gt_verts)
    out = np.stack([_fscore_from(d_gt, d_pred, float(t), inclusive) for t in thresholds], -1)
    return like_input(out, to_float(pred_verts))


def f_score(pred_verts: np.ndarray, gt_verts: np.ndarray, threshold: float, inclusive: bool = False) -> np.ndarray:
    """FreiHAND F-score per sample at ``threshold`` (input units; F@5mm: 0.005 m): [B, V, 3] -> [B] in [0, 1].

    precision = fraction of GT points whose nearest predicted point is closer than the threshold, recall = the
    same for predicted points; F = 2PR / (P + R), 0 when both are 0. Strict ``<`` as in FreiHAND's
    ``calculate_fscore`` unless ``inclusive``.
    """
    return f_scores(pred_verts, gt_verts, [threshold], inclusive=inclusive)[:, 0]


# ----------------------------------------------------------------------------------------------------------------
# dense labels and classification
# ----------------------------------------------------------------------------------------------------------------


def _labels_pair(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    p, g = np.asarray(pred), np.asarray(gt)
    if tuple(p.shape) != tuple(g.shape):
        raise CpcbenchError(f"miou: predicted labels {tuple(p.shape)} do not match GT labels {tuple(g.shape)}")
    if p.ndim < 2:
        raise CpcbenchError(f"miou: expected label maps [B, H, W] (or [B, N]), got {tuple(p.shape)}")
    if num_classes < 1:
        raise CpcbenchError(f"miou: num_classes must be >= 1, got {num_classes}")
    return p.reshape(p.shape[0], -1), g.reshape(g.shape[0], -1)


def intersection_union(pred_labels: np.ndarray, gt_labels: np.ndarray, num_classes: int,
                       ignore_index: int | None = 255) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample, per-class intersection and union pixel counts: [B, H, W] -> ([B, C], [B, C]).

    Pixels whose GT equals ``ignore_index`` (or lies outside [0, C)) are ignored; predicted labels outside [0, C)
    count as wrong. Sum both over samples and call ``miou_from_counts`` for the dataset-level mIoU.
    """
    p, g = _labels_pair(pred_labels, gt_labels, num_classes)
    C = num_classes
    B = p.shape[0]
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


def miou_from_counts(inter: np.ndarray, union: np.ndarray) -> tuple[float, np.ndarray]:
    """Dataset-level mIoU from summed counts: inter, union [C] (or [B, C], summed here) -> (mIoU, IoU per class).

    Classes with an empty union (absent from both prediction and GT everywhere) are NaN per class and left out of
    the mean, as in mmsegmentation's ``nanmean``.
    """
    i = np.asarray(inter, dtype=np.float64)
    u = np.asarray(union, dtype=np.float64)
    if i.ndim == 2:
        i, u = i.sum(0), u.sum(0)
    iou = np.full_like(i, np.nan)
    np.divide(i, u, out=iou, where=u > 0)
    if not np.isfinite(iou).any():
        raise CpcbenchError("miou: no class occurs in prediction or GT; nothing to score")
    return float(np.nanmean(iou)), iou


def miou(pred_labels: np.ndarray, gt_labels: np.ndarray, num_classes: int, ignore_index: int | None = 255,
         ignore_background: bool = False) -> np.ndarray:
    """Per-sample mIoU: for each sample, the mean IoU over classes present in its prediction or GT. [B, ...] -> [B].

    ignore_background: leave class 0 out of the mean over classes (part segmentation: mean over parts); its pixels
    still count, a background pixel predicted as part k enlarges k's union. A sample in which no (scored) class
    occurs in prediction or GT has nothing to get wrong and scores 1.0. The mean of per-sample mIoU is not the
    dataset-level mIoU of segmentation papers; for that sum ``intersection_union`` over the data set and use
    ``miou_from_counts`` (or ``confusion_matrix``).
    """
    inter, union = intersection_union(pred_labels, gt_labels, num_classes, ignore_index)
    present = union > 0
    if ignore_background:
        present[:, 0] = False
    n = present.sum(-1)
    fi = inter * 1.0
    fu = np.where(present, union * 1.0, np.ones_like(fi))
    total = (fi / fu * present).sum(-1)
    return np.where(n > 0, total / np.where(n > 0, n, 1), 1.0)


def confusion_matrix(pred_labels: np.ndarray, gt_labels: np.ndarray, num_classes: int,
                     ignore_index: int | None = 255) -> np.ndarray:
    """Dataset-level confusion matrix [C, C] (rows GT, columns prediction); predictions outside [0, C) dropped."""
    p, g = _labels_pair(pred_labels, gt_labels, num_classes)
    p, g = p.astype(np.int64).ravel(), g.astype(np.int64).ravel()
    keep = (g >= 0) & (g < num_classes) & (p >= 0) & (p < num_classes)
    if ignore_index is not None:
        keep &= g != ignore_index
    return np.bincount(g[keep] * num_classes + p[keep], minlength=num_classes ** 2).reshape(num_classes,
                                                                                           num_classes)


def accuracy(logits_or_labels: np.ndarray, labels: np.ndarray, k: int = 1) -> np.ndarray:
    """Per-sample correctness (1.0 or 0.0): logits [B, C] (top-k) or predicted labels [B] vs labels [B] -> [B]."""
    x = np.asarray(logits_or_labels)
    y = np.asarray(labels)
    if y.ndim != 1:
        raise CpcbenchError(f"accuracy: labels must be [B], got {tuple(y.shape)}")
    if x.shape[0] != y.shape[0]:
        raise CpcbenchError(f"accuracy: {x.shape[0]} predictions for {y.shape[0]} labels")
    if x.ndim == 2:
        if k < 1 or k > x.shape[1]:
            raise CpcbenchError(f"accuracy: k={k} must be between 1 and the number of classes {x.shape[1]}")
        check_finite(to_float(x), "logits")
        top = np.argsort(-x, axis=1, kind="stable")[:, :k]
        return (top == y[:, None]).any(1).astype(to_float(x).dtype)
    if x.ndim == 1:
        if k != 1:
            raise CpcbenchError("accuracy: top-k needs logits [B, C], not labels")
        return (x == y).astype(np.float64)
    raise CpcbenchError(f"accuracy: expected logits [B, C] or labels [B], got {tuple(x.shape)}")


# ---------------------------------------------------------------------------------------------- facing
def facing_yaw(rot: np.ndarray) -> np.ndarray:
    """Camera-frame root rotations [..., 3, 3] (body -> OpenCV camera) -> facing yaw [...] in degrees, (-180, 180]
    (module docstring: 0 = facing the camera, +90 = front towards the image's right)."""
    f = np.asarray(rot, np.float64)[..., :, 2]
    return np.degrees(np.arctan2(f[..., 0], -f[..., 2]))


def angle_diff(a_deg: np.ndarray, b_deg: np.ndarray) -> np.ndarray:
    """|a - b| wrapped to [0, 180] degrees."""
    d = np.abs(np.asarray(a_deg, np.float64) - np.asarray(b_deg, np.float64)) % 360.0
    return np.minimum(d, 360.0 - d)


def facing_error(pred_rot: np.ndarray, gt_rot: np.ndarray) -> np.ndarray:
    """Per-sample error [N] in degrees ([0, 180]) of the facing yaw (``facing_yaw``) of camera-frame root rotations
    [N, 3, 3]: how far the predicted body is turned about the camera's up axis from the true one."""
    return angle_diff(facing_yaw(pred_rot), facing_yaw(gt_rot))
