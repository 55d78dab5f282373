"""Pose samplers for MANO right hands (axis-angle ``hand_pose`` relative to the flat hand, as smplx takes it).

MANO joints (1-3 index, 4-6 middle, 7-9 pinky, 10-12 ring, 13-15 thumb), each with flexion/abduction/twist
limits in its own anatomical frame, sampled as a gesture prototype (:data:`GESTURES`) plus noise. Everything is
a function of the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

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


#: camera-relative rotations (MANO's rest frame -> OpenCV camera axes) of a hand held up to the camera, fingers up
#: in the image (MANO -x -> camera -y) and the palm (MANO -y) or the back of the hand towards the camera (-z)
_PALM_TO_CAMERA = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
_BACK_TO_CAMERA = np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def front_views(rng: np.random.Generator, n: int, tilt_deg: float = 45.0, roll_deg: float = 45.0) -> np.ndarray:
    """[n, 3, 3] camera-relative hand rotations (``R_camera @ R_hand``) of a hand seen from the front: the palm or
    the back towards the camera (even odds), tilted away from it by up to ``tilt_deg`` (uniform over that cap of
    view directions, about a random axis in the image plane) and rolled in the image by up to +-``roll_deg``
    (fingers up within that)."""
    side = np.where(rng.random(n) < 0.5, 0, 1)
    canon = np.stack([_PALM_TO_CAMERA, _BACK_TO_CAMERA])[side]
    cos_t = 1.0 - rng.random(n) * (1.0 - np.cos(np.radians(tilt_deg)))  # uniform on the spherical cap
    psi = rng.uniform(0.0, 2 * np.pi, n)
    axis = np.stack([np.cos(psi), np.sin(psi), np.zeros(n)], 1)
    tilt = Rotation.from_rotvec(axis * np.arccos(cos_t)[:, None])
    spin = np.radians(rng.uniform(-roll_deg, roll_deg, n))
    roll = Rotation.from_rotvec(np.stack([np.zeros(n), np.zeros(n), spin], 1))
    return (roll * tilt).as_matrix() @ canon


__all__ = ["GESTURES", "HAND_LIMITS", "front_views", "hand_params_to_pose", "hand_pose_params", "sample_hand_orient",
           "sample_hand_pose", "within_hand_limits"]
