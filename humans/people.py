"""Bodies and hands in the synthetic world (``humans.world``): one subject performing one motion, rendered by a
camera rig into the frames of a sequence, and the frame-set metadata of these domains.

``cfg`` is a ``humans.world.WorldConfig`` and ``spec`` a ``humans.world.SequenceSpec`` (typed loosely, as in
``humans.objects``: the world imports this module).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from humans.appearance import backdrop, body_colours, hand_colours, random_lighting, room
from humans.cameras import film, project, rig, rig_seeing, rng_of, to_camera
from humans.hand_poses import GESTURES, front_views
from humans.models import forward, model_info
from humans.motions import body_motion, hand_motion


def person_meta(domain: str) -> dict[str, Any]:
    """Joint names, skeleton, part names and model kind of a body or hand frame set."""
    kind = "smpl" if domain == "body" else "mano"
    info = model_info(kind)
    meta = {"model": kind, "joint_names": list(info["joint_names"]), "parents": [int(p) for p in info["parents"]],
            "part_names": list(info["part_names"]), "num_verts": int(info["num_verts"])}
    if domain == "hand":
        meta["labels"] = list(GESTURES)
    return meta


def _forward(kind: str, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``humans.models.forward`` on one torch thread: float32 sums depend on the thread count, and frames must
    be bit-identical whatever the number of worker processes.  -> verts [B, V, 3], joints [B, J, 3] float64"""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = forward(kind, params)
    finally:
        torch.set_num_threads(threads)
    return {k: v.numpy().astype(np.float64) for k, v in out.items()}


def _rest_verts(kind: str, betas: np.ndarray) -> np.ndarray:
    """The model in its rest pose for these betas.  betas: [10] -> [V, 3]"""
    pose_key, dim = ("body_pose", 69) if kind == "smpl" else ("hand_pose", 45)
    out = _forward(kind, {"global_orient": np.zeros((1, 3)), pose_key: np.zeros((1, dim)), "betas": betas[None]})
    return out["verts"][0]


def _cam_orient(E: np.ndarray, global_orient: np.ndarray) -> np.ndarray:
    """The global orientation seen from the camera: R_cam @ R_world.  -> [3] axis-angle"""
    return (Rotation.from_matrix(E[:3, :3]) * Rotation.from_rotvec(global_orient)).as_rotvec().astype(np.float32)


def render_body_sequence(cfg: Any, spec: Any, renderer: Any) -> list[dict[str, np.ndarray]]:
    """One subject (betas, skin, clothing) performing one motion in a room, filmed by a camera rig."""
    info = model_info("smpl")
    srng = rng_of(spec.subject_seed)
    betas = np.clip(srng.normal(0, 0.8, 10), -2.0, 2.0)
    colours = body_colours(srng, _rest_verts("smpl", betas), info["part_of_vertex"], info["part_names"])
    mrng = rng_of(spec.motion_seed)
    motion = body_motion(mrng, cfg.seq_len, fps=cfg.fps)
    T = cfg.seq_len
    heading = mrng.uniform(-np.pi, np.pi)
    speed = mrng.uniform(0.0, 0.8) if mrng.random() < 0.6 else 0.0  # m/s, many motions are in place
    step = speed / cfg.fps * np.array([np.sin(heading), 0.0, np.cos(heading)])
    transl = (np.arange(T)[:, None] - (T - 1) / 2) * step[None] + mrng.normal(0, 0.005, (T, 3)).cumsum(0)
    go = np.asarray(motion["global_orient"], np.float64)
    bp = np.asarray(motion["body_pose"], np.float64)
    out = _forward("smpl", {"global_orient": go, "body_pose": bp, "betas": np.tile(betas, (T, 1)), "transl": transl})
    verts, joints = out["verts"], out["joints"]
    srng_scene = rng_of(spec.scene_seed)
    lo, hi = verts.reshape(-1, 3).min(0), verts.reshape(-1, 3).max(0)
    centre = (lo + hi) / 2
    floor_y = float(lo[1])
    renderer.set_scene(room(srng_scene, centre, floor_y, radius=float(srng_scene.uniform(6.5, 9.0))),
                       random_lighting(srng_scene))
    renderer.set_actor(info["faces"], info["part_of_vertex"], colours, roughness=float(srng.uniform(0.5, 0.95)))
    cams = rig(srng_scene, cfg.cameras, centre, dist=(2.6, 5.0), elev_deg=(-8, 35))

    def per_frame(t: int, c: int, K: np.ndarray, E: np.ndarray, vc: np.ndarray) -> dict[str, np.ndarray]:
        jc = to_camera(joints[t], E)
        return {"joints2d": project(jc, K).astype(np.float32), "joints3d": jc.astype(np.float32),
                "verts": vc.astype(np.float32), "global_orient": go[t].astype(np.float32),
                "cam_global_orient": _cam_orient(E, go[t]), "body_pose": bp[t].astype(np.float32),
                "betas": betas.astype(np.float32), "transl": transl[t].astype(np.float32)}

    return film(renderer, cfg, verts, cams, per_frame)


