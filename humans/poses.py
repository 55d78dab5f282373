"""Pose samplers for SMPL bodies (axis-angle ``body_pose``, as smplx takes it) within per-joint limits.

Body joint limits are written per joint in the joint's parent-aligned frame (SMPL rest frames are world
aligned: y up, the body faces +z, its left is +x), for the left side; the right side is the mirror image
(a rotation vector (x, y, z) mirrors to (x, -y, -z)). Two kinds of joint:

* ``euler`` joints (spine, neck, head, collars, knees, ankles, feet, elbows, wrists, hands): three intrinsic
  Euler angles, largest-range axis first, each in a [lo, hi] range (degrees): knees and elbows bend one way.
* ``swing`` joints (hips, shoulders): the limb direction (hip: flexion and abduction angles of the thigh;
  shoulder: elevation above the horizontal and azimuth from lateral towards the front) plus a twist about the
  rest limb axis. ``rotation = swing(rest axis -> direction) * twist``.

``sample_body_pose`` draws from a mixture of pose families (standing, walking, reaching, sitting, squatting,
lunging, bending, waving, balancing; mirrored at random) with per-joint Gaussian noise, clipped to the limits,
and rejects poses a cheap capsule check finds self-penetrating (forearms/hands inside the torso or head,
crossing legs), resampling them. Everything is a function of the ``numpy.random.Generator`` passed in.
Hand poses are in ``humans.hand_poses``, smooth motions built from both samplers in ``humans.motions``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from humans.body_skeleton import MIRROR, PARENTS, RIGHT, rest_joints

# ----------------------------------------------------------------------------------------------- body limits


@dataclass(frozen=True)
class JointLimit:
    """Limits of one joint's three parameters (degrees): ``kind`` "euler" (``order`` intrinsic axes, e.g.
    "YXZ") or "swing" (``order`` "hip" or "shoulder": (angle1, angle2, twist))."""

    kind: str
    order: str
    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    mean: tuple[float, float, float]
    sd: tuple[float, float, float]


# Left-side (and central) joints, indexed by SMPL joint id. Right joints mirror their left partner.
BODY_LIMITS: dict[int, JointLimit] = {
    1: JointLimit("swing", "hip", (-25, -25, -35), (120, 50, 35), (5, 5, 0), (12, 5, 10)),
    3: JointLimit("euler", "XYZ", (-20, -25, -20), (35, 25, 20), (3, 0, 0), (5, 5, 3)),
    4: JointLimit("euler", "XYZ", (0, -5, -5), (140, 5, 5), (10, 0, 0), (8, 1, 1)),
    6: JointLimit("euler", "XYZ", (-20, -25, -20), (35, 25, 20), (2, 0, 0), (4, 5, 3)),
    7: JointLimit("euler", "XYZ", (-25, -20, -20), (45, 20, 20), (0, 0, 0), (7, 5, 5)),
    9: JointLimit("euler", "XYZ", (-20, -25, -20), (35, 25, 20), (2, 0, 0), (4, 5, 3)),
    10: JointLimit("euler", "XYZ", (-30, -5, -5), (25, 5, 5), (0, 0, 0), (5, 1, 1)),
    12: JointLimit("euler", "YXZ", (-40, -35, -25), (40, 40, 25), (0, 5, 0), (10, 8, 5)),
    13: JointLimit("euler", "ZYX", (-15, -20, -10), (25, 15, 10), (0, 0, 0), (4, 4, 3)),
    15: JointLimit("euler", "YXZ", (-45, -30, -25), (45, 35, 25), (0, 0, 0), (14, 8, 6)),
    16: JointLimit("swing", "shoulder", (-88, -45, -70), (85, 110, 70), (-65, 10, 0), (14, 18, 18)),
    18: JointLimit("euler", "YXZ", (-145, -40, -8), (0, 40, 8), (-20, 0, 0), (18, 12, 2)),
    20: JointLimit("euler", "ZYX", (-70, -25, -50), (60, 30, 50), (0, 0, 0), (15, 8, 15)),
    22: JointLimit("euler", "ZYX", (-60, -10, -10), (15, 10, 10), (-10, 0, 0), (12, 3, 3)),
}
_SWING_AXIS = {"hip": np.array([0.0, -1.0, 0.0]), "shoulder": np.array([1.0, 0.0, 0.0])}

# Pose families: per-joint means (left-joint parameter space; keys are SMPL joint ids, right joints listed
# with their own ids and mirrored on conversion), weight, whether to mirror at random.
_FAMILIES: list[tuple[str, float, dict[int, tuple[float, float, float]]]] = [
    ("stand", 2.0, {}),
    ("walk", 2.0, {1: (25, 4, 0), 2: (-15, 4, 0), 4: (15, 0, 0), 5: (40, 0, 0), 16: (-72, -20, 0),
                   17: (-72, 30, 0), 18: (-25, 0, 0), 19: (-35, 0, 0), 7: (5, 0, 0), 8: (15, 0, 0)}),
    ("reach_up", 1.0, {16: (55, 25, 0), 17: (55, 25, 0), 18: (-15, 0, 0), 19: (-15, 0, 0), 3: (-5, 0, 0)}),
    ("arms_out", 1.0, {16: (-5, 10, 0), 17: (-5, 10, 0), 18: (-10, 0, 0), 19: (-10, 0, 0)}),
    ("sit", 1.0, {1: (85, 10, 0), 2: (85, 10, 0), 4: (90, 0, 0), 5: (90, 0, 0), 16: (-62, 40, 0),
                  17: (-62, 40, 0), 18: (-65, 0, 0), 19: (-65, 0, 0), 3: (5, 0, 0)}),
    ("squat", 0.7, {1: (100, 20, 0), 2: (100, 20, 0), 4: (120, 0, 0), 5: (120, 0, 0), 7: (-18, 0, 0),
                    8: (-18, 0, 0), 3: (20, 0, 0), 6: (10, 0, 0), 16: (-15, 80, 0), 17: (-15, 80, 0),
                    18: (-10, 0, 0), 19: (-10, 0, 0)}),
    ("lunge", 0.8, {1: (75, 5, 0), 2: (-20, 5, 0), 4: (80, 0, 0), 5: (25, 0, 0), 7: (-10, 0, 0),
                    16: (-40, 30, 0), 17: (-40, 30, 0), 18: (-40, 0, 0), 19: (-40, 0, 0)}),
    ("bend", 0.8, {3: (25, 0, 0), 6: (15, 0, 0), 9: (10, 0, 0), 1: (35, 5, 0), 2: (35, 5, 0),
                   16: (-75, 60, 0), 17: (-75, 60, 0), 12: (0, 10, 0)}),
    ("wave", 1.0, {17: (40, 40, 0), 19: (-90, 0, 0), 21: (20, 0, 0), 16: (-75, 5, 0)}),
    ("balance", 0.7, {1: (60, 10, 0), 4: (70, 0, 0), 16: (-15, 10, 0), 17: (-15, 10, 0), 2: (0, 3, 0)}),
    ("cross_arms", 0.6, {16: (-50, 80, 0), 17: (-50, 80, 0), 18: (-110, 0, 0), 19: (-110, 0, 0)}),
]


def _mirror_rotvec(r: np.ndarray) -> np.ndarray:
    return r * np.array([1.0, -1.0, -1.0])


def _swing_dir(order: str, a1: np.ndarray, a2: np.ndarray) -> np.ndarray:
    a1, a2 = np.radians(a1), np.radians(a2)
    if order == "hip":  # a1 flexion (forward), a2 abduction (outwards, +x for the left leg)
        return np.stack([np.sin(a2), -np.cos(a2) * np.cos(a1), np.cos(a2) * np.sin(a1)], -1)
    elif order == "shoulder":  # a1 elevation above horizontal, a2 azimuth from lateral (+x) towards +z
        return np.stack([np.cos(a1) * np.cos(a2), np.sin(a1), np.cos(a1) * np.sin(a2)], -1)
    else:
        raise ValueError(f"unknown swing order {order!r}")


def _swing_angles(order: str, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = d / np.linalg.norm(d, axis=-1, keepdims=True)
    if order == "hip":
        a2 = np.degrees(np.arcsin(np.clip(d[:, 0], -1, 1)))
        a1 = np.degrees(np.arctan2(d[:, 2], -d[:, 1]))
        return a1, a2
    elif order == "shoulder":
        a1 = np.degrees(np.arcsin(np.clip(d[:, 1], -1, 1)))
        a2 = np.degrees(np.arctan2(d[:, 2], d[:, 0]))
        return a1, a2
    else:
        raise ValueError(f"unknown swing order {order!r}")


def _min_rotation(a: np.ndarray, b: np.ndarray) -> Rotation:
    """Rotations taking unit vector ``a`` [3] to each unit vector ``b`` [n, 3] along the great circle."""
    axis = np.cross(a[None], b)
    s = np.linalg.norm(axis, axis=1)
    c = b @ a
    ang = np.arctan2(s, c)
    safe = np.where(s[:, None] > 1e-9, axis / np.maximum(s, 1e-12)[:, None], 0.0)
    return Rotation.from_rotvec(safe * ang[:, None])


def params_to_rotvec(joint: int, p: np.ndarray) -> np.ndarray:
    """[n, 3] parameters (degrees) of left/central joint ``joint`` -> [n, 3] axis-angle."""
    lim = BODY_LIMITS[joint]
    if lim.kind == "euler":
        return Rotation.from_euler(lim.order, p, degrees=True).as_rotvec()
    elif lim.kind == "swing":
        axis = _SWING_AXIS[lim.order]
        d = _swing_dir(lim.order, p[:, 0], p[:, 1])
        twist = Rotation.from_rotvec(axis[None] * np.radians(p[:, 2:3]))
        return (_min_rotation(axis, d) * twist).as_rotvec()
    else:
        raise ValueError(f"unknown joint kind {lim.kind!r}")


def rotvec_to_params(joint: int, r: np.ndarray) -> np.ndarray:
    """Inverse of ``params_to_rotvec`` for a left/central joint: [n, 3] axis-angle -> [n, 3] degrees."""
    lim = BODY_LIMITS[joint]
    rot = Rotation.from_rotvec(r)
    if lim.kind == "euler":
        return rot.as_euler(lim.order, degrees=True)
    elif lim.kind == "swing":
        axis = _SWING_AXIS[lim.order]
        d = rot.apply(axis)
        a1, a2 = _swing_angles(lim.order, d)
        twist = _min_rotation(axis, d).inv() * rot
        tv = twist.as_rotvec()
        return np.stack([a1, a2, np.degrees(tv @ axis)], 1)
    else:
        raise ValueError(f"unknown joint kind {lim.kind!r}")


def body_pose_params(body_pose: np.ndarray) -> np.ndarray:
    """[n, 69] axis-angle -> [n, 23, 3] per-joint limit parameters (degrees; right joints mirrored to the left)."""
    body_pose = np.asarray(body_pose, dtype=np.float64).reshape(-1, 23, 3)
    out = np.zeros_like(body_pose)
    for j in range(1, 24):
        r = body_pose[:, j - 1]
        src = j
        if j in RIGHT:
            r, src = _mirror_rotvec(r), MIRROR[j]
        out[:, j - 1] = rotvec_to_params(src, r)
    return out


def within_body_limits(body_pose: np.ndarray, tol_deg: float = 0.5) -> np.ndarray:
    """[n] bool: every joint of each [n, 69] pose within ``BODY_LIMITS`` (to ``tol_deg``)."""
    p = body_pose_params(body_pose)
    ok = np.ones(len(p), dtype=bool)
    for j in range(1, 24):
        lim = BODY_LIMITS[MIRROR[j] if j in RIGHT else j]
        ok &= np.all((p[:, j - 1] >= np.array(lim.lo) - tol_deg) & (p[:, j - 1] <= np.array(lim.hi) + tol_deg), 1)
    return ok


def _sample_params(rng: np.random.Generator, n: int, families: np.ndarray, mirror: np.ndarray,
                   noise: float = 1.0) -> np.ndarray:
    """[n, 24, 3] parameters for each joint (index 0 unused), clipped to the limits."""
    out = np.zeros((n, 24, 3))
    eps = rng.standard_normal((n, 24, 3))
    for j in range(1, 24):
        src = MIRROR[j] if j in RIGHT else j
        lim = BODY_LIMITS[src]
        mean = np.tile(np.array(lim.mean, dtype=np.float64), (n, 1))
        for fi, (_, _, fam) in enumerate(_FAMILIES):
            sel = families == fi
            if not sel.any():
                continue
            # a mirrored family swaps left and right joints
            jj_plain, jj_mirr = j, MIRROR[j]
            for use_mirror, jj in ((False, jj_plain), (True, jj_mirr)):
                m = sel & (mirror == use_mirror)
                if m.any() and jj in fam:
                    mean[m] = fam[jj]
        p = mean + noise * eps[:, j] * np.array(lim.sd)
        out[:, j] = np.clip(p, lim.lo, lim.hi)
    return out


def _params_to_pose(p: np.ndarray) -> np.ndarray:
    n = len(p)
    pose = np.zeros((n, 23, 3))
    for j in range(1, 24):
        if j in RIGHT:
            pose[:, j - 1] = _mirror_rotvec(params_to_rotvec(MIRROR[j], p[:, j]))
        else:
            pose[:, j - 1] = params_to_rotvec(j, p[:, j])
    return pose.reshape(n, 69)


# ----------------------------------------------------------------------------------------------- penetration
def body_fk(body_pose: np.ndarray, global_orient: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Forward kinematics of the neutral rest skeleton: positions [n, 24, 3] and rotations [n, 24, 3, 3]."""
    body_pose = np.asarray(body_pose, dtype=np.float64).reshape(-1, 23, 3)
    n = len(body_pose)
    go = np.zeros((n, 3)) if global_orient is None else np.asarray(global_orient, dtype=np.float64)
    local = Rotation.from_rotvec(np.concatenate([go[:, None], body_pose], 1).reshape(-1, 3)).as_matrix()
    local = local.reshape(n, 24, 3, 3)
    rest = rest_joints()
    pos = np.zeros((n, 24, 3))
    rot = np.zeros((n, 24, 3, 3))
    for j in range(24):
        p = PARENTS[j]
        if p < 0:
            rot[:, j] = local[:, j]
            pos[:, j] = rest[j]
        else:
            rot[:, j] = rot[:, p] @ local[:, j]
            pos[:, j] = pos[:, p] + np.einsum("nab,b->na", rot[:, p], rest[j] - rest[p])
    return pos, rot


