"""Pose samplers and motions: limits, self-penetration check, determinism, smoothness, distinct gestures."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from humans import hand_poses, motions, poses


def _step_angles(track: np.ndarray, dim: int) -> np.ndarray:
    """[T, J*3] axis-angle -> [T-1, J] rotation angle between consecutive frames (degrees)."""
    t, n = track.shape[0], track.shape[1] // 3
    r = Rotation.from_rotvec(track.reshape(-1, 3))
    a = r[: (t - 1) * n]
    b = r[n:]
    return np.degrees((a.inv() * b).magnitude()).reshape(t - 1, n)


def prototype_params(gesture: int) -> np.ndarray:
    """[15, 3] limit parameters of a gesture's noise-free prototype."""
    pose = hand_poses.sample_hand_pose(np.random.default_rng(0), 1, gesture, noise=0.0)[0]
    return hand_poses.hand_pose_params(pose)[0]


def test_body_pose_within_limits_and_not_penetrating():
    p = poses.sample_body_pose(np.random.default_rng(1), 400)
    assert p.shape == (400, 69) and np.isfinite(p).all()
    assert poses.within_body_limits(p).all()
    assert not poses.self_penetrating(p).any()
    params = poses.body_pose_params(p)
    assert (params[:, 4 - 1, 0] >= -0.5).all() and (params[:, 5 - 1, 0] >= -0.5).all()  # knees bend backwards only
    assert (params[:, 18 - 1, 0] <= 0.5).all() and (params[:, 19 - 1, 0] <= 0.5).all()  # elbows (mirrored) one way
    # varied: knee flexion and shoulder elevation spread widely across samples
    assert np.ptp(params[:, 3, 0]) > 60 and np.ptp(params[:, 15, 0]) > 90


def test_limit_and_penetration_checks_can_fail():
    bad = np.zeros((2, 69))
    bad[0, 3 * (4 - 1)] = np.radians(-40)  # left knee bent forwards
    bad[1, 3 * (18 - 1) + 1] = np.radians(60)  # left elbow bent backwards
    assert not poses.within_body_limits(bad).any()
    # left arm swung across the chest at shoulder height with the elbow bent into the torso
    p = np.zeros((1, 24, 3))
    p[0, 16] = (0.0, 110.0, 0.0)
    p[0, 18] = (-120.0, 0.0, 0.0)
    inside = poses._params_to_pose(p)
    assert poses.self_penetrating(inside).all()
    assert not poses.self_penetrating(np.zeros((1, 69))).any()


@pytest.mark.parametrize("joint", sorted(poses.BODY_LIMITS))
def test_param_round_trip(joint):
    lim = poses.BODY_LIMITS[joint]
    rng = np.random.default_rng(joint)
    lo, hi = np.array(lim.lo), np.array(lim.hi)
    p = lo + (hi - lo) * rng.uniform(0.05, 0.95, (50, 3))
    if lim.kind == "swing" and lim.order == "shoulder":
        p = p[np.abs(p[:, 0]) < 80]  # azimuth is undefined at the poles
    back = poses.rotvec_to_params(joint, poses.params_to_rotvec(joint, p))
    np.testing.assert_allclose(back, p, atol=1e-6)


def test_determinism():
    for fn in (lambda r: poses.sample_body_pose(r, 20), lambda r: poses.sample_global_orient(r, 20),
               lambda r: motions.body_motion(r, 40)["body_pose"], lambda r: hand_poses.sample_hand_pose(r, 20)[0],
               lambda r: motions.hand_motion(r, 40)["hand_pose"]):
        np.testing.assert_array_equal(fn(np.random.default_rng(7)), fn(np.random.default_rng(7)))
    assert not np.array_equal(poses.sample_body_pose(np.random.default_rng(7), 5),
                              poses.sample_body_pose(np.random.default_rng(8), 5))


def test_global_orient_mostly_upright_with_varied_yaw():
    go = poses.sample_global_orient(np.random.default_rng(0), 2000)
    up = Rotation.from_rotvec(go).apply([0.0, 1.0, 0.0])
    assert np.mean(up[:, 1] > np.cos(np.radians(20))) > 0.85
    fwd = Rotation.from_rotvec(go).apply([0.0, 0.0, 1.0])
    yaw = np.degrees(np.arctan2(fwd[:, 0], fwd[:, 2]))
    assert np.histogram(yaw, bins=8, range=(-180, 180))[0].min() > 150


def test_body_motion_is_smooth_and_moves():
    m = motions.body_motion(np.random.default_rng(3), 120, fps=30)
    assert m["global_orient"].shape == (120, 3) and m["body_pose"].shape == (120, 69)
    step = _step_angles(m["body_pose"], 23)
    assert step.max() < 12.0  # degrees per frame at 30 fps
    acc = np.abs(np.diff(step, axis=0))
    assert acc.max() < 3.0  # no jumps in angular speed
    assert step.sum(0).max() > 20  # something moves
    assert _step_angles(m["global_orient"], 1).max() < 5.0
    assert poses.within_body_limits(m["body_pose"][::10], tol_deg=8).mean() > 0.9


def test_hand_poses_limits_labels_gestures():
    hp, labels = hand_poses.sample_hand_pose(np.random.default_rng(0), 300)
    assert hp.shape == (300, 45) and labels.shape == (300,)
    assert set(np.unique(labels)) == set(range(len(hand_poses.GESTURES)))
    assert hand_poses.within_hand_limits(hp).all()
    hp3, l3 = hand_poses.sample_hand_pose(np.random.default_rng(0), 10, gesture=3)
    assert (l3 == 3).all()
    with pytest.raises(ValueError):
        hand_poses.sample_hand_pose(np.random.default_rng(0), 1, gesture=len(hand_poses.GESTURES))
    # fist is more closed than open; finger flexion of every gesture differs from every other gesture
    params = np.stack([prototype_params(g) for g in range(len(hand_poses.GESTURES))])
    flex = params[:, :, 0]
    assert flex[hand_poses.GESTURES.index("fist")].sum() > flex[hand_poses.GESTURES.index("open")].sum() + 500
    d = np.linalg.norm(params.reshape(len(params), -1)[:, None] - params.reshape(len(params), -1)[None], axis=2)
    assert d[~np.eye(len(params), dtype=bool)].min() > 40


def test_hand_motion_smooth():
    m = motions.hand_motion(np.random.default_rng(2), 90)
    assert m["hand_pose"].shape == (90, 45) and m["global_orient"].shape == (90, 3) and m["labels"].shape == (90,)
    assert _step_angles(m["hand_pose"], 15).max() < 15.0
    assert _step_angles(m["global_orient"], 1).max() < 8.0
    assert m["stable"].mean() > 0.5 and len(np.unique(m["labels"])) >= 2
    # while a gesture is held the pose stays close to that gesture's prototype (no noise) more than to others'
    n = len(hand_poses.GESTURES)
    protos = np.stack([prototype_params(g) for g in range(n)]).reshape(n, -1)
    held = hand_poses.hand_pose_params(m["hand_pose"][m["stable"]]).reshape(int(m["stable"].sum()), -1)
    closest = np.linalg.norm(held[:, None] - protos[None], axis=2).argmin(1)
    assert np.mean(closest == m["labels"][m["stable"]]) > 0.9
