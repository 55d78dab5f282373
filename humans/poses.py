"""Pose samplers and smooth motions for SMPL bodies and MANO right hands (axis-angle, as smplx takes them).

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
crossing legs), resampling them. Hand poses: MANO joints (1-3 index, 4-6 middle, 7-9 pinky, 10-12 ring,
13-15 thumb), each with flexion/abduction/twist limits in its own anatomical frame, sampled as a gesture
prototype plus noise. Motions are keyframes from these samplers interpolated per joint on SO(3) (scipy
``Slerp`` with eased timing, so velocity is continuous and zero at keyframes). Everything is a function of
the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from humans.body_model import MIRROR, PARENTS, RIGHT, rest_joints

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


def _ease(t: np.ndarray) -> np.ndarray:
    """Per-segment smoothstep of keyframe time (integer part = segment): C1 with zero speed at keys."""
    k = np.floor(t)
    f = t - k
    return k + f * f * (3 - 2 * f)


def _slerp_track(key_rotvecs: np.ndarray, key_times: np.ndarray, times: np.ndarray) -> np.ndarray:
    """[K, 3] key rotations at ``key_times`` [K] -> [T, 3] eased per-segment slerp at ``times``."""
    seg = np.clip(np.searchsorted(key_times, times, side="right") - 1, 0, len(key_times) - 2)
    frac = (times - key_times[seg]) / (key_times[seg + 1] - key_times[seg])
    u = _ease(seg + np.clip(frac, 0.0, 1.0))
    u = np.minimum(u, len(key_times) - 1)
    slerp = Slerp(np.arange(len(key_times), dtype=np.float64), Rotation.from_rotvec(key_rotvecs))
    return slerp(u).as_rotvec()


def _key_times(rng: np.random.Generator, duration: float, lo: float, hi: float) -> np.ndarray:
    times = [0.0]
    while times[-1] < duration:
        times.append(times[-1] + rng.uniform(lo, hi))
    return np.array(times)


def body_motion(rng: np.random.Generator, num_frames: int, fps: float = 30.0) -> dict[str, np.ndarray]:
    """A smooth motion: ``global_orient`` [T, 3] and ``body_pose`` [T, 69]. Keyframes every 0.6-1.4 s drawn by
    the pose sampler (one or two pose families per motion), a slowly drifting heading, eased slerp per joint."""
    if num_frames < 1:
        raise ValueError("num_frames must be >= 1")
    duration = (num_frames - 1) / fps
    kt = _key_times(rng, duration, 0.6, 1.4)
    k = len(kt)
    fam, mirror = _family_draw(rng, 2)
    which = rng.integers(0, 2, size=k)
    keys = _sample_valid(rng, fam[which], mirror[which], noise=0.8)
    t = np.arange(num_frames) / fps
    pose = np.stack([_slerp_track(keys[:, 3 * j:3 * j + 3], kt, t) for j in range(23)], 1).reshape(num_frames, 69)
    yaw0 = rng.uniform(-180, 180)
    yaw = yaw0 + np.cumsum(rng.normal(0.0, 30.0, k) * np.diff(kt, prepend=0.0))  # ~30 deg/s random walk
    tilt = rng.normal(0.0, 4.0, (k, 2))
    key_go = Rotation.from_euler("YXZ", np.column_stack([yaw, tilt]), degrees=True).as_rotvec()
    go = _slerp_track(key_go, kt, t)
    return {"global_orient": go.astype(np.float64), "body_pose": pose}


# ----------------------------------------------------------------------------------------------- hands
# MANO rest frame: fingers along -x, palm facing -y, thumb towards +z. Per joint frame (u1 twist axis along
# the bone, u2 abduction axis, u3 flexion axis); flexion closes the finger towards the palm.
_THUMB_DIR = np.array([-0.64, 0.0, 0.77]) / np.linalg.norm([-0.64, 0.0, 0.77])
_THUMB_FLEX = np.cross(_THUMB_DIR, [0.0, -1.0, 0.0])
_FINGER_FRAME = np.stack([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]], 1)  # columns u1=x, u2=y, u3=z
_THUMB_FRAME = np.stack([np.cross([0, 1.0, 0], _THUMB_FLEX), [0, 1.0, 0], _THUMB_FLEX], 1)
# (flex, abd, twist) limits in degrees, per level: MCP/PIP/DIP for fingers, CMC/MCP/IP for the thumb.
_FINGER_LIM = [((-15, -20, -8), (90, 20, 8)), ((0, -3, -3), (110, 3, 3)), ((0, -3, -3), (80, 3, 3))]
_THUMB_LIM = [((-15, -45, -30), (60, 25, 40)), ((-10, -8, -8), (60, 8, 8)), ((-15, -5, -5), (85, 5, 5))]
HAND_LIMITS: list[tuple[tuple[float, ...], tuple[float, ...]]] = _FINGER_LIM * 4 + _THUMB_LIM
_FINGER_OF = {"index": 0, "middle": 1, "pinky": 2, "ring": 3, "thumb": 4}

GESTURES: list[str] = ["open", "fist", "point", "pinch", "ok", "victory", "grasp_cylinder", "grasp_sphere"]

_CURLED = ((85, 0, 0), (100, 0, 0), (60, 0, 0))
_STRAIGHT = ((0, 0, 0), (0, 0, 0), (0, 0, 0))
_THUMB_TUCK = ((40, -30, 20), (40, 0, 0), (50, 0, 0))


def _g(index, middle, ring, pinky, thumb, spread=(0, 0, 0, 0)):
    """Prototype [15, 3] (flex, abd, twist) from per-finger (3 levels x 3) tuples plus MCP abduction."""
    p = np.zeros((15, 3))
    for name, val, sp in (("index", index, spread[0]), ("middle", middle, spread[1]), ("ring", ring, spread[2]),
                          ("pinky", pinky, spread[3])):
        f = _FINGER_OF[name]
        p[3 * f:3 * f + 3] = np.array(val, dtype=np.float64)
        p[3 * f, 1] += sp
    p[12:15] = np.array(thumb, dtype=np.float64)
    return p


_PROTOTYPES: list[np.ndarray] = [
    _g(_STRAIGHT, _STRAIGHT, _STRAIGHT, _STRAIGHT, ((0, 5, 0), (0, 0, 0), (0, 0, 0)), (8, 0, -6, -12)),
    _g(_CURLED, _CURLED, _CURLED, _CURLED, _THUMB_TUCK),
    _g(_STRAIGHT, _CURLED, _CURLED, _CURLED, _THUMB_TUCK),
    _g(((45, 0, 0), (45, 0, 0), (20, 0, 0)), ((70, 0, 0), (85, 0, 0), (50, 0, 0)), ((75, 0, 0), (90, 0, 0), (55, 0, 0)),
       ((80, 0, 0), (95, 0, 0), (55, 0, 0)), ((45, -30, 22), (2, 0, 0), (8, 0, 0))),
    _g(((55, 0, 0), (60, 0, 0), (35, 0, 0)), ((5, 0, 0), (5, 0, 0), (5, 0, 0)), ((5, 0, 0), (5, 0, 0), (5, 0, 0)),
       ((5, 0, 0), (5, 0, 0), (5, 0, 0)), ((35, -25, 25), (25, 0, 0), (20, 0, 0)), (0, -5, -12, -20)),
    _g(_STRAIGHT, _STRAIGHT, _CURLED, _CURLED, _THUMB_TUCK, (14, -10, 0, 0)),
    _g(((50, 0, 0), (60, 0, 0), (30, 0, 0)), ((50, 0, 0), (60, 0, 0), (30, 0, 0)), ((50, 0, 0), (60, 0, 0), (30, 0, 0)),
       ((50, 0, 0), (60, 0, 0), (30, 0, 0)), ((25, 3, 30), (15, 0, 0), (20, 0, 0))),
    _g(((35, 0, 0), (40, 0, 0), (20, 0, 0)), ((35, 0, 0), (40, 0, 0), (20, 0, 0)), ((35, 0, 0), (40, 0, 0), (20, 0, 0)),
       ((35, 0, 0), (40, 0, 0), (20, 0, 0)), ((40, 0, 25), (18, 0, 0), (16, 0, 0)), (12, 0, -10, -18)),
]
_HAND_SD = np.array([7.0, 4.0, 3.0])


def _hand_frames() -> np.ndarray:
    return np.stack([_FINGER_FRAME] * 12 + [_THUMB_FRAME] * 3)  # [15, 3, 3]


def hand_params_to_pose(p: np.ndarray) -> np.ndarray:
    """[n, 15, 3] (flex, abd, twist) degrees -> [n, 45] MANO ``hand_pose`` (axis-angle, flat-hand relative)."""
    n = len(p)
    frames = _hand_frames()
    out = np.zeros((n, 15, 3))
    for j in range(15):
        local = Rotation.from_euler("ZYX", p[:, j], degrees=True).as_matrix()  # flex (u3), abd (u2), twist (u1)
        f = frames[j]
        out[:, j] = Rotation.from_matrix(f[None] @ local @ f.T[None]).as_rotvec()
    return out.reshape(n, 45)


def hand_pose_params(hand_pose: np.ndarray) -> np.ndarray:
    """Inverse of ``hand_params_to_pose``: [n, 45] -> [n, 15, 3] degrees."""
    r = np.asarray(hand_pose, dtype=np.float64).reshape(-1, 15, 3)
    frames = _hand_frames()
    out = np.zeros_like(r)
    for j in range(15):
        m = Rotation.from_rotvec(r[:, j]).as_matrix()
        f = frames[j]
        out[:, j] = Rotation.from_matrix(f.T[None] @ m @ f[None]).as_euler("ZYX", degrees=True)
    return out


def within_hand_limits(hand_pose: np.ndarray, tol_deg: float = 0.5) -> np.ndarray:
    """[n] bool: every finger joint within ``HAND_LIMITS``."""
    p = hand_pose_params(hand_pose)
    lo = np.array([lim[0] for lim in HAND_LIMITS])
    hi = np.array([lim[1] for lim in HAND_LIMITS])
    return np.all((p >= lo - tol_deg) & (p <= hi + tol_deg), axis=(1, 2))


def sample_hand_pose(rng: np.random.Generator, n: int, gesture: int | None = None,
                     noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """``hand_pose`` [n, 45] (MANO right hand, flat-hand relative axis-angle) and gesture labels [n] (index into
    ``GESTURES``; all ``gesture`` if given, else uniform). Prototype + Gaussian noise, clipped to limits."""
    if gesture is None:
        labels = rng.integers(0, len(GESTURES), size=n)
    else:
        if not 0 <= int(gesture) < len(GESTURES):
            raise ValueError(f"gesture {gesture} out of range 0..{len(GESTURES) - 1} ({GESTURES})")
        labels = np.full(n, int(gesture))
    protos = np.stack(_PROTOTYPES)[labels]
    p = protos + noise * rng.standard_normal((n, 15, 3)) * _HAND_SD
    # a shared "openness" factor per sample varies the articulation between grasp-like and open
    open_f = np.clip(1.0 + 0.12 * rng.standard_normal((n, 1, 1)), 0.7, 1.3)
    p[..., 0] *= open_f[..., 0]
    lo = np.array([lim[0] for lim in HAND_LIMITS])
    hi = np.array([lim[1] for lim in HAND_LIMITS])
    p = np.clip(p, lo, hi)
    return hand_params_to_pose(p), labels.astype(np.int64)


def sample_hand_orient(rng: np.random.Generator, n: int) -> np.ndarray:
    """[n, 3] axis-angle, uniform on SO(3) (hands are seen from every side)."""
    q = rng.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return Rotation.from_quat(q).as_rotvec()


def hand_motion(rng: np.random.Generator, num_frames: int, fps: float = 30.0) -> dict[str, np.ndarray]:
    """Transitions between gestures: each gesture is held for 0.4-0.9 s (drifting slightly), then the hand moves
    to the next one in 0.25-0.5 s. Returns ``global_orient`` [T, 3] (a random start orientation, turning by
    ~20 degrees per keyframe), ``hand_pose`` [T, 45], ``labels`` [T] (the gesture being held, or during a
    transition the nearer of the two) and ``stable`` [T] bool (True while a gesture is held)."""
    if num_frames < 1:
        raise ValueError("num_frames must be >= 1")
    duration = (num_frames - 1) / fps
    kt, key_gesture, holds = [0.0], [], []
    g = int(rng.integers(0, len(GESTURES)))
    while True:
        hold = rng.uniform(0.4, 0.9)
        holds.append((kt[-1], kt[-1] + hold))
        kt.append(kt[-1] + hold)
        key_gesture += [g, g]
        if kt[-1] >= duration:
            break
        kt.append(kt[-1] + rng.uniform(0.25, 0.5))
        g = int((g + rng.integers(1, len(GESTURES))) % len(GESTURES))  # a different gesture
    kt = np.array(kt)
    key_gesture = np.array(key_gesture, dtype=np.int64)
    k = len(kt)
    keys = np.stack([sample_hand_pose(rng, 1, int(kg), noise=0.8)[0][0] for kg in key_gesture])
    t = np.arange(num_frames) / fps
    pose = np.stack([_slerp_track(keys[:, 3 * j:3 * j + 3], kt, t) for j in range(15)], 1).reshape(num_frames, 45)
    start = Rotation.from_rotvec(sample_hand_orient(rng, 1))
    steps = Rotation.from_rotvec(rng.normal(0.0, np.radians(12.0), (k, 3)))
    key_go = [start]
    for i in range(1, k):
        key_go.append(steps[i] * key_go[-1])
    go = _slerp_track(Rotation.concatenate(key_go).as_rotvec(), kt, t)
    nearest = np.abs(t[:, None] - kt[None]).argmin(1)
    stable = np.zeros(num_frames, dtype=bool)
    for a, b in holds:
        stable |= (t >= a) & (t <= b)
    return {"global_orient": go, "hand_pose": pose, "labels": key_gesture[nearest], "stable": stable}


__all__ = ["BODY_LIMITS", "GESTURES", "HAND_LIMITS", "body_motion", "hand_motion", "sample_body_pose",
           "sample_global_orient", "sample_hand_orient", "sample_hand_pose", "self_penetrating",
           "within_body_limits", "within_hand_limits"]