def _seg_points(a: np.ndarray, b: np.ndarray, ts: np.ndarray) -> np.ndarray:
    return a[:, None] + ts[None, :, None] * (b - a)[:, None]


def self_penetrating(body_pose: np.ndarray) -> np.ndarray:
    """[n] bool from a cheap capsule check: forearm/hand points inside the torso or head, or the legs crossing
    through each other."""
    pos, rot = body_fk(body_pose)
    n = len(pos)
    bad = np.zeros(n, dtype=bool)
    ts = np.linspace(0.0, 1.0, 5)
    arm_pts = []
    for el, wr, hd in ((18, 20, 22), (19, 21, 23)):
        arm_pts.append(_seg_points(pos[:, el], pos[:, wr], ts))
        arm_pts.append(pos[:, hd][:, None])
    pts = np.concatenate(arm_pts, 1)  # [n, P, 3]
    # torso: elliptic cylinders along the spine segments in each segment's frame
    for a, b, rx, rz in ((0, 3, 0.14, 0.10), (3, 6, 0.13, 0.095), (6, 9, 0.14, 0.10), (9, 12, 0.13, 0.09)):
        q = np.einsum("nba,npb->npa", rot[:, a], pts - pos[:, a][:, None])
        seg = np.einsum("nba,nb->na", rot[:, a], pos[:, b] - pos[:, a])
        length = np.linalg.norm(seg, axis=1)[:, None]
        t = q[..., 1] / length
        inside = (t > 0) & (t < 1) & ((q[..., 0] / rx) ** 2 + (q[..., 2] / rz) ** 2 < 1.0)
        bad |= inside.any(1)
    # head sphere
    hc = pos[:, 15] + np.einsum("nab,b->na", rot[:, 15], np.array([0.0, 0.07, 0.01]))
    bad |= (np.linalg.norm(pts - hc[:, None], axis=2) < 0.10).any(1)
    # legs: left vs right thigh (below the hips) and shin
    ts2 = np.linspace(0.3, 1.0, 6)
    lt = np.concatenate([_seg_points(pos[:, 1], pos[:, 4], ts2), _seg_points(pos[:, 4], pos[:, 7], ts)], 1)
    rt = np.concatenate([_seg_points(pos[:, 2], pos[:, 5], ts2), _seg_points(pos[:, 5], pos[:, 8], ts)], 1)
    d = np.linalg.norm(lt[:, :, None] - rt[:, None], axis=3)
    bad |= d.min(axis=(1, 2)) < 0.09
    # hands/forearms inside the thighs
    for hip, knee in ((1, 4), (2, 5)):
        thigh = _seg_points(pos[:, hip], pos[:, knee], np.linspace(0.15, 1.0, 5))
        bad |= (np.linalg.norm(pts[:, :, None] - thigh[:, None], axis=3) < 0.07).any(axis=(1, 2))
    return bad


