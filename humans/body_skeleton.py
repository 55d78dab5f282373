"""The skeleton and shape space of the procedural SMPL-format body (``humans.body_model``): SMPL's 24 joints
(names, kinematic tree, designed rest positions, left/right mirror), the 14 body parts, the H36M-17 joint
names, and the multiplicative shape factors the 10 betas scale.

Shape space (10 betas, each about one standard deviation per unit; plausible range about ±2):
0 stature (+4.5 % size per unit), 1 girth (all widths), 2 leg length, 3 shoulder width, 4 hip width,
5 arm length, 6 torso length, 7 head size, 8 belly/chest depth, 9 limb thickness.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

JOINT_NAMES: list[str] = [
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle", "right_ankle",
    "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand", "right_hand",
]
PARENTS: list[int] = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]

# Neutral rest joints (T-pose, pelvis at the origin, metres): close to SMPL's neutral template joints.
# Only the left side is listed; the right side mirrors x.
_REST_LEFT = {
    0: (0.0, 0.0, 0.0), 1: (0.069, -0.091, -0.004), 3: (0.0, 0.114, -0.026), 4: (0.105, -0.453, 0.008),
    6: (0.0, 0.248, -0.001), 7: (0.088, -0.857, -0.047), 9: (0.0, 0.310, 0.001), 10: (0.118, -0.919, 0.090),
    12: (0.0, 0.519, -0.041), 13: (0.077, 0.425, -0.031), 15: (0.0, 0.607, 0.019), 16: (0.163, 0.456, -0.046),
    18: (0.414, 0.443, -0.070), 20: (0.667, 0.449, -0.069), 22: (0.750, 0.442, -0.082),
}
LEFT = [1, 4, 7, 10, 13, 16, 18, 20, 22]
RIGHT = [2, 5, 8, 11, 14, 17, 19, 21, 23]
MIRROR = list(range(24))
for _l, _r in zip(LEFT, RIGHT, strict=True):
    MIRROR[_l], MIRROR[_r] = _r, _l


def rest_joints() -> np.ndarray:
    """The designed neutral rest joints [24, 3] (before shape)."""
    j = np.zeros((24, 3))
    for i, p in _REST_LEFT.items():
        j[i] = p
    for l, r in zip(LEFT, RIGHT, strict=True):
        j[r] = j[l] * np.array([-1.0, 1.0, 1.0])
    return j


PART_NAMES: list[str] = [
    "head", "torso", "left_upper_arm", "right_upper_arm", "left_lower_arm", "right_lower_arm", "left_hand",
    "right_hand", "left_upper_leg", "right_upper_leg", "left_lower_leg", "right_lower_leg", "left_foot",
    "right_foot",
]
# ids 1..14 in PART_NAMES order (0 = background)
PART_IDS: dict[str, int] = {n: i + 1 for i, n in enumerate(PART_NAMES)}

H36M_NAMES: list[str] = [
    "pelvis", "left_hip", "left_knee", "left_ankle", "right_hip", "right_knee", "right_ankle", "spine", "thorax",
    "nose", "headtop", "left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow", "right_wrist",
]


@dataclass(frozen=True)
class BodyShape:
    """Multiplicative shape factors (1 = neutral). Field order = beta order."""

    stature: float = 1.0
    girth: float = 1.0
    leg: float = 1.0
    shoulder: float = 1.0
    hip: float = 1.0
    arm: float = 1.0
    torso: float = 1.0
    head: float = 1.0
    belly: float = 1.0
    limb: float = 1.0


BETA_SIGMA = (0.045, 0.10, 0.05, 0.06, 0.06, 0.05, 0.05, 0.05, 0.15, 0.08)
GENDERS: dict[str, BodyShape] = {
    "neutral": BodyShape(),
    "male": BodyShape(stature=1.035, girth=1.02, shoulder=1.07, hip=0.96, limb=1.05, belly=1.0),
    "female": BodyShape(stature=0.955, girth=0.96, shoulder=0.91, hip=1.08, limb=0.93, head=0.98, belly=0.95),
}


GENDER_CHEST = {"neutral": 1.0, "male": 0.8, "female": 2.0}  # front chest bulge factor


def shape_with_betas(base: BodyShape, betas: np.ndarray) -> BodyShape:
    vals = {f.name: getattr(base, f.name) * (1.0 + s * float(b))
            for f, s, b in zip(fields(BodyShape), BETA_SIGMA, betas, strict=True)}
    return replace(base, **vals)


def shaped_joints(s: BodyShape) -> np.ndarray:
    """Rest joints for a shape: hierarchical offsets scaled per segment (before the global stature scale)."""
    r = rest_joints()
    j = np.zeros_like(r)
    for i in range(24):
        p = PARENTS[i]
        if p < 0:
            j[i] = r[i]
            continue
        off = r[i] - r[p]
        f = np.ones(3)
        if i in (1, 2):
            f = np.array([s.hip, 1.0, 1.0])
        elif i in (4, 5, 7, 8):
            f = np.array([1.0, s.leg, 1.0])
        elif i in (3, 6, 9, 12):
            f = np.array([1.0, s.torso, 1.0])
        elif i in (13, 14):
            f = np.array([s.shoulder, s.torso, 1.0])
        elif i in (16, 17):
            f = np.array([s.shoulder, 1.0, 1.0])
        elif i in (18, 19, 20, 21, 22, 23):
            f = np.array([s.arm, 1.0, 1.0])
        elif i == 15:
            f = np.array([1.0, s.head, s.head])
        j[i] = j[p] + off * f
    return j

