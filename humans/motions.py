"""Smooth motions of SMPL bodies and MANO right hands: keyframes from the pose samplers (``humans.poses``,
``humans.hand_poses``) interpolated per joint on SO(3) (scipy ``Slerp`` with eased timing, so velocity is
continuous and zero at keyframes). Everything is a function of the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from humans.hand_poses import GESTURES, sample_hand_orient, sample_hand_pose
from humans.poses import sample_motion_keys


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
    keys = sample_motion_keys(rng, k)
    t = np.arange(num_frames) / fps
    pose = np.stack([_slerp_track(keys[:, 3 * j:3 * j + 3], kt, t) for j in range(23)], 1).reshape(num_frames, 69)
    yaw0 = rng.uniform(-180, 180)
    yaw = yaw0 + np.cumsum(rng.normal(0.0, 30.0, k) * np.diff(kt, prepend=0.0))  # ~30 deg/s random walk
    tilt = rng.normal(0.0, 4.0, (k, 2))
    key_go = Rotation.from_euler("YXZ", np.column_stack([yaw, tilt]), degrees=True).as_rotvec()
    go = _slerp_track(key_go, kt, t)
    return {"global_orient": go.astype(np.float64), "body_pose": pose}



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


__all__ = ["body_motion", "hand_motion"]