def render_hand_sequence(cfg: Any, spec: Any, renderer: Any) -> list[dict[str, np.ndarray]]:
    """One hand (shape, skin or glove) articulating towards a gesture, filmed by cameras all around it."""
    info = model_info("mano")
    srng = rng_of(spec.subject_seed)
    betas = np.clip(srng.normal(0, 0.8, 10), -2.0, 2.0)
    colours = hand_colours(srng, _rest_verts("mano", betas))
    mrng = rng_of(spec.motion_seed)
    motion = hand_motion(mrng, cfg.seq_len, fps=cfg.fps)
    T = cfg.seq_len
    go = np.asarray(motion["global_orient"], np.float64)
    hp = np.asarray(motion["hand_pose"], np.float64)
    labels = np.asarray(motion.get("labels", np.full(T, -1)), np.int64).reshape(-1)
    if labels.size == 1:
        labels = np.full(T, int(labels[0]))
    transl = mrng.normal(0, 0.003, (T, 3)).cumsum(0)
    out = _forward("mano", {"global_orient": go, "hand_pose": hp, "betas": np.tile(betas, (T, 1)), "transl": transl})
    verts, joints = out["verts"], out["joints"]
    scene_rng = rng_of(spec.scene_seed)
    lo, hi = verts.reshape(-1, 3).min(0), verts.reshape(-1, 3).max(0)
    centre = (lo + hi) / 2
    renderer.set_scene(backdrop(scene_rng, centre, radius=float(scene_rng.uniform(1.2, 3.0))),
                       random_lighting(scene_rng))
    renderer.set_actor(info["faces"], info["part_of_vertex"], colours, roughness=float(srng.uniform(0.5, 0.9)))
    if getattr(cfg, "view", "around") == "front":  # palm or back towards each camera, fingers up
        views = front_views(scene_rng, cfg.cameras)
        cams = rig_seeing(scene_rng, views, Rotation.from_rotvec(go[0]).as_matrix(), centre, dist=(0.35, 0.8))
    else:
        cams = rig(scene_rng, cfg.cameras, centre, dist=(0.35, 0.8), elev_deg=(-60, 70))

    def per_frame(t: int, c: int, K: np.ndarray, E: np.ndarray, vc: np.ndarray) -> dict[str, np.ndarray]:
        jc = to_camera(joints[t], E)
        return {"joints2d": project(jc, K).astype(np.float32), "joints3d": jc.astype(np.float32),
                "verts": vc.astype(np.float32), "global_orient": go[t].astype(np.float32),
                "cam_global_orient": _cam_orient(E, go[t]), "hand_pose": hp[t].astype(np.float32),
                "betas": betas.astype(np.float32), "transl": transl[t].astype(np.float32),
                "label": np.int64(labels[t])}

    return film(renderer, cfg, verts, cams, per_frame)

