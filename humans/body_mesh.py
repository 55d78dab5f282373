"""The surface of the procedural SMPL-format body (``humans.body_model``): a union of watertight parts built
around the shaped skeleton (``humans.body_skeleton``). T-pose, metres, y up, the body faces +z, its left is +x,
the pelvis joint at the origin. Parts: torso, neck, head, nose, ears, per side an arm tube (collar to wrist), a
palm, four fingers and a thumb, a leg tube (hip to ankle) and a foot; each a closed generalised cylinder
(``humans.meshkit``). Every joint is the centre of one ring of vertices around the limb at that joint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from humans import meshkit as mk
from humans.body_skeleton import MIRROR, BodyShape, shaped_joints


@dataclass
class BuiltBody:
    """The surface of one shape: merged parts, their joints and the vertices the model file names."""

    verts: np.ndarray
    faces: np.ndarray
    parts: list[mk.Part]
    joints: np.ndarray
    joint_rings: dict[int, np.ndarray]  # joint -> global vertex ids of its ring
    special: dict[str, int]  # smplx extra keypoint name -> global vertex id
    side_parts: dict[str, dict[str, int]]  # side -> limb part name -> index into ``parts``


def build_body(s: BodyShape, chest: float = 1.0) -> BuiltBody:
    """The body mesh for shape ``s`` (fixed topology for every shape); ``chest``: front chest bulge factor."""
    J = shaped_joints(s)
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

    return BuiltBody(verts, faces, parts, joints, joint_rings, special, side_parts)

