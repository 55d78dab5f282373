"""Mesh building blocks shared by the procedural body and hand models (pure numpy).

A part is a *generalised cylinder*: rings of a superellipse cross-section placed along a centre path, closed by
rounded caps and a pole vertex at each end, so every part is a closed, consistently oriented (watertight)
triangle surface. Models are unions of such parts. Because a ring is sampled at an even number of angles
symmetric under a half turn, the mean of a ring's vertices is exactly its centre: that is how the joint
regressors are built (a joint = the mean of the ring placed at it, a convex combination of vertices).

``split_edges`` adds vertices (midpoints of the longest edges) until a mesh has an exact vertex count, and
``place_ids`` permutes vertices so that named vertices sit at fixed indices: together they give our meshes
the vertex counts (6890 / 778) and the keypoint vertex ids that ``smplx`` hard-codes for SMPL and MANO.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Part:
    """One closed tube. ``arc``: [N] arc length of each vertex's ring along the centre path (caps extend it
    below 0 and past the end); ``rings``: [K, S] local vertex ids of the main rings (caps excluded)."""

    name: str
    verts: np.ndarray
    faces: np.ndarray
    arc: np.ndarray
    rings: np.ndarray
    ring_arc: np.ndarray
    poles: tuple[int, int]
    ring_centers: np.ndarray | None = None  # [K, 3] centres of the main rings
    offset: int = 0
    extra: dict = field(default_factory=dict)


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True).clip(1e-12)


def tube(name: str, centers: np.ndarray, ra: np.ndarray, rb: np.ndarray, u_ref: np.ndarray, n_seg: int,
         exponent: float = 2.0, cap0: float = 0.0, cap1: float = 0.0, cap_rings: int = 3,
         bulge: np.ndarray | None = None) -> Part:
    """A closed tube through ``centers`` [K, 3] with half-axes ``ra`` (along ``u_ref`` made orthogonal to the
    path) and ``rb`` (the third axis), cross-section ``|x/ra|^p + |y/rb|^p = 1``. ``cap0``/``cap1``: length of
    the rounded end caps (0 = flat-ish end closed at the last ring centre). ``bulge`` [K, S]: optional radial
    scale per ring vertex (1 = none); keep it symmetric under a half turn to keep ring means at the centres.
    """
    centers = np.asarray(centers, dtype=np.float64)
    k = len(centers)
    ra = np.broadcast_to(np.asarray(ra, dtype=np.float64), (k,))
    rb = np.broadcast_to(np.asarray(rb, dtype=np.float64), (k,))
    if n_seg % 2:
        raise ValueError("n_seg must be even so that ring means are ring centres")
    tang = np.gradient(centers, axis=0)
    tang = _normalize(tang)
    u_ref = np.broadcast_to(np.asarray(u_ref, dtype=np.float64), (k, 3))
    u = _normalize(u_ref - np.sum(u_ref * tang, axis=1, keepdims=True) * tang)
    w = np.cross(tang, u)
    theta = 2 * np.pi * np.arange(n_seg) / n_seg
    c, s = np.cos(theta), np.sin(theta)
    e = 2.0 / exponent
    fc, fs = np.sign(c) * np.abs(c) ** e, np.sign(s) * np.abs(s) ** e
    scale = np.ones((k, n_seg)) if bulge is None else np.asarray(bulge, dtype=np.float64)

    def ring(center, ua, wa, a, b, sc):
        return center[None] + (a * fc * sc)[:, None] * ua[None] + (b * fs * sc)[:, None] * wa[None]

    seglen = np.linalg.norm(np.diff(centers, axis=0), axis=1)
    arc_main = np.concatenate([[0.0], np.cumsum(seglen)])
    rings_xyz, ring_arcs = [], []
    # start cap (from the pole side towards the body), main rings, end cap
    phis = np.arange(cap_rings, 0, -1) / (cap_rings + 1) * (np.pi / 2)
    for phi in phis:
        d = cap0 * np.sin(phi)
        rings_xyz.append(ring(centers[0] - d * tang[0], u[0], w[0], ra[0] * np.cos(phi), rb[0] * np.cos(phi),
                              scale[0]))
        ring_arcs.append(-d)
    for i in range(k):
        rings_xyz.append(ring(centers[i], u[i], w[i], ra[i], rb[i], scale[i]))
        ring_arcs.append(arc_main[i])
    for phi in phis[::-1]:
        d = cap1 * np.sin(phi)
        rings_xyz.append(ring(centers[-1] + d * tang[-1], u[-1], w[-1], ra[-1] * np.cos(phi),
                              rb[-1] * np.cos(phi), scale[-1]))
        ring_arcs.append(arc_main[-1] + d)
    n_rings = len(rings_xyz)
    pole0 = centers[0] - cap0 * tang[0]
    pole1 = centers[-1] + cap1 * tang[-1]
    verts = np.concatenate([pole0[None], np.concatenate(rings_xyz), pole1[None]])
    ring_ids = 1 + np.arange(n_rings * n_seg).reshape(n_rings, n_seg)
    last = len(verts) - 1
    faces = []
    nxt = np.roll(np.arange(n_seg), -1)
    for r in range(n_rings - 1):
        a, b = ring_ids[r], ring_ids[r + 1]
        faces.append(np.stack([a, a[nxt], b[nxt]], 1))
        faces.append(np.stack([a, b[nxt], b], 1))
    faces.append(np.stack([np.zeros(n_seg, int), ring_ids[0][nxt], ring_ids[0]], 1))
    faces.append(np.stack([np.full(n_seg, last), ring_ids[-1], ring_ids[-1][nxt]], 1))
    faces = np.concatenate(faces).astype(np.int64)
    arc = np.concatenate([[-cap0], np.repeat(ring_arcs, n_seg), [arc_main[-1] + cap1]])
    part = Part(name, verts, faces, arc, ring_ids[cap_rings:cap_rings + k], arc_main, (0, last), centers.copy())
    if signed_volume(part.verts, part.faces) < 0:
        part.faces = part.faces[:, ::-1].copy()
    return part


def signed_volume(verts: np.ndarray, faces: np.ndarray) -> float:
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def interp_stations(keys: np.ndarray, values: np.ndarray, n_per_seg: int | list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Densify key stations: ``keys`` [M, 3] points, ``values`` [M, C] per-key attributes (radii...). Returns
    points [K, 3] and values [K, C] with the key stations included exactly (so joints sit on rings); between
    keys, positions are linear and attributes follow a smooth (cosine) ease."""
    keys = np.asarray(keys, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    m = len(keys)
    counts = [n_per_seg] * (m - 1) if isinstance(n_per_seg, int) else list(n_per_seg)
    pts, vals = [keys[0]], [values[0]]
    for i in range(m - 1):
        for j in range(1, counts[i] + 1):
            t = j / counts[i]
            ease = 0.5 - 0.5 * np.cos(np.pi * t)
            pts.append(keys[i] * (1 - t) + keys[i + 1] * t)
            vals.append(values[i] * (1 - ease) + values[i + 1] * ease)
    return np.array(pts), np.array(vals)


def key_ring_index(n_per_seg: int | list[int], m: int) -> list[int]:
    """Indices (into the densified stations of ``interp_stations``) of the M key stations."""
    counts = [n_per_seg] * (m - 1) if isinstance(n_per_seg, int) else list(n_per_seg)
    return [0] + list(np.cumsum(counts))


def merge(parts: list[Part]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate parts (sets each ``part.offset``). Returns verts [N, 3], faces [F, 3]."""
    verts, faces, off = [], [], 0
    for p in parts:
        p.offset = off
        verts.append(p.verts)
        faces.append(p.faces + off)
        off += len(p.verts)
    return np.concatenate(verts), np.concatenate(faces)


def split_edges(verts: np.ndarray, faces: np.ndarray, target: int) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Split the longest edges at their midpoints until the mesh has ``target`` vertices. Keeps a closed
    manifold closed. Returns the new vertices' parent pairs (in creation order; vertex N+i is the midpoint of
    pair i, whose ids may refer to earlier new vertices) and the new faces."""
    verts = np.asarray(verts, dtype=np.float64)
    n = len(verts)
    if target < n:
        raise ValueError(f"mesh already has {n} > {target} vertices")
    pairs: list[tuple[int, int]] = []
    faces = [list(f) for f in faces]
    pos = list(verts)
    while n + len(pairs) < target:
        edge_faces: dict[tuple[int, int], list[int]] = {}
        for fi, f in enumerate(faces):
            for a, b in ((f[0], f[1]), (f[1], f[2]), (f[2], f[0])):
                edge_faces.setdefault((min(a, b), max(a, b)), []).append(fi)
        edges = np.array(list(edge_faces))
        pa = np.array(pos)
        lens = np.linalg.norm(pa[edges[:, 0]] - pa[edges[:, 1]], axis=1)
        order = np.lexsort((edges[:, 1], edges[:, 0], -np.round(lens, 9)))
        touched: set[int] = set()
        for ei in order:
            if n + len(pairs) >= target:
                break
            a, b = int(edges[ei, 0]), int(edges[ei, 1])
            fs = edge_faces[(a, b)]
            if len(fs) != 2 or any(fi in touched for fi in fs):
                continue
            m = n + len(pairs)
            pairs.append((a, b))
            pos.append(0.5 * (pos[a] + pos[b]))
            new_faces = []
            for fi in fs:
                f = faces[fi]
                # rotate so that the face reads (x, y, opp) with {x, y} = {a, b}
                for r in range(3):
                    x, y, z = f[r], f[(r + 1) % 3], f[(r + 2) % 3]
                    if {x, y} == {a, b}:
                        break
                faces[fi] = [x, m, z]
                new_faces.append([m, y, z])
                touched.add(fi)
            for nf in new_faces:
                touched.add(len(faces))
                faces.append(nf)
    return pairs, np.array(faces, dtype=np.int64)


def apply_splits(x: np.ndarray, pairs: list[tuple[int, int]]) -> np.ndarray:
    """Append midpoint rows for ``pairs`` (from ``split_edges``) to ``x`` [N, ...] -> [N + len(pairs), ...]."""
    out = np.concatenate([x, np.zeros((len(pairs),) + x.shape[1:], dtype=x.dtype)])
    n = len(x)
    for i, (a, b) in enumerate(pairs):
        out[n + i] = 0.5 * (out[a] + out[b])
    return out


def place_ids(n: int, wanted: dict[int, int]) -> np.ndarray:
    """A permutation ``perm`` [n] (new index -> old index) that puts old vertex ``v`` at new index ``i`` for
    every ``i: v`` in ``wanted``."""
    perm = np.arange(n)
    where = np.arange(n)  # old -> current new slot
    if len(set(wanted.values())) != len(wanted):
        raise ValueError("two target ids ask for the same vertex")
    for slot, old in wanted.items():
        cur = where[old]
        other = perm[slot]
        perm[slot], perm[cur] = old, other
        where[old], where[other] = slot, cur
    return perm


def nearest(verts: np.ndarray, candidates: np.ndarray, target: np.ndarray) -> int:
    """The id among ``candidates`` of the vertex closest to ``target`` [3]."""
    d = np.linalg.norm(verts[candidates] - np.asarray(target)[None], axis=1)
    return int(candidates[int(np.argmin(d))])


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def chain_weights(arc: np.ndarray, breaks: list[float], joints: list[int], half: list[float],
                  num_joints: int) -> np.ndarray:
    """Skinning weights along a tube: joint ``joints[i]`` owns arc lengths between ``breaks[i-1]`` and
    ``breaks[i]`` (len(joints) = len(breaks) + 1), blended smoothly over ``±half[i]`` around each break.
    Returns [N, num_joints], rows summing to 1."""
    w = np.zeros((len(arc), num_joints))
    # fraction "past" each break, nested: weight of segment i = prod(past_j, j<i) * (1 - past_i)
    past = [smoothstep((arc - b + h) / (2 * h)) if h > 0 else (arc >= b).astype(float) for b, h in zip(breaks, half,
                                                                                                        strict=True)]
    remaining = np.ones(len(arc))
    for i, j in enumerate(joints):
        if i < len(breaks):
            mine = remaining * (1 - past[i])
            remaining = remaining * past[i]
        else:
            mine = remaining
        w[:, j] += mine
    return w


def smooth_weights(weights: np.ndarray, faces: np.ndarray, iters: int = 8, alpha: float = 0.5) -> np.ndarray:
    """Diffuse per-vertex weights [N, J] along mesh edges (``iters`` Jacobi steps of strength ``alpha``). Rows
    that summed to 1 still do; parts that share no edge do not mix."""
    import scipy.sparse as sp

    n = len(weights)
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    adj = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n)).tocsr()
    adj = ((adj + adj.T) > 0).astype(np.float64)
    deg = np.asarray(adj.sum(1)).ravel()
    avg = sp.diags(1.0 / np.maximum(deg, 1)) @ adj
    w = weights.copy()
    for _ in range(iters):
        w = (1 - alpha) * w + alpha * (avg @ w)
    return w


def ring_weights(points: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Convex weights [n] over ring ``points`` [n, 3] whose weighted mean is ``center`` [3] (in the ring's plane):
    the uniform weights plus the minimum-norm zero-sum correction that moves their mean onto the centre."""
    n = len(points)
    pc = points - points.mean(0)
    delta = np.linalg.pinv(pc.T, rcond=1e-10) @ (np.asarray(center) - points.mean(0))
    w = 1.0 / n + delta
    if w.min() < 0:
        raise ValueError("ring too lopsided for convex weights at its centre")
    return w / w.sum()
