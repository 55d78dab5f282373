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

Layout: the skeleton and shape space are in ``humans.body_skeleton``, the surface in ``humans.body_mesh``; this
module skins the surface and assembles the model file's arrays (``generate_smpl``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from humans import meshkit as mk
from humans.body_mesh import BuiltBody, build_body
from humans.body_skeleton import (
    GENDER_CHEST,
    GENDERS,
    JOINT_NAMES,
    MIRROR,
    PARENTS,
    PART_IDS,
    PART_NAMES,
    shape_with_betas,
)

NUM_VERTS = 6890
SMOOTH_ITERS = 10  # diffusion steps that smooth the skinning weights along the surface


@dataclass
class Skin:
    """What skinning adds to a built body: LBS ``weights`` [N, 24], ``part_of_vertex`` [N] (``PART_IDS``) and the
    vertex sets of the H36M joints that no SMPL joint gives (9 nose, 10 head top)."""

    weights: np.ndarray
    part_of_vertex: np.ndarray
    h36m_sets: dict[int, np.ndarray]


def skin(b: BuiltBody) -> Skin:
    """LBS weights, part labels and H36M vertex sets of ``b``."""
    side_parts = b.side_parts
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
    part[rows(t)] = PART_IDS["torso"]

    nk = P[1]
    a12 = float(np.mean(nk.arc[b.joint_rings[12] - nk.offset]))
    w[rows(nk)] = mk.chain_weights(nk.arc, [a12, nk.arc.max() - 0.035], [9, 12, 15], [0.03, 0.025], 24)
    part[rows(nk)] = PART_IDS["head"]
    for p in P[2:6]:  # head, nose, ears
        w[rows(p), 15] = 1.0
        part[rows(p)] = PART_IDS["head"]

    for side, sg in (("left", 1.0), ("right", -1.0)):
        sp = side_parts[side]
        m = (lambda j: j) if sg > 0 else (lambda j: MIRROR[j])
        arm = P[sp["arm"]]
        ka = arm.extra["key_arc"]
        w[rows(arm)] = mk.chain_weights(arm.arc, [ka[1], ka[2], ka[4], ka[6]], [9, m(13), m(16), m(18), m(20)],
                                        [0.02, 0.045, 0.035, 0.02], 24)
        part[rows(arm)] = np.where(arm.arc < ka[4], PART_IDS[f"{side}_upper_arm"], PART_IDS[f"{side}_lower_arm"])
        palm = P[sp["palm"]]
        w[rows(palm)] = mk.chain_weights(palm.arc, [key_arc(palm, 3) - 0.005], [m(20), m(22)], [0.015], 24)
        part[rows(palm)] = PART_IDS[f"{side}_hand"]
        for fname in ("index", "middle", "ring", "pinky"):
            fp = P[sp[fname]]
            w[rows(fp)] = mk.chain_weights(fp.arc, [0.0], [m(20), m(22)], [0.01], 24)
            part[rows(fp)] = PART_IDS[f"{side}_hand"]
        th = P[sp["thumb"]]
        w[rows(th)] = mk.chain_weights(th.arc, [0.02], [m(20), m(22)], [0.015], 24)
        part[rows(th)] = PART_IDS[f"{side}_hand"]
        leg = P[sp["leg"]]
        kl = leg.extra["key_arc"]
        w[rows(leg)] = mk.chain_weights(leg.arc, [kl[1], kl[4], kl[7]], [0, m(1), m(4), m(7)], [0.05, 0.04, 0.025], 24)
        part[rows(leg)] = np.where(leg.arc < kl[4], PART_IDS[f"{side}_upper_leg"], PART_IDS[f"{side}_lower_leg"])
        ft = P[sp["foot"]]
        kf = ft.extra["key_arc"]
        w[rows(ft)] = mk.chain_weights(ft.arc, [kf[2]], [m(7), m(10)], [0.02], 24)
        part[rows(ft)] = PART_IDS[f"{side}_foot"]
    head = P[2]
    top = head.offset + np.concatenate([[head.poles[1]], head.rings[-1]])
    nose = P[3]
    return Skin(w / w.sum(1, keepdims=True), part, {9: nose.offset + np.arange(len(nose.verts)), 10: top})


def _h36m_regressor(h36m_sets: dict[int, np.ndarray], jreg: np.ndarray) -> np.ndarray:
    """[17, N] rows as convex combinations of vertices (H36M_NAMES order)."""
    n = jreg.shape[1]
    r = np.zeros((17, n))
    r[0] = 0.5 * (jreg[1] + jreg[2])
    for k, j in zip([1, 2, 3, 4, 5, 6], [1, 4, 7, 2, 5, 8], strict=True):
        r[k] = jreg[j]
    r[7] = 0.25 * jreg[3] + 0.75 * jreg[6]
    r[8] = 0.3 * jreg[9] + 0.7 * jreg[12]
    for k in (9, 10):
        ids = h36m_sets[k]
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
    b = build_body(base, chest=chest)
    sk = skin(b)
    pairs, faces = mk.split_edges(b.verts, b.faces, NUM_VERTS)

    def up(x: np.ndarray) -> np.ndarray:
        return mk.apply_splits(x, pairs)

    v = up(b.verts)
    dirs = []
    for k in range(10):
        e = np.zeros(10)
        e[k] = 1.0
        vp = up(build_body(shape_with_betas(base, e), chest=chest).verts)
        vm = up(build_body(shape_with_betas(base, -e), chest=chest).verts)
        dirs.append(0.5 * (vp - vm))
    shapedirs = np.stack(dirs, axis=2)
    weights = mk.smooth_weights(up(sk.weights), faces, iters=SMOOTH_ITERS)
    part = np.concatenate([sk.part_of_vertex, np.zeros(len(pairs), dtype=np.int64)])
    for i, (a, _) in enumerate(pairs):
        part[len(b.verts) + i] = part[a]
    jreg = np.zeros((24, NUM_VERTS))
    for j, ids in b.joint_rings.items():
        jreg[j, ids] = mk.ring_weights(v[ids], b.joints[j])
    h36m = _h36m_regressor(sk.h36m_sets, jreg)
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

