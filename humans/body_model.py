"""A procedurally generated body in the SMPL file format (Loper et al., "SMPL: A Skinned Multi-Person Linear
Model", SIGGRAPH Asia 2015), loadable by ``smplx.SMPL``.

Layout (the arrays a real SMPL pickle holds, as plain numpy): ``v_template`` [6890, 3], ``f`` [F, 3],
``weights`` [6890, 24], ``J_regressor`` [24, 6890], ``kintree_table`` [2, 24], ``shapedirs`` [6890, 3, 10],
``posedirs`` [6890, 3, 207] (zeros: no pose correctives). Extra keys (ignored by smplx): ``part_of_vertex``
[6890], ``part_names``, ``J_regressor_h36m`` [17, 6890], ``generator``.

Geometry: T-pose, metres, y up, the body faces +z, its left is +x, the pelvis joint at the origin, about
1.72 m tall (neutral). The rest joints follow SMPL's kinematic tree, joint names and roughly its rest
joint positions. The surface is a *union of watertight parts* (not one merged surface): torso, neck, head,
nose, per side an arm tube (collar to wrist), a palm, four fingers and a thumb, a leg tube (hip to ankle)
and a foot; each part is a closed generalised cylinder (``humans.meshkit``). Parts overlap near joints and
skinning weights blend over a few centimetres along each limb's axis around every joint.

The vertex count is exactly 6890 and the vertices that smplx reads as extra keypoints (SMPL-H ids: nose 332,
eyes 6260/2800, ears 4071/583, fingertips, big/small toes and heels) are placed on the nose tip, the eyes,
the ears, the five fingertips of each hand and the toes/heels, so plain ``smplx.SMPL`` works unchanged and
its 45 output joints are meaningful. Each of the 24 joints is the mean of one ring of vertices around the
limb at that joint (``J_regressor`` rows are convex), so regressing the template gives the rest joints and
the joints follow any shape change.

Shape space (10 betas, each about one standard deviation per unit; plausible range about ±2):
0 stature (+4.5 % size per unit), 1 girth (all widths), 2 leg length, 3 shoulder width, 4 hip width,
5 arm length, 6 torso length, 7 head size, 8 belly/chest depth, 9 limb thickness. ``shapedirs`` are the
central differences of the generator at ±1, so they are linear directions around the template.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from humans import meshkit as mk

JOINT_NAMES: list[str] = [
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle", "right_ankle",
    "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand", "right_hand",
]
PARENTS: list[int] = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]
NUM_VERTS = 6890
SMOOTH_ITERS = 10  # diffusion steps that smooth the skinning weights along the surface

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
_PART = {n: i + 1 for i, n in enumerate(PART_NAMES)}

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


def _shaped_joints(s: BodyShape) -> np.ndarray:
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


@dataclass
class _Built:
    verts: np.ndarray
    faces: np.ndarray
    parts: list[mk.Part]
    joints: np.ndarray
    joint_rings: dict[int, np.ndarray]  # joint -> global vertex ids of its ring
    special: dict[str, int]  # smplx extra keypoint name -> global vertex id
    weights: np.ndarray | None = None
    part_of_vertex: np.ndarray | None = None
    h36m_sets: dict[int, np.ndarray] | None = None


def _build(s: BodyShape, with_weights: bool, chest: float = 1.0) -> _Built:
    """The body mesh for shape ``s`` (fixed topology for every shape)."""
    J = _shaped_joints(s)
    g, lg = s.girth, s.girth * s.limb
    parts: list[mk.Part] = []
    ring_of: dict[int, tuple[int, int]] = {}  # joint -> (part index, main ring index)
    X = np.array([1.0, 0, 0])
    Y = np.array([0, 1.0, 0])
    Z = np.array([0, 0, 1.0])

    # torso: along y, rings at pelvis, spine1..3
    y_bot = J[0, 1] - 0.09 * s.torso
    y_top = J[16, 1] - 0.02
    keys = np.array([[0, y_bot, 0.0], J[0], J[3], J[6], J[9], [0, y_top, -0.035]])
    hw = np.array([0.135 * s.hip, 0.163 * s.hip, 0.140 * (0.5 * s.hip + 0.5 * s.shoulder), 0.150 * s.shoulder,
                   0.160 * s.shoulder, 0.170 * s.shoulder]) * g
    hd = np.array([0.080, 0.100, 0.088 * s.belly, 0.100 * s.belly, 0.102, 0.070]) * g
    nps = [2, 4, 4, 2, 4]
    pts, vals = mk.interp_stations(keys, np.stack([hw, hd], 1), nps)
    kr = mk.key_ring_index(nps, len(keys))
    # buttocks, belly and chest: front/back bulges between the joint rings (ring axes: u = +x, w = -z)
    n_torso = 44
    th = 2 * np.pi * np.arange(n_torso) / n_torso
    back, front = np.clip(np.sin(th), 0, None), np.clip(-np.sin(th), 0, None)
    bump = lambda c, wdt: np.exp(-0.5 * ((np.arange(len(pts)) - c) / wdt) ** 2)  # noqa: E731
    tb = (0.10 * bump(kr[0] + 1.2, 1.0)[:, None] * back[None] ** 2
          + 0.05 * (s.belly - 0.7) * bump(kr[1] + 2, 1.2)[:, None] * front[None] ** 2
          + 0.07 * chest * bump(kr[3] + 1, 1.2)[:, None] * front[None] ** 2
          + 0.04 * bump(kr[4] + 1.5, 1.2)[:, None] * back[None] ** 2)
    torso = mk.tube("torso", pts, vals[:, 0], vals[:, 1], X, n_torso, exponent=2.4, cap0=0.055, cap1=0.065 * g,
                    bulge=1.0 + tb)
    parts.append(torso)
    for jid, ki in zip([0, 3, 6, 9], kr[1:5], strict=True):
        ring_of[jid] = (0, ki)

    # neck: from inside the torso through the neck joint into the head
    neck_top = np.array([0.0, J[15, 1] + 0.01, J[15, 2] - 0.01])
    keys = np.array([[0, J[9, 1] + 0.10, J[12, 2] + 0.012], J[12], neck_top])
    nps = [3, 4]
    pts, vals = mk.interp_stations(keys, np.array([[0.052, 0.045], [0.052, 0.050], [0.050, 0.050]]) * g, nps)
    neck = mk.tube("neck", pts, vals[:, 0], vals[:, 1], X, 20, cap0=0.02, cap1=0.02)
    parts.append(neck)
    ring_of[12] = (1, mk.key_ring_index(nps, 3)[1])

    # head: an ellipsoid along y with one ring exactly at the head joint
    hs = s.head
    ch = np.array([0.0, J[12, 1] + 0.155 * hs, J[15, 2] - 0.004])
    H, Rx, Rz = 0.108 * hs, 0.076 * hs, 0.094 * hs
    psi_j = np.arcsin(np.clip((J[15, 1] - ch[1]) / H, -0.99, 0.99))
    psis = np.sort(np.concatenate([np.linspace(-np.pi / 2 + 0.12, np.pi / 2 - 0.12, 21), [psi_j]]))
    jrow = int(np.argmin(np.abs(psis - psi_j)))
    centers = np.stack([np.zeros_like(psis), ch[1] + H * np.sin(psis), np.full_like(psis, J[15, 2])], 1)
    # back of the skull fuller at the top, face narrower at the jaw; symmetric under a half turn only at the
    # joint ring (there the bulge is 1)
    n_head = 28
    th = 2 * np.pi * np.arange(n_head) / n_head
    back = np.clip(np.sin(th), 0, None)  # ring axes: u = +x, w = cross(+y, +x) = -z, so sin > 0 is the back
    front = np.clip(-np.sin(th), 0, None)
    bulge = np.ones((len(psis), n_head))
    for i, p in enumerate(psis):
        if i == jrow:
            continue
        t_up, t_lo = max(np.sin(p), 0.0), max(-np.sin(p), 0.0)
        bulge[i] = 1 + 0.06 * t_up * back - 0.12 * t_lo * front * np.abs(np.cos(th))
    head = mk.tube("head", centers, Rx * np.cos(psis), Rz * np.cos(psis), X, n_head, cap0=H * (1 - np.cos(0.12)),
                   cap1=H * (1 - np.cos(0.12)), cap_rings=0, bulge=bulge)
    parts.append(head)
    ring_of[15] = (2, jrow)

    # nose
    zf = J[15, 2] + Rz * np.cos(np.arcsin(np.clip((ch[1] - 0.018 * hs - ch[1]) / H, -1, 1))) * 0.97
    ny = ch[1] - 0.018 * hs
    keys = np.array([[0, ny + 0.012 * hs, zf - 0.012], [0, ny - 0.004 * hs, zf + 0.016 * hs]])
    nose = mk.tube("nose", keys, np.array([0.011, 0.010]) * hs, np.array([0.010, 0.008]) * hs, X, 8, cap0=0.004,
                   cap1=0.008 * hs, cap_rings=2)
    parts.append(nose)

    # ears: flat ellipsoids on the sides of the head
    ey = ch[1] - 0.008 * hs
    ex = Rx * np.cos(np.arcsin((ey - ch[1]) / H)) * 0.96
    for side, sg in (("left", 1.0), ("right", -1.0)):
        keys = np.array([[sg * ex, ey - 0.026 * hs, J[15, 2] - 0.012], [sg * ex, ey, J[15, 2] - 0.014],
                         [sg * ex, ey + 0.026 * hs, J[15, 2] - 0.018]])
        pts, vals = mk.interp_stations(keys, np.array([[0.008, 0.014], [0.009, 0.017], [0.008, 0.015]]) * hs, 2)
        parts.append(mk.tube(f"{side}_ear", pts, vals[:, 0], vals[:, 1], X, 8, cap0=0.01 * hs, cap1=0.01 * hs,
                             cap_rings=2))

    # per side: arm, palm, fingers, thumb, leg, foot
    side_parts: dict[str, dict[str, int]] = {}
    for side, sg in (("left", 1.0), ("right", -1.0)):
        idx = (lambda lj: lj) if sg > 0 else (lambda lj: MIRROR[lj])
        jc, js, je, jw, jh = J[idx(13)], J[idx(16)], J[idx(18)], J[idx(20)], J[idx(22)]
        sp: dict[str, int] = {}
        keys = np.array([jc - sg * np.array([0.035, 0, 0]), jc, js, js + 0.5 * (je - js), je,
                         je + 0.45 * (jw - je), jw])
        rad = np.array([[0.045, 0.045], [0.048, 0.048], [0.054, 0.058], [0.045, 0.043], [0.036, 0.036],
                        [0.040, 0.036], [0.031, 0.021]]) * lg
        nps = [1, 3, 4, 4, 4, 4]
        pts, vals = mk.interp_stations(keys, rad, nps)
        arm = mk.tube(f"{side}_arm", pts, vals[:, 0], vals[:, 1], Z, 16, cap0=0.03, cap1=0.012)
        arm.extra["key_arc"] = arm.ring_arc[mk.key_ring_index(nps, len(keys))]
        sp["arm"] = len(parts)
        parts.append(arm)
        kr = mk.key_ring_index(nps, len(keys))
        for lj, ki in zip([13, 16, 18, 20], [kr[1], kr[2], kr[4], kr[6]], strict=True):
            ring_of[idx(lj)] = (sp["arm"], ki)

        # palm (palm faces -y in the T-pose, thumb towards +z)
        keys = np.array([jw - sg * np.array([0.012, 0, 0]), jw, jw + 0.5 * (jh - jw), jh])
        rad = np.array([[0.028, 0.018], [0.032, 0.018], [0.042, 0.017], [0.043, 0.013]]) * lg
        nps = [1, 3, 3]
        pts, vals = mk.interp_stations(keys, rad, nps)
        palm = mk.tube(f"{side}_palm", pts, vals[:, 0], vals[:, 1], Z, 14, exponent=2.8, cap0=0.008, cap1=0.012)
        sp["palm"] = len(parts)
        parts.append(palm)
        ring_of[idx(22)] = (sp["palm"], mk.key_ring_index(nps, len(keys))[3])
        palm.extra["key_arc"] = palm.ring_arc[mk.key_ring_index(nps, len(keys))]

        hand_dir = np.array([sg, 0, 0])
        for k, (fname, zoff, flen, fr) in enumerate([("index", 0.026, 0.074, 0.0092), ("middle", 0.008, 0.083, 0.0095),
                                                     ("ring", -0.010, 0.077, 0.0090),
                                                     ("pinky", -0.027, 0.061, 0.0080)]):
            base = jh + np.array([-sg * 0.012, -0.001, zoff * lg])
            spread = np.array([0, 0, 0.06 * (1.5 - k)])
            d = hand_dir + spread
            d /= np.linalg.norm(d)
            tip = base + d * flen * s.arm + np.array([0, -0.008, 0])
            mid = base + 0.55 * (tip - base) + np.array([0, 0.002, 0])
            keys = np.array([base, mid, tip])
            rad = np.array([[fr, fr * 0.85], [fr * 0.93, fr * 0.8], [fr * 0.82, fr * 0.72]]) * lg
            pts, vals = mk.interp_stations(keys, rad, 2)
            finger = mk.tube(f"{side}_{fname}", pts, vals[:, 0], vals[:, 1], Z, 8, cap0=0.004, cap1=fr * 0.8,
                             cap_rings=2)
            sp[fname] = len(parts)
            parts.append(finger)
        tbase = jw + np.array([sg * 0.022, -0.010, 0.022 * lg])
        tdir = np.array([sg * 0.62, -0.22, 0.75])
        tdir /= np.linalg.norm(tdir)
        ttip = tbase + tdir * 0.068 * s.arm
        keys = np.array([tbase, tbase + 0.5 * (ttip - tbase), ttip])
        rad = np.array([[0.013, 0.011], [0.011, 0.0095], [0.0095, 0.0085]]) * lg
        pts, vals = mk.interp_stations(keys, rad, 2)
        thumb = mk.tube(f"{side}_thumb", pts, vals[:, 0], vals[:, 1], Y, 8, cap0=0.006, cap1=0.008, cap_rings=2)
        sp["thumb"] = len(parts)
        parts.append(thumb)

        # leg
        jhip, jk, ja, jf = J[idx(1)], J[idx(4)], J[idx(7)], J[idx(10)]
        up = np.array([0, 1.0, 0])
        keys = np.array([jhip + np.array([sg * 0.004, 0.085, 0.0]), jhip, jhip + 0.45 * (jk - jhip),
                         jk + 0.075 * up, jk, jk + 0.30 * (ja - jk) + np.array([0, 0, -0.008]), ja + 0.10 * up, ja])
        rad = np.array([[0.082, 0.088], [0.080, 0.088], [0.068, 0.072], [0.053, 0.056], [0.050, 0.054],
                        [0.054, 0.060], [0.038, 0.040], [0.034, 0.038]]) * lg
        nps = [2, 4, 5, 2, 3, 5, 3]
        pts, vals = mk.interp_stations(keys, rad, nps)
        leg = mk.tube(f"{side}_leg", pts, vals[:, 0], vals[:, 1], X, 20, cap0=0.035, cap1=0.03)
        kr = mk.key_ring_index(nps, len(keys))
        leg.extra["key_arc"] = leg.ring_arc[kr]
        sp["leg"] = len(parts)
        parts.append(leg)
        for lj, ki in zip([1, 4, 7], [kr[1], kr[4], kr[7]], strict=True):
            ring_of[idx(lj)] = (sp["leg"], ki)

        # foot: along z, sole at ankle - 0.09
        sole = ja[1] - 0.09 * s.leg
        keys = np.array([[ja[0], sole + 0.036, ja[2] - 0.062], [ja[0] + sg * 0.006, sole + 0.045, ja[2] + 0.02],
                         jf, jf + np.array([sg * 0.004, -0.008, 0.062])])
        keys[2, 1] = jf[1]
        rad = np.array([[0.032, 0.034], [0.040, 0.042], [0.045, 0.029], [0.034, 0.017]]) * lg
        nps = [3, 4, 3]
        pts, vals = mk.interp_stations(keys, rad, nps)
        foot = mk.tube(f"{side}_foot", pts, vals[:, 0], vals[:, 1], X, 16, exponent=2.6, cap0=0.03, cap1=0.025)
        kr = mk.key_ring_index(nps, len(keys))
        foot.extra["key_arc"] = foot.ring_arc[kr]
        sp["foot"] = len(parts)
        parts.append(foot)
        ring_of[idx(10)] = (sp["foot"], kr[2])
        side_parts[side] = sp

    # global stature scale about the pelvis joint (origin)
    for p in parts:
        p.verts = p.verts * s.stature
        p.ring_centers = p.ring_centers * s.stature
    verts, faces = mk.merge(parts)
    joint_rings = {j: parts[pi].rings[ri] + parts[pi].offset for j, (pi, ri) in ring_of.items()}
    joints = np.stack([parts[ring_of[j][0]].ring_centers[ring_of[j][1]] for j in range(24)])

    # smplx extra keypoints (SMPL-H vertex ids)
    special: dict[str, int] = {}
    pole = lambda p, end: parts[p].offset + parts[p].poles[end]  # noqa: E731
    special["nose"] = pole(3, 1)
    hv = np.arange(parts[2].offset, parts[2].offset + len(parts[2].verts))
    hc = ch * s.stature
    for side, sg in (("l", 1.0), ("r", -1.0)):
        special[f"{side}eye"] = mk.nearest(verts, hv, hc + np.array([sg * 0.033, 0.012, Rz]) * s.stature)
        ear = parts[4 if sg > 0 else 5]
        ev = np.arange(ear.offset, ear.offset + len(ear.verts))
        special[f"{side}ear"] = mk.nearest(verts, ev, verts[ev].mean(0) + np.array([sg * 0.02, 0.0, 0.0]))
        sp = side_parts["left" if sg > 0 else "right"]
        for fname in ("thumb", "index", "middle", "ring", "pinky"):
            special[f"{side}{fname}"] = pole(sp[fname], 1)
        fp = parts[sp["foot"]]
        fv = np.arange(fp.offset, fp.offset + len(fp.verts))
        tip = verts[pole(sp["foot"], 1)]
        heel = verts[pole(sp["foot"], 0)]
        big = "LBigToe" if sg > 0 else "RBigToe"
        small = "LSmallToe" if sg > 0 else "RSmallToe"
        hl = "LHeel" if sg > 0 else "RHeel"
        special[big] = mk.nearest(verts, fv, tip + np.array([-sg * 0.022, -0.008, -0.01]) * s.stature)
        special[small] = mk.nearest(verts, fv, tip + np.array([sg * 0.028, -0.01, -0.03]) * s.stature)
        special[hl] = mk.nearest(verts, fv, heel + np.array([0, -0.02, 0.01]) * s.stature)

    built = _Built(verts, faces, parts, joints, joint_rings, special)
    if with_weights:
        _skin(built, side_parts)
    return built


def _skin(b: _Built, side_parts: dict[str, dict[str, int]]) -> None:
    """LBS weights [N, 24], part labels [N] and the H36M vertex sets (in place)."""
    n = len(b.verts)
    w = np.zeros((n, 24))
    part = np.zeros(n, dtype=np.int64)
    P = b.parts

    def rows(p: mk.Part) -> slice:
        return slice(p.offset, p.offset + len(p.verts))

    def key_arc(p: mk.Part, k: int) -> float:
        return float(p.extra["key_arc"][k])

    # torso: pelvis -> spine1 -> spine2 -> spine3 along the spine; collars at the upper sides, hips low sides
    t = P[0]
    arc_of_joint = {j: float(np.mean(t.arc[b.joint_rings[j] - t.offset])) for j in (0, 3, 6, 9)}
    tw = mk.chain_weights(t.arc, [arc_of_joint[3], arc_of_joint[6], arc_of_joint[9]], [0, 3, 6, 9],
                          [0.05, 0.05, 0.04], 24)
    v = t.verts
    y9 = b.joints[9, 1]
    for sg, collar, hip in ((1.0, 13, 1), (-1.0, 14, 2)):
        lat = np.clip(sg * v[:, 0], 0, None)
        f = 0.85 * mk.smoothstep((lat - 0.06) / 0.08) * mk.smoothstep((v[:, 1] - y9 - 0.02) / 0.08)
        tw = tw * (1 - f)[:, None]
        tw[:, collar] += f
        f = 0.6 * mk.smoothstep((lat - 0.02) / 0.07) * mk.smoothstep((b.joints[0, 1] - 0.01 - v[:, 1]) / 0.07)
        tw = tw * (1 - f)[:, None]
        tw[:, hip] += f
    w[rows(t)] = tw
    part[rows(t)] = _PART["torso"]

    nk = P[1]
    a12 = float(np.mean(nk.arc[b.joint_rings[12] - nk.offset]))
    w[rows(nk)] = mk.chain_weights(nk.arc, [a12, nk.arc.max() - 0.035], [9, 12, 15], [0.03, 0.025], 24)
    part[rows(nk)] = _PART["head"]
    for p in P[2:6]:  # head, nose, ears
        w[rows(p), 15] = 1.0
        part[rows(p)] = _PART["head"]

    for side, sg in (("left", 1.0), ("right", -1.0)):
        sp = side_parts[side]
        m = (lambda j: j) if sg > 0 else (lambda j: MIRROR[j])
        arm = P[sp["arm"]]
        ka = arm.extra["key_arc"]
        w[rows(arm)] = mk.chain_weights(arm.arc, [ka[1], ka[2], ka[4], ka[6]], [9, m(13), m(16), m(18), m(20)],
                                        [0.02, 0.045, 0.035, 0.02], 24)
        part[rows(arm)] = np.where(arm.arc < ka[4], _PART[f"{side}_upper_arm"], _PART[f"{side}_lower_arm"])
        palm = P[sp["palm"]]
        w[rows(palm)] = mk.chain_weights(palm.arc, [key_arc(palm, 3) - 0.005], [m(20), m(22)], [0.015], 24)
        part[rows(palm)] = _PART[f"{side}_hand"]
        for fname in ("index", "middle", "ring", "pinky"):
            fp = P[sp[fname]]
            w[rows(fp)] = mk.chain_weights(fp.arc, [0.0], [m(20), m(22)], [0.01], 24)
            part[rows(fp)] = _PART[f"{side}_hand"]
        th = P[sp["thumb"]]
        w[rows(th)] = mk.chain_weights(th.arc, [0.02], [m(20), m(22)], [0.015], 24)
        part[rows(th)] = _PART[f"{side}_hand"]
        leg = P[sp["leg"]]
        kl = leg.extra["key_arc"]
        w[rows(leg)] = mk.chain_weights(leg.arc, [kl[1], kl[4], kl[7]], [0, m(1), m(4), m(7)], [0.05, 0.04, 0.025], 24)
        part[rows(leg)] = np.where(leg.arc < kl[4], _PART[f"{side}_upper_leg"], _PART[f"{side}_lower_leg"])
        ft = P[sp["foot"]]
        kf = ft.extra["key_arc"]
        w[rows(ft)] = mk.chain_weights(ft.arc, [kf[2]], [m(7), m(10)], [0.02], 24)
        part[rows(ft)] = _PART[f"{side}_foot"]
    b.weights = w / w.sum(1, keepdims=True)
    b.part_of_vertex = part
    head = P[2]
    top = head.offset + np.concatenate([[head.poles[1]], head.rings[-1]])
    nose = P[3]
    b.h36m_sets = {9: nose.offset + np.arange(len(nose.verts)), 10: top}


def _h36m_regressor(b: _Built, jreg: np.ndarray) -> np.ndarray:
    """[17, N] rows as convex combinations of vertices (H36M_NAMES order)."""
    n = jreg.shape[1]
    r = np.zeros((17, n))
    r[0] = 0.5 * (jreg[1] + jreg[2])
    for k, j in zip([1, 2, 3, 4, 5, 6], [1, 4, 7, 2, 5, 8], strict=True):
        r[k] = jreg[j]
    r[7] = 0.25 * jreg[3] + 0.75 * jreg[6]
    r[8] = 0.3 * jreg[9] + 0.7 * jreg[12]
    for k in (9, 10):
        ids = b.h36m_sets[k]
        r[k, ids] = 1.0 / len(ids)
    for k, j in zip([11, 12, 13, 14, 15, 16], [16, 18, 20, 17, 19, 21], strict=True):
        r[k] = jreg[j]
    return r


def _smplx_special_ids() -> dict[str, int]:
    from smplx.vertex_ids import vertex_ids

    return dict(vertex_ids["smplh"])


def generate_smpl(gender: str = "neutral") -> dict[str, np.ndarray]:
    """All arrays of a SMPL-format model for ``gender`` (neutral|male|female). Deterministic."""
    if gender not in GENDERS:
        raise ValueError(f"unknown gender {gender!r}; use one of {sorted(GENDERS)}")
    base = GENDERS[gender]
    chest = GENDER_CHEST[gender]
    b = _build(base, with_weights=True, chest=chest)
    pairs, faces = mk.split_edges(b.verts, b.faces, NUM_VERTS)

    def up(x: np.ndarray) -> np.ndarray:
        return mk.apply_splits(x, pairs)

    v = up(b.verts)
    dirs = []
    for k in range(10):
        e = np.zeros(10)
        e[k] = 1.0
        vp = up(_build(shape_with_betas(base, e), with_weights=False, chest=chest).verts)
        vm = up(_build(shape_with_betas(base, -e), with_weights=False, chest=chest).verts)
        dirs.append(0.5 * (vp - vm))
    shapedirs = np.stack(dirs, axis=2)
    weights = mk.smooth_weights(up(b.weights), faces, iters=SMOOTH_ITERS)
    part = np.concatenate([b.part_of_vertex, np.zeros(len(pairs), dtype=np.int64)])
    for i, (a, _) in enumerate(pairs):
        part[len(b.verts) + i] = part[a]
    jreg = np.zeros((24, NUM_VERTS))
    for j, ids in b.joint_rings.items():
        jreg[j, ids] = mk.ring_weights(v[ids], b.joints[j])
    h36m = _h36m_regressor(b, jreg)
    # permute so that smplx's hard-coded keypoint ids land on our named vertices
    wanted = {vid: b.special[name] for name, vid in _smplx_special_ids().items()}
    perm = mk.place_ids(NUM_VERTS, wanted)
    inv = np.argsort(perm)
    kintree = np.array([PARENTS, list(range(24))], dtype=np.int64)
    return {
        "v_template": v[perm].astype(np.float64),
        "f": inv[faces].astype(np.int64),
        "weights": weights[perm],
        "J_regressor": jreg[:, perm],
        "kintree_table": kintree,
        "shapedirs": shapedirs[perm],
        "posedirs": np.zeros((NUM_VERTS, 3, 207)),
        "part_of_vertex": part[perm],
        "part_names": np.array(PART_NAMES),
        "J_regressor_h36m": h36m[:, perm],
        "joint_names": np.array(JOINT_NAMES),
        "rest_joints": b.joints,
        "generator": np.array(f"cpcbench procedural SMPL-format body v1 ({gender})"),
    }
