"""Metrics: hand-worked cases, properties, parity with slow per-sample references, degenerate input.

The references below are written from the published formulas (SPIN/HMR ``compute_similarity_transform``,
FreiHAND ``align_w_scale`` via ``scipy.linalg.orthogonal_procrustes``, FreiHAND ``EvalUtil.get_measures`` and
``calculate_fscore``), one sample at a time, so they share no code with ``tasks.metrics``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.linalg import orthogonal_procrustes
from scipy.spatial.transform import Rotation

from core.errors import CpcbenchError
from tasks import metrics as M

# ------------------------------------------------------------------------------------------------------------
# slow references (one sample at a time)
# ------------------------------------------------------------------------------------------------------------


def ref_kabsch_align(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Body family: Umeyama/Kabsch with det fix (3 x N formulation of SPIN/HMR)."""
    S1, S2 = pred.T, gt.T
    mu1, mu2 = S1.mean(1, keepdims=True), S2.mean(1, keepdims=True)
    X1, X2 = S1 - mu1, S2 - mu2
    var1 = np.sum(X1 ** 2)
    K = X1 @ X2.T
    U, _, Vh = np.linalg.svd(K)
    V = Vh.T
    Z = np.eye(3)
    Z[-1, -1] = np.sign(np.linalg.det(U @ V.T))
    R = V @ Z @ U.T
    scale = np.trace(R @ K) / var1
    t = mu2 - scale * (R @ mu1)
    return (scale * R @ S1 + t).T


