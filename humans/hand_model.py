"""A procedurally generated right hand in the MANO file format (Romero et al., "Embodied Hands: Modeling and
Capturing Hands and Bodies Together", SIGGRAPH Asia 2017), loadable by ``smplx.MANO``.

Layout (as in ``MANO_RIGHT.pkl``, plain numpy): ``v_template`` [778, 3], ``f`` [F, 3], ``weights`` [778, 16],
``J_regressor`` [16, 778], ``kintree_table`` [2, 16], ``shapedirs`` [778, 3, 10], ``posedirs`` [778, 3, 135]
(zeros), ``hands_components`` [45, 45] (orthonormal rows: principal directions of our sampled articulations,
``humans.hand_poses.sample_hand_pose``), ``hands_mean`` [45] (their mean). Extra keys: ``part_of_vertex`` [778]
(1 palm, 2 thumb, 3 index, 4 middle, 5 ring, 6 pinky), ``part_names``, ``generator``.

Rest pose and frame follow MANO's: flat hand, fingers along -x, palm facing -y, thumb towards +z, the 16
joints (0 wrist, 1-3 index, 4-6 middle, 7-9 pinky, 10-12 ring, 13-15 thumb) at MANO's mean rest joint
positions, so pose samplers written for MANO axes work on both. The surface is a union of watertight parts
(palm with a short wrist stub, four fingers, thumb). 778 vertices, with the fingertip vertices at smplx's tip
ids (744 thumb, 320 index, 443 middle, 554 ring, 671 pinky) and FreiHAND's ring/pinky tip ids (555, 672) on
vertices next to those tips. Each joint is the mean of the ring of vertices around it.

Shape space (10 betas): 0 size, 1 palm width, 2 finger length, 3 finger thickness, 4 palm length, 5 thumb
length, 6 palm thickness, 7 index-to-pinky length gradient, 8 knuckle spacing, 9 wrist width.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from humans import meshkit as mk
from humans.hand_poses import sample_hand_pose

NUM_VERTS = 778
SMOOTH_ITERS = 10  # diffusion steps that smooth the skinning weights along the surface
PARENTS = [-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14]
# MANO's mean right-hand rest joints (metres)
REST_JOINTS = np.array([
    [0.0957, 0.0064, 0.0062], [0.0076, 0.0012, 0.0269], [-0.0251, 0.0052, 0.0291], [-0.0473, 0.0039, 0.0290],
    [0.0010, 0.0049, 0.0028], [-0.0302, 0.0068, -0.0028], [-0.0531, 0.0055, -0.0067],
    [0.0269, -0.0036, -0.0370], [0.0099, -0.0035, -0.0495], [-0.0060, -0.0042, -0.0599],
    [0.0139, 0.0024, -0.0205], [-0.0144, 0.0045, -0.0256], [-0.0379, 0.0028, -0.0332],
    [0.0716, -0.0091, 0.0320], [0.0519, -0.0082, 0.0557], [0.0297, -0.0137, 0.0702],
])
# finger -> (MANO joints, tip length beyond the last joint, radius at the base, part id)
_FINGERS = {"index": ([1, 2, 3], 0.022, 0.0100, 3), "middle": ([4, 5, 6], 0.024, 0.0103, 4),
            "ring": ([10, 11, 12], 0.023, 0.0097, 5), "pinky": ([7, 8, 9], 0.020, 0.0086, 6),
            "thumb": ([13, 14, 15], 0.026, 0.0150, 2)}
PART_NAMES = ["palm", "thumb", "index", "middle", "ring", "pinky"]
TIP_IDS = {"thumb": 744, "index": 320, "middle": 443, "ring": 554, "pinky": 671}
FREIHAND_TIP_IDS = {"ring": 555, "pinky": 672}


@dataclass(frozen=True)
class HandShape:
    size: float = 1.0
    palm_width: float = 1.0
    finger_length: float = 1.0
    finger_girth: float = 1.0
    palm_length: float = 1.0
    thumb_length: float = 1.0
    palm_thickness: float = 1.0
    gradient: float = 0.0
    spacing: float = 1.0
    wrist: float = 1.0


HAND_BETA_SIGMA = (0.05, 0.06, 0.06, 0.08, 0.05, 0.06, 0.1, 0.04, 0.06, 0.08)


def shape_with_betas(betas: np.ndarray) -> HandShape:
    base = HandShape()
    vals = {}
    for f, s, b in zip(fields(HandShape), HAND_BETA_SIGMA, betas, strict=True):
        vals[f.name] = getattr(base, f.name) + s * float(b) if f.name == "gradient" else \
            getattr(base, f.name) * (1.0 + s * float(b))
    return replace(base, **vals)


def _shaped_joints(s: HandShape) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    r = REST_JOINTS
    j = r.copy()
    wrist = r[0]
    mid_z = r[4, 2]
    tips = {}
    for name, (ids, tip_len, _, _) in _FINGERS.items():
        if name == "thumb":
            j[ids[0]] = r[ids[0]]
            flen = s.thumb_length
        else:
            base = r[ids[0]] - wrist
            base = base * np.array([s.palm_length, 1.0, 1.0])
            base[2] = (r[ids[0], 2] - mid_z) * s.palm_width * s.spacing + mid_z - wrist[2]
            j[ids[0]] = wrist + base
            order = {"index": 1.0, "middle": 0.33, "ring": -0.33, "pinky": -1.0}[name]
            flen = s.finger_length * (1.0 + s.gradient * order)
        for a, b in ((ids[0], ids[1]), (ids[1], ids[2])):
            j[b] = j[a] + (r[b] - r[a]) * flen
        d = r[ids[2]] - r[ids[1]]
        d /= np.linalg.norm(d)
        tips[name] = j[ids[2]] + d * tip_len * flen
    return j, tips


@dataclass
class _Built:
    verts: np.ndarray
    faces: np.ndarray
    parts: list[mk.Part]
    joint_rings: dict[int, np.ndarray]
    tips: dict[str, int]
    weights: np.ndarray | None = None
    part_of_vertex: np.ndarray | None = None


def _build(s: HandShape, with_weights: bool) -> _Built:
    J, tips = _shaped_joints(s)
    X, Y, Z = np.eye(3)
    parts: list[mk.Part] = []
    ring_of: dict[int, tuple[int, int]] = {}
    wrist = J[0]
    knuckle_x = np.mean(J[[1, 4, 10, 7], 0])
    knuckle_z = np.mean(J[[1, 7], 2])
    pt, pw = s.palm_thickness, s.palm_width
    keys = np.array([wrist + np.array([0.012, 0.0, 0.0]), wrist,
                     [0.5 * (wrist[0] + knuckle_x), 0.002, 0.5 * (wrist[2] + knuckle_z)],
                     [knuckle_x + 0.006, 0.002, knuckle_z]])
    rad = np.array([[0.026 * s.wrist, 0.017 * s.wrist], [0.029 * s.wrist, 0.0165 * pt], [0.041 * pw, 0.0155 * pt],
                    [0.043 * pw, 0.0125 * pt]])
    nps = [1, 3, 3]
    pts, vals = mk.interp_stations(keys, rad, nps)
    palm = mk.tube("palm", pts, vals[:, 0], vals[:, 1], Z, 14, exponent=2.8, cap0=0.006, cap1=0.016)
    palm.extra["key_arc"] = palm.ring_arc[mk.key_ring_index(nps, len(keys))]
    parts.append(palm)
    ring_of[0] = (0, mk.key_ring_index(nps, len(keys))[1])

    fparts: dict[str, int] = {}
    for name, (ids, _, r0, _) in _FINGERS.items():
        a, b, c = J[ids[0]], J[ids[1]], J[ids[2]]
        tip = tips[name]
        d0 = (b - a) / np.linalg.norm(b - a)
        dt = (tip - c) / np.linalg.norm(tip - c)
        r_end = 0.72 * r0 if name != "thumb" else 0.58 * r0
        start = a - d0 * (0.012 if name != "thumb" else 0.016)
        end = tip - dt * r_end
        keys = np.array([start, a, b, c, end])
        g = s.finger_girth
        if name == "thumb":
            rad = np.array([[r0, 0.85 * r0], [r0, 0.85 * r0], [0.75 * r0, 0.66 * r0], [0.68 * r0, 0.6 * r0],
                            [0.6 * r0, 0.55 * r0]]) * g
            u_ref = Y
        else:
            rad = np.array([[r0, 0.9 * r0], [r0, 0.9 * r0], [0.9 * r0, 0.82 * r0], [0.8 * r0, 0.72 * r0],
                            [0.74 * r0, 0.64 * r0]]) * g
            u_ref = Z
        nps = [1, 3, 2, 2]
        pts, vals = mk.interp_stations(keys, rad, nps)
        # the end cap radius equals the end station's radius so that the pole sits at the fingertip
        part = mk.tube(name, pts, vals[:, 0], vals[:, 1], u_ref, 8, cap0=0.006, cap1=float(vals[-1].max()),
                       cap_rings=2)
        kr = mk.key_ring_index(nps, len(keys))
        part.extra["key_arc"] = part.ring_arc[kr]
        fparts[name] = len(parts)
        parts.append(part)
        for jid, ki in zip(ids, kr[1:4], strict=True):
            ring_of[jid] = (fparts[name], ki)
    for p in parts:
        p.verts = p.verts * s.size
    verts, faces = mk.merge(parts)
    joint_rings = {j: parts[pi].rings[ri] + parts[pi].offset for j, (pi, ri) in ring_of.items()}
    tip_ids = {name: parts[fparts[name]].offset + parts[fparts[name]].poles[1] for name in _FINGERS}
    b = _Built(verts, faces, parts, joint_rings, tip_ids)
    if with_weights:
        _skin(b, fparts, J * s.size)
    return b


def _skin(b: _Built, fparts: dict[str, int], J: np.ndarray) -> None:
    n = len(b.verts)
    w = np.zeros((n, 16))
    part = np.zeros(n, dtype=np.int64)
    palm = b.parts[0]
    sl = slice(palm.offset, palm.offset + len(palm.verts))
    pw = np.zeros((len(palm.verts), 16))
    pw[:, 0] = 1.0
    v = palm.verts
    mcps = [1, 4, 10, 7]
    # knuckle region follows the nearest finger's MCP joint; thenar region partly follows the thumb CMC
    near = np.array(mcps)[np.argmin(np.abs(v[:, 2:3] - J[mcps, 2][None]), axis=1)]
    knx = J[mcps, 0]
    f = 0.6 * mk.smoothstep((np.min(knx) + 0.022 - v[:, 0]) / 0.03)
    pw *= (1 - f)[:, None]
    pw[np.arange(len(v)), near] += f
    thenar = 0.35 * mk.smoothstep((v[:, 2] - 0.012) / 0.02) * mk.smoothstep(1 - np.abs(v[:, 0] - J[13, 0]) / 0.03)
    pw *= (1 - thenar)[:, None]
    pw[:, 13] += thenar
    w[sl] = pw
    part[sl] = 1
    for name, (ids, _, _, pid) in _FINGERS.items():
        p = b.parts[fparts[name]]
        ka = p.extra["key_arc"]
        sl = slice(p.offset, p.offset + len(p.verts))
        half = [0.008, 0.006, 0.005] if name == "thumb" else [0.006, 0.005, 0.004]
        w[sl] = mk.chain_weights(p.arc, [ka[1], ka[2], ka[3]], [0] + ids, half, 16)
        part[sl] = pid
    b.weights = w / w.sum(1, keepdims=True)
    b.part_of_vertex = part


def generate_mano(num_pose_samples: int = 20000) -> dict[str, np.ndarray]:
    """All arrays of a MANO-format right hand. Deterministic."""
    b = _build(HandShape(), with_weights=True)
    pairs, faces = mk.split_edges(b.verts, b.faces, NUM_VERTS)
    v = mk.apply_splits(b.verts, pairs)
    dirs = []
    for k in range(10):
        e = np.zeros(10)
        e[k] = 1.0
        vp = mk.apply_splits(_build(shape_with_betas(e), with_weights=False).verts, pairs)
        vm = mk.apply_splits(_build(shape_with_betas(-e), with_weights=False).verts, pairs)
        dirs.append(0.5 * (vp - vm))
    shapedirs = np.stack(dirs, axis=2)
    weights = mk.smooth_weights(mk.apply_splits(b.weights, pairs), faces, iters=SMOOTH_ITERS)
    part = np.concatenate([b.part_of_vertex, np.zeros(len(pairs), dtype=np.int64)])
    for i, (a, _) in enumerate(pairs):
        part[len(b.verts) + i] = part[a]
    jreg = np.zeros((16, NUM_VERTS))
    for j, ids in b.joint_rings.items():
        jreg[j, ids] = mk.ring_weights(v[ids], v[ids].mean(0))
    wanted = {TIP_IDS[name]: vid for name, vid in b.tips.items()}
    # FreiHAND's ring/pinky tips: a vertex of the last cap ring next to each tip
    for name, slot in FREIHAND_TIP_IDS.items():
        p = b.parts[[pp.name for pp in b.parts].index(name)]
        nxt = p.offset + p.poles[1] - len(p.rings[0])  # first vertex of the ring before the end pole
        wanted[slot] = int(nxt)
    perm = mk.place_ids(NUM_VERTS, wanted)
    inv = np.argsort(perm)
    poses, _ = sample_hand_pose(np.random.default_rng(0), num_pose_samples)
    mean = poses.mean(0)
    _, _, vt = np.linalg.svd(poses - mean, full_matrices=False)
    kintree = np.array([PARENTS, list(range(16))], dtype=np.int64)
    joints = jreg @ v
    return {
        "v_template": v[perm],
        "f": inv[faces].astype(np.int64),
        "weights": weights[perm],
        "J_regressor": jreg[:, perm],
        "kintree_table": kintree,
        "shapedirs": shapedirs[perm],
        "posedirs": np.zeros((NUM_VERTS, 3, 135)),
        "hands_components": vt,
        "hands_mean": mean,
        "part_of_vertex": part[perm],
        "part_names": np.array(PART_NAMES),
        "rest_joints": joints,
        "generator": np.array("cpcbench procedural MANO-format right hand v1"),
    }
