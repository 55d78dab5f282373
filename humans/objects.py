"""``synth-objects``: textured geometric primitives with class labels, the embedded stand-in for
ImageNet-style supervised pretraining (the "supervised" baseline of CroCo-Man, CVPR 2024, Table 1).

Six classes (:data:`CLASSES`): box, sphere, cylinder, cone, torus, capsule, each with random proportions,
a procedural texture painted as vertex colours (spherical projection of the texture), a random spin over
the frames of a sequence, seen by a few cameras in a textured backdrop with random lighting.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from humans.appearance import backdrop, procedural_texture, random_lighting
from humans.cameras import film, rig, rng_of

CLASSES = ("box", "sphere", "cylinder", "cone", "torus", "capsule")


def primitive(rng: np.random.Generator, cls: str) -> tuple[np.ndarray, np.ndarray]:
    """A primitive of class ``cls`` with random proportions (about 0.3 m across), dense enough for vertex
    colours; hard-edged shapes get unshared vertices (flat shading on their faces).
    -> verts [V, 3] (centred at the origin), faces [F, 3]
    """
    import trimesh

    s = rng.uniform(0.8, 1.25)
    if cls == "box":
        m = trimesh.creation.box(extents=rng.uniform(0.12, 0.35, 3) * s)
        sharp = True
    elif cls == "sphere":
        m = trimesh.creation.icosphere(subdivisions=3, radius=0.15 * s)
        m.apply_scale(np.append(rng.uniform(0.85, 1.15, 2), 1.0))
        sharp = False
    elif cls == "cylinder":
        m = trimesh.creation.cylinder(radius=rng.uniform(0.05, 0.13) * s, height=rng.uniform(0.15, 0.4) * s,
                                      sections=32)
        sharp = True
    elif cls == "cone":
        m = trimesh.creation.cone(radius=rng.uniform(0.07, 0.15) * s, height=rng.uniform(0.15, 0.35) * s,
                                  sections=32)
        m.apply_translation(-m.centroid)
        sharp = True
    elif cls == "torus":
        major = rng.uniform(0.09, 0.15) * s
        m = trimesh.creation.torus(major_radius=major, minor_radius=major * rng.uniform(0.2, 0.5),
                                   major_sections=48, minor_sections=24)
        sharp = False
    elif cls == "capsule":
        m = trimesh.creation.capsule(height=rng.uniform(0.1, 0.3) * s, radius=rng.uniform(0.04, 0.09) * s,
                                     count=[24, 24])
        m.apply_translation(-m.centroid)
        sharp = False
    else:
        raise ValueError(f"unknown object class {cls!r}; choose one of {CLASSES}")
    v, f = np.asarray(m.vertices, np.float64), np.asarray(m.faces, np.int64)
    if sharp:
        v, f = v[f].reshape(-1, 3), np.arange(3 * len(f)).reshape(-1, 3)
    v, f = trimesh.remesh.subdivide_to_size(v, f, max_edge=0.02, max_iter=8)
    return np.asarray(v, np.float64), np.asarray(f, np.int64)


def texture_colours(rng: np.random.Generator, verts: np.ndarray) -> np.ndarray:
    """Vertex colours from a procedural texture wrapped around the object (spherical projection).
    verts: [V, 3] -> [V, 3] in 0..1"""
    tex = procedural_texture(rng, size=128).astype(np.float64) / 255
    d = verts / np.maximum(np.linalg.norm(verts, axis=1, keepdims=True), 1e-9)
    u = (np.arctan2(d[:, 0], d[:, 2]) / (2 * np.pi) + 0.5) * rng.integers(1, 4)
    w = np.arccos(np.clip(d[:, 1], -1, 1)) / np.pi * rng.integers(1, 3)
    h = tex.shape[0]
    return tex[((w * h).astype(int)) % h, ((u * h).astype(int)) % h]


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(axis / np.linalg.norm(axis) * angle).as_matrix()


def render_object_sequence(cfg: Any, spec: Any, renderer: Any) -> list[dict[str, np.ndarray]]:
    """One object instance spinning over ``cfg.seq_len`` frames, seen by ``cfg.cameras`` cameras."""
    from scipy.spatial.transform import Rotation

    rng = rng_of(spec.motion_seed)
    label = int(rng.integers(len(CLASSES)))
    verts, faces = primitive(rng, CLASSES[label])
    colours = texture_colours(rng, verts)
    R0 = Rotation.random(random_state=int(rng.integers(2**31))).as_matrix()
    axis, speed = rng.normal(size=3), rng.uniform(0.1, 0.5)
    traj = np.stack([verts @ (_rotation(axis, speed * t) @ R0).T for t in range(cfg.seq_len)])
    scene_rng = rng_of(spec.scene_seed)
    centre = np.zeros(3)
    renderer.set_scene(backdrop(scene_rng, centre, radius=float(scene_rng.uniform(1.5, 3.0))),
                       random_lighting(scene_rng))
    renderer.set_actor(faces, np.ones(len(verts), np.int64), colours, roughness=float(rng.uniform(0.3, 0.9)))
    cams = rig(scene_rng, cfg.cameras, centre, dist=(0.6, 1.2), elev_deg=(-50, 60))

    def per_frame(t: int, c: int, K: np.ndarray, E: np.ndarray, vc: np.ndarray) -> dict[str, np.ndarray]:
        return {"label": np.int64(label)}

    return film(renderer, cfg, traj, cams, per_frame, parts=False)