# ----------------------------------------------------------------------------------------------- body API
def _family_draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    w = np.array([f[1] for f in _FAMILIES])
    fam = rng.choice(len(_FAMILIES), size=n, p=w / w.sum())
    mirror = rng.random(n) < 0.5
    return fam, mirror


def _sample_valid(rng: np.random.Generator, fam: np.ndarray, mirror: np.ndarray, noise: float = 1.0) -> np.ndarray:
    n = len(fam)
    pose = _params_to_pose(_sample_params(rng, n, fam, mirror, noise))
    bad = self_penetrating(pose)
    for _ in range(30):
        if not bad.any():
            break
        idx = np.flatnonzero(bad)
        pose[idx] = _params_to_pose(_sample_params(rng, len(idx), fam[idx], mirror[idx], noise))
        bad[idx] = self_penetrating(pose[idx])
    if bad.any():  # fall back to the family means (no noise), which pass the check
        idx = np.flatnonzero(bad)
        pose[idx] = _params_to_pose(_sample_params(rng, len(idx), fam[idx], mirror[idx], 0.0))
    return pose


def sample_body_pose(rng: np.random.Generator, n: int) -> np.ndarray:
    """[n, 69] SMPL ``body_pose`` axis-angle within ``BODY_LIMITS`` and free of the cheap self-penetration
    check (``self_penetrating``)."""
    fam, mirror = _family_draw(rng, n)
    return _sample_valid(rng, fam, mirror)