def ref_align_w_scale(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Hand family: FreiHAND's normalise-then-orthogonal-Procrustes alignment (reflections allowed)."""
    t1, t2 = gt.mean(0), pred.mean(0)
    g, p = gt - t1, pred - t2
    s1 = np.linalg.norm(g) + 1e-8
    s2 = np.linalg.norm(p) + 1e-8
    g, p = g / s1, p / s2
    R, s = orthogonal_procrustes(g, p)
    return (p @ R.T) * s * s1 + t1


def ref_pa_mpjpe(pred: np.ndarray, gt: np.ndarray, allow_reflection: bool) -> np.ndarray:
    align = ref_align_w_scale if allow_reflection else ref_kabsch_align
    return np.array([np.linalg.norm(align(p, g) - g, axis=-1).mean() for p, g in zip(pred, gt, strict=True)])


def ref_fscore(pred: np.ndarray, gt: np.ndarray, th: float) -> float:
    d = np.linalg.norm(gt[:, None] - pred[None], axis=-1)  # [Vg, Vp]
    d1, d2 = d.min(1), d.min(0)  # each GT point -> pred, each pred point -> GT
    recall, precision = np.mean(d2 < th), np.mean(d1 < th)
    return 0.0 if recall + precision == 0 else 2 * recall * precision / (recall + precision)


def ref_auc_per_keypoint(err: np.ndarray, lo: float, hi: float, steps: int) -> float:
    """FreiHAND EvalUtil: per keypoint PCK curve (d <= t), trapz / trapz(ones), then mean over keypoints."""
    thr = np.linspace(lo, hi, steps)
    norm = np.trapezoid(np.ones_like(thr), thr)
    aucs = [np.trapezoid([np.mean(err[:, k] <= t) for t in thr], thr) / norm for k in range(err.shape[1])]
    return float(np.mean(aucs))


def random_similarity(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    R = Rotation.random(n, random_state=rng.integers(1 << 31)).as_matrix()
    s = rng.uniform(0.2, 5.0, n)
    t = rng.normal(size=(n, 3)) * 3
    return s, R, t


def apply(x: np.ndarray, s: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    return s[:, None, None] * np.einsum("bij,bkj->bki", R, x) + t[:, None]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


# ------------------------------------------------------------------------------------------------------------
# hand-worked cases
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("allow_reflection", [False, True])
def test_known_similarity_recovers_to_zero(rng, allow_reflection):
    gt = rng.normal(size=(16, 14, 3))
    s, R, t = random_similarity(rng, 16)
    pred = apply(gt, 1 / s, R.transpose(0, 2, 1), -t)  # any similarity of the GT
    err = M.pa_mpjpe(pred, gt, allow_reflection=allow_reflection)
    assert type(err) is type(pred) and tuple(err.shape) == (16,)
    assert float(abs(err).max()) < 1e-9
    # and the transform itself is recovered: aligned = gt
    aligned = M.procrustes_align(pred, gt, allow_reflection=allow_reflection)
    assert float(abs(aligned - gt).max()) < 1e-9


def test_similarity_transform_returns_the_inverse_transform(rng):
    gt = rng.normal(size=(8, 10, 3))
    s, R, t = random_similarity(rng, 8)
    pred = apply(gt, s, R, t)
    s_hat, R_hat, t_hat = M.similarity_transform(pred, gt)
    np.testing.assert_allclose(s_hat, 1 / s, rtol=1e-9)
    np.testing.assert_allclose(R_hat, R.transpose(0, 2, 1), atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(R_hat), 1.0, atol=1e-9)
    np.testing.assert_allclose(M.apply_transform(pred, s_hat, R_hat, t_hat), gt, atol=1e-9)


def test_mirrored_prediction_needs_reflection(rng):
    gt = rng.normal(size=(6, 21, 3))
    mirrored = gt * np.array([-1.0, 1.0, 1.0])
    with_refl = M.pa_mpjpe(mirrored, gt, allow_reflection=True)
    without = M.pa_mpjpe(mirrored, gt, allow_reflection=False)
    assert with_refl.max() < 1e-9
    assert without.min() > 0.1  # clearly positive: a rotation cannot undo a mirror
    np.testing.assert_allclose(without, ref_pa_mpjpe(mirrored, gt, False), rtol=1e-9, atol=1e-12)


def test_masked_joints_are_excluded(rng):
    gt = rng.normal(size=(5, 14, 3))
    pred = gt + 0.1 * rng.normal(size=gt.shape)
    valid = np.ones((5, 14), bool)
    valid[:, [3, 7]] = False
    valid[2, 0] = False
    pred_bad, gt_bad = pred.copy(), gt.copy()
    pred_bad[~valid] = 1e6
    gt_bad[~valid] = np.nan  # NaN in masked joints must not leak
    for b in range(5):
        keep = valid[b]
        want_pa = ref_pa_mpjpe(pred[b:b + 1, keep], gt[b:b + 1, keep], False)[0]
        want = np.linalg.norm(pred[b, keep] - gt[b, keep], axis=-1).mean()
        assert M.pa_mpjpe(pred_bad, gt_bad, valid=valid)[b] == pytest.approx(want_pa, rel=1e-9)
        assert M.mpjpe(pred_bad, gt_bad, valid=valid)[b] == pytest.approx(want, rel=1e-12)
    # per-sample averaging (SPIN) differs from mean over valid pairs (mmhuman3d): the sample with fewer joints
    per_sample = M.mpjpe(pred_bad, gt_bad, valid=valid).mean()
    pairs = np.linalg.norm(pred - gt, axis=-1)[valid].mean()
    assert per_sample != pytest.approx(pairs, rel=1e-12)


def test_mpjpe_roots(rng):
    gt = rng.normal(size=(4, 24, 3))
    pred = gt + rng.normal(size=(4, 1, 3))  # pure translation
    assert M.mpjpe(pred, gt, root=0).max() < 1e-12
    assert M.mpjpe(pred, gt, root=[1, 2]).max() < 1e-12
    assert M.mpjpe(pred, gt).min() > 0
    pred2 = pred.copy()
    pred2[:, 5] += np.array([0.3, 0.4, 0.0])  # one joint off by 0.5
    np.testing.assert_allclose(M.mpjpe(pred2, gt, root=[1, 2]), 0.5 / 24)
    with pytest.raises(CpcbenchError, match="root"):
        M.mpjpe(pred, gt, root=[1, 2], valid=np.arange(24)[None].repeat(4, 0) != 1)


def test_pck_threshold_boundaries():
    gt = np.zeros((1, 4, 3))
    pred = np.array([[[3.0, 4.0, 0.0], [0.0, 0.0, 1.0], [0.0, 6.0, 0.0], [0.0, 0.0, 0.0]]])  # errors 5, 1, 6, 0
    assert M.pck(pred, gt, 5.0, inclusive=True)[0] == pytest.approx(3 / 4)
    assert M.pck(pred, gt, 5.0, inclusive=False)[0] == pytest.approx(2 / 4)
    assert M.pck(pred, gt, 0.5, normalize=np.array([10.0]))[0] == pytest.approx(3 / 4)
    valid = np.array([[True, True, False, False]])
    assert M.pck(pred, gt, 5.0, inclusive=False, valid=valid)[0] == pytest.approx(1 / 2)
    with pytest.raises(CpcbenchError, match="normalize"):
        M.pck(pred, gt, 0.5, normalize=np.array([0.0]))


def test_auc_boundaries_and_values():
    # thresholds linspace(0, 50, 6) = 0, 10, ..., 50
    assert M.auc(np.array([[0.0]]), 0, 50, 6)[0] == pytest.approx(1.0)
    assert M.auc(np.array([[60.0]]), 0, 50, 6)[0] == pytest.approx(0.0)
    # error exactly on a threshold: inclusive counts it there, exclusive from the next one
    inc = M.auc(np.array([[20.0]]), 0, 50, 6, inclusive=True)[0]
    exc = M.auc(np.array([[20.0]]), 0, 50, 6, inclusive=False)[0]
    assert inc == pytest.approx(np.trapezoid([0, 0, 1, 1, 1, 1], dx=10) / 50)
    assert exc == pytest.approx(np.trapezoid([0, 0, 0, 1, 1, 1], dx=10) / 50)
    # MPI-INF-3DHP: mean of the PCK curve over 0:5:150, strict
    e = np.array([[0.0, 5.0, 149.0, 151.0]])
    want = np.mean([np.mean(e[0] < t) for t in np.linspace(0, 150, 31)])
    assert M.auc(e, 0, 150, 31, inclusive=False, integrate="mean")[0] == pytest.approx(want)
    with pytest.raises(CpcbenchError, match="integrate"):
        M.auc(e, 0, 150, 31, integrate="simpson")


def test_scale_translation_align_ho3d():
    gt = np.random.default_rng(5).normal(size=(3, 21, 3))
    pred = 2.5 * gt + np.array([1.0, 2.0, 3.0])  # scaled and shifted, no rotation: recovered exactly
    np.testing.assert_allclose(M.scale_translation_align(pred, gt), gt, atol=1e-12)
    for b in range(3):  # one sample at a time, from the formula
        p = pred[b] / np.linalg.norm(pred[b, 4] - pred[b, 0]) * np.linalg.norm(gt[b, 4] - gt[b, 0])
        np.testing.assert_allclose(M.scale_translation_align(pred, gt)[b], p - p[0] + gt[b, 0], atol=1e-12)
    flat = np.zeros_like(gt)  # zero bone length: only translated (times the GT bone length, as the script)
    assert np.all(np.isfinite(M.scale_translation_align(flat, gt)))


def test_fscore_hand_worked():
    gt = np.array([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]])
    pred = gt.copy()
    pred[0, 3] = [0, 0, 3]  # 2 away from its GT point, 3 from the others' nearest
    # GT->pred: 0,0,0, and gt[3] to nearest pred = min(|(0,0,1)-(0,0,0)|=1, ...)=1 ; pred->GT: 0,0,0,2
    assert M.f_score(pred, gt, 0.5)[0] == pytest.approx(2 * 0.75 * 0.75 / 1.5)
    # strict threshold: a distance of exactly 1 does not count at th=1, counts inclusive
    p_ = 0.75  # precision: d_gt = [0, 0, 0, 1]
    r_ = 0.75  # recall: d_pred = [0, 0, 0, 2]
    assert M.f_score(pred, gt, 1.0)[0] == pytest.approx(2 * p_ * r_ / (p_ + r_))
    assert M.f_score(pred, gt, 1.0, inclusive=True)[0] == pytest.approx(2 * 1.0 * 0.75 / 1.75)
    far = gt + 100.0
    assert M.f_score(far, gt, 0.5)[0] == 0.0


# ------------------------------------------------------------------------------------------------------------
# properties
# ------------------------------------------------------------------------------------------------------------

finite = st.floats(-2.0, 2.0, allow_nan=False, allow_infinity=False)


@st.composite
def pose_pairs(draw):
    J = draw(st.integers(4, 17))
    seed = draw(st.integers(0, 2 ** 31 - 1))
    noise = draw(st.sampled_from([0.0, 0.01, 0.3, 2.0]))
    r = np.random.default_rng(seed)
    gt = r.normal(size=(3, J, 3))
    pred = gt + noise * r.normal(size=gt.shape) + r.normal(size=(3, 1, 3))
    return pred, gt, r


@settings(max_examples=60, deadline=None)
@given(pose_pairs(), st.booleans())
def test_pa_mpjpe_invariant_to_similarity_of_pred(data, allow_reflection):
    pred, gt, r = data
    s, R, t = random_similarity(r, pred.shape[0])
    moved = apply(pred, s, R, t)
    a = M.pa_mpjpe(pred, gt, allow_reflection=allow_reflection)
    b = M.pa_mpjpe(moved, gt, allow_reflection=allow_reflection)
    np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(pose_pairs(), st.integers(0, 3))
def test_pa_bounded_by_root_aligned_error(data, root):
    """Procrustes minimises the *squared* error over all similarities, which include 'subtract the root'.

    Hence PA-RMSE <= root-aligned RMSE and PA-MPJPE <= PA-RMSE <= root-aligned RMSE always. PA-MPJPE <=
    root-aligned MPJPE (mean of norms) is NOT a theorem: see ``test_pa_mpjpe_can_exceed_root_mpjpe``.
    """
    pred, gt, _ = data
    aligned = M.procrustes_align(pred, gt)
    pa_rmse = np.sqrt(((aligned - gt) ** 2).sum(-1).mean(-1))
    rp, rg = pred - pred[:, root:root + 1], gt - gt[:, root:root + 1]
    root_rmse = np.sqrt(((rp - rg) ** 2).sum(-1).mean(-1))
    assert np.all(pa_rmse <= root_rmse + 1e-9)
    assert np.all(M.pa_mpjpe(pred, gt) <= root_rmse + 1e-9)
    aligned_refl = M.procrustes_align(pred, gt, allow_reflection=True)  # a larger family: lower squared error
    assert np.all(np.sqrt(((aligned_refl - gt) ** 2).sum(-1).mean(-1)) <= pa_rmse + 1e-9)


def test_pa_mpjpe_can_exceed_root_mpjpe():
    """One far outlier: the least-squares fit spreads its error over all joints (documented, not a bug)."""
    r = np.random.default_rng(3)
    gt = r.normal(size=(200, 6, 3))
    pred = gt.copy()
    pred[:, 4] += r.normal(size=(200, 3)) * 5
    assert np.any(M.pa_mpjpe(pred, gt) > M.mpjpe(pred, gt, root=0))


# ------------------------------------------------------------------------------------------------------------
# parity with the slow references
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("allow_reflection", [False, True])
def test_pa_mpjpe_parity(rng, allow_reflection):
    B = 300
    gt = rng.normal(size=(B, 14, 3)) * 0.3
    noise = rng.choice([0.001, 0.05, 0.5, 3.0], size=(B, 1, 1))
    pred = gt + noise * rng.normal(size=gt.shape) + rng.normal(size=(B, 1, 3))
    pred[:60] *= np.array([1.0, -1.0, 1.0])  # mirrored: det(M) < 0, exercises the Kabsch det fix
    pred[60:70, :, 2] = 0.05 * rng.normal(size=(10, 14))  # nearly planar predictions (ill-conditioned)
    want = ref_pa_mpjpe(pred, gt, allow_reflection)
    got = M.pa_mpjpe(pred, gt, allow_reflection=allow_reflection)
    # FreiHAND adds 1e-8 to each norm before normalising: an O(1e-8) relative change in the scale
    np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-8 if allow_reflection else 1e-12)


def test_aligned_points_match_reference(rng):
    gt = rng.normal(size=(20, 21, 3))
    pred = gt + 0.2 * rng.normal(size=gt.shape)
    pred[:5] *= -1  # point reflection (det -1)
    for b in range(20):
        np.testing.assert_allclose(M.procrustes_align(pred, gt)[b], ref_kabsch_align(pred[b], gt[b]), atol=1e-9)
        np.testing.assert_allclose(M.procrustes_align(pred, gt, allow_reflection=True)[b],
                                   ref_align_w_scale(pred[b], gt[b]), atol=1e-7)


def test_fscore_parity(rng):
    B, V = 6, 120
    gt = rng.normal(size=(B, V, 3)) * 0.03
    pred = gt + rng.normal(size=(B, V, 3)) * rng.choice([0.001, 0.004, 0.01], size=(B, 1, 1))
    pred = pred[:, : V - 7]  # the point sets may differ in size
    got = M.f_scores(pred, gt, [0.005, 0.015])
    want = np.array([[ref_fscore(p, g, th) for th in (0.005, 0.015)] for p, g in zip(pred, gt, strict=True)])
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_auc_parity_with_freihand_evalutil(rng):
    err = np.abs(rng.normal(size=(50, 21))) * 0.02  # metres
    err[3, 4] = 0.05 / 99 * 17  # exactly on a threshold
    want = ref_auc_per_keypoint(err, 0.0, 0.05, 100)
    got = M.auc(err, 0.0, 0.05, 100)
    assert got.shape == (50,)
    assert got.mean() == pytest.approx(want, abs=1e-12)
    thr, curve = M.pck_curve(err, 0.0, 0.05, 100)
    np.testing.assert_allclose(curve, [np.mean(err <= t) for t in thr])


def test_pve_and_pa_pve(rng):
    gtv = rng.normal(size=(3, 50, 3))
    predv = gtv + 0.01 * rng.normal(size=gtv.shape)
    np.testing.assert_allclose(M.pve(predv, gtv), np.linalg.norm(predv - gtv, axis=-1).mean(-1))
    rp, rg = predv[:, 0] + 1.0, gtv[:, 0] - 2.0
    np.testing.assert_allclose(M.pve(predv, gtv, rp, rg),
                               np.linalg.norm((predv - rp[:, None]) - (gtv - rg[:, None]), axis=-1).mean(-1))
    with pytest.raises(CpcbenchError, match="both"):
        M.pve(predv, gtv, root_pred=rp)
    # EMDB: transform estimated on joints, applied to vertices
    gtj, predj = gtv[:, :10], predv[:, :10] * 1.5
    s, R, t = M.similarity_transform(predj, gtj)
    want = np.linalg.norm(M.apply_transform(predv, s, R, t) - gtv, axis=-1).mean(-1)
    np.testing.assert_allclose(M.pa_pve(predv, gtv, transform_from=(predj, gtj)), want)
    np.testing.assert_allclose(M.pa_pve(predv, gtv), ref_pa_mpjpe(predv, gtv, False), rtol=1e-8)


def test_miou_and_accuracy(rng):
    pred = rng.integers(0, 4, size=(5, 9, 7))
    gt = rng.integers(0, 4, size=(5, 9, 7))
    gt[0, 0, :3] = 255  # ignored
    per = M.miou(pred, gt, 4)
    for b in range(5):
        keep = gt[b] != 255
        ious = []
        for c in range(4):
            inter = np.sum((pred[b] == c) & (gt[b] == c) & keep)
            union = np.sum(((pred[b] == c) | (gt[b] == c)) & keep)
            if union:
                ious.append(inter / union)
        assert per[b] == pytest.approx(np.mean(ious))
    inter, union = M.intersection_union(pred, gt, 4)
    cm = M.confusion_matrix(pred, gt, 4)
    iou_cm = np.diag(cm) / (cm.sum(0) + cm.sum(1) - np.diag(cm))
    miou_ds, iou = M.miou_from_counts(inter, union)
    np.testing.assert_allclose(iou, iou_cm)
    assert miou_ds == pytest.approx(iou_cm.mean())
    # part segmentation: background left out of the class mean, but its pixels still count
    p1 = np.array([[[0, 1], [1, 2]]])
    g1 = np.array([[[0, 0], [1, 2]]])
    assert M.miou(p1, g1, 3, ignore_background=True)[0] == pytest.approx((1 / 2 + 1) / 2)
    assert M.miou(p1, g1, 3)[0] == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)
    assert M.miou(np.zeros((1, 2, 2), int), np.zeros((1, 2, 2), int), 3, ignore_background=True)[0] == 1.0

    logits = np.array([[0.1, 0.9, 0.0], [0.8, 0.15, 0.05], [0.3, 0.2, 0.5]])
    labels = np.array([1, 1, 1])
    np.testing.assert_array_equal(M.accuracy(logits, labels), [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(M.accuracy(logits, labels, k=2), [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(M.accuracy(np.array([1, 2, 1]), labels), [1.0, 0.0, 1.0])


# ------------------------------------------------------------------------------------------------------------
# degenerate input
# ------------------------------------------------------------------------------------------------------------


def test_all_zero_prediction_aligns_to_gt_mean(rng):
    gt = rng.normal(size=(4, 24, 3))
    zero = np.zeros_like(gt)
    want = np.linalg.norm(gt - gt.mean(1, keepdims=True), axis=-1).mean(-1)  # 3DPW challenge special case
    for refl in (False, True):
        got = M.pa_mpjpe(zero, gt, allow_reflection=refl)
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, want, rtol=1e-12)
    assert np.all(M.f_score(np.zeros((2, 30, 3)), gt[:2], 0.005) >= 0)


def test_nan_and_shape_errors(rng):
    gt = rng.normal(size=(3, 14, 3))
    bad = gt.copy()
    bad[1, 2, 0] = np.nan
    for fn in (M.pa_mpjpe, M.mpjpe, M.pve, M.pa_pve, M.procrustes_align):
        with pytest.raises(CpcbenchError, match="NaN"):
            fn(bad, gt)
        with pytest.raises(CpcbenchError, match="shape"):
            fn(gt[:, :10], gt)
    with pytest.raises(CpcbenchError, match="NaN"):
        M.f_score(bad, gt, 0.01)
    with pytest.raises(CpcbenchError, match="NaN"):
        M.auc(np.array([[np.nan]]), 0, 1, 10)
    with pytest.raises(CpcbenchError, match="valid"):
        M.mpjpe(gt, gt, valid=np.ones((3, 13), bool))
    with pytest.raises(CpcbenchError, match="no valid joints"):
        M.pa_mpjpe(gt, gt, valid=np.zeros((3, 14), bool))
    with pytest.raises(CpcbenchError, match="labels"):
        M.accuracy(np.zeros((3, 4)), np.zeros((2,)))


def test_empty_batch_gives_empty_result():
    e = np.zeros((0, 14, 3))
    for fn in (M.pa_mpjpe, M.mpjpe, M.pve, M.pa_pve):
        out = fn(e, e)
        assert out.shape == (0,)
    assert M.procrustes_align(e, e).shape == (0, 14, 3)
    assert M.pck(e, e, 1.0).shape == (0,)
    assert M.auc(np.zeros((0, 21)), 0, 50, 100).shape == (0,)
    assert M.f_score(np.zeros((0, 7, 3)), np.zeros((0, 7, 3)), 0.005).shape == (0,)


def test_emdb_flow_parity(rng):
    """eth-ait/emdb compute_positional_errors: hip-midpoint centring (joints 1, 2) of joints and vertices, Procrustes
    on the 24 joints, the same transform applied to the vertices."""
    B = 4
    gj = rng.normal(size=(B, 24, 3))
    gv = rng.normal(size=(B, 60, 3))
    s, R, t = random_similarity(rng, B)
    pj = apply(gj, s, R, t) + 0.05 * rng.normal(size=gj.shape)
    pv = apply(gv, s, R, t) + 0.05 * rng.normal(size=gv.shape)
    hip_p, hip_g = pj[:, 1:3].mean(1), gj[:, 1:3].mean(1)
    pjc, gjc = pj - hip_p[:, None], gj - hip_g[:, None]
    pvc, gvc = pv - hip_p[:, None], gv - hip_g[:, None]
    want_mve, want_mve_pa = [], []
    for b in range(B):
        S1, S2 = pjc[b].T, gjc[b].T
        mu1, mu2 = S1.mean(1, keepdims=True), S2.mean(1, keepdims=True)
        K = (S1 - mu1) @ (S2 - mu2).T
        U, _, Vh = np.linalg.svd(K)
        Z = np.eye(3)
        Z[-1, -1] = np.sign(np.linalg.det(U @ Vh))
        Rb = Vh.T @ Z @ U.T
        sc = np.trace(Rb @ K) / np.sum((S1 - mu1) ** 2)
        vhat = (sc * Rb @ pvc[b].T + (mu2 - sc * Rb @ mu1)).T
        want_mve_pa.append(np.linalg.norm(vhat - gvc[b], axis=1).mean())
        want_mve.append(np.linalg.norm(pvc[b] - gvc[b], axis=1).mean())
    np.testing.assert_allclose(M.pve(pv, gv, hip_p, hip_g), want_mve, rtol=1e-12)
    np.testing.assert_allclose(M.pa_pve(pvc, gvc, transform_from=(pjc, gjc)), want_mve_pa, rtol=1e-9)
    np.testing.assert_allclose(M.mpjpe(pj, gj, root=[1, 2]), np.linalg.norm(pjc - gjc, axis=-1).mean(-1), rtol=1e-12)