def sample_global_orient(rng: np.random.Generator, n: int) -> np.ndarray:
    """[n, 3] axis-angle: yaw uniform in [-180, 180) degrees, mostly upright (tilt ~ N(0, 5 deg); 10 % of
    samples N(0, 20 deg))."""
    yaw = rng.uniform(-180.0, 180.0, n)
    big = rng.random(n) < 0.1
    sd = np.where(big, 20.0, 5.0)
    pitch = rng.standard_normal(n) * sd
    roll = rng.standard_normal(n) * sd * 0.8
    return Rotation.from_euler("YXZ", np.stack([yaw, pitch, roll], 1), degrees=True).as_rotvec()

def sample_motion_keys(rng: np.random.Generator, n: int, families: int = 2, noise: float = 0.8) -> np.ndarray:
    """[n, 69] keyframe poses of one motion (``humans.motions.body_motion``): ``families`` pose families drawn
    once, each key from one of them at random, with ``noise`` times the per-joint spread."""
    fam, mirror = _family_draw(rng, families)
    which = rng.integers(0, families, size=n)
    return _sample_valid(rng, fam[which], mirror[which], noise=noise)


__all__ = ["BODY_LIMITS", "body_fk", "body_pose_params", "params_to_rotvec", "rotvec_to_params", "sample_body_pose",
           "sample_global_orient", "sample_motion_keys", "self_penetrating", "within_body_limits"]
