"""Camera geometry of the synthetic world: look-at extrinsics, rigs around a subject, projection, crops
built into the intrinsics (pinhole, OpenCV axes: x right, y down, z forward; pixel centres at integers);
``film`` renders a sequence through a rig and ``rng_of`` seeds its random choices (shared by the people of
``humans.world`` and the objects of ``humans.objects``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from core.errors import DataError


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, 1.0, 0.0]),
            roll: float = 0.0) -> np.ndarray:
    """World->camera extrinsics [4, 4] (OpenCV: x right, y down, z forward) of a camera at ``eye``
    looking at ``target`` with world ``up`` pointing up in the image, rolled by ``roll`` radians."""
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, up)  # right = forward x up; OpenCV's y (down) = forward x right
    if np.linalg.norm(x) < 1e-6:
        x = np.cross(z, np.array([0.0, 0.0, 1.0]))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])  # rows: camera axes in world coords
    c, s = math.cos(roll), math.sin(roll)
    R = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ R
    E = np.eye(4)
    E[:3, :3] = R
    E[:3, 3] = -R @ eye
    return E


def rig(rng: np.random.Generator, n: int, target: np.ndarray, dist: tuple[float, float],
        elev_deg: tuple[float, float], jitter: float = 0.2) -> list[np.ndarray]:
    """``n`` cameras around ``target``: azimuths spread evenly (random start and jitter), random elevation
    and distance, slight roll, each looking at a point near ``target``.  -> list of extrinsics [4, 4]"""
    start = rng.uniform(0, 2 * np.pi)
    out = []
    for k in range(n):
        az = start + 2 * np.pi * k / n + rng.uniform(-0.35, 0.35) * 2 * np.pi / n
        el = np.radians(rng.uniform(*elev_deg))
        d = rng.uniform(*dist)
        eye = target + d * np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])
        aim = target + rng.normal(0, jitter * d * 0.05, 3)
        out.append(look_at(eye, aim, roll=np.radians(rng.normal(0, 3))))
    return out


def rig_seeing(rng: np.random.Generator, relative: np.ndarray, subject_rot: np.ndarray, target: np.ndarray,
               dist: tuple[float, float], jitter: float = 0.2) -> list[np.ndarray]:
    """Cameras that each see a subject of world rotation ``subject_rot`` [3, 3] with one of the camera-relative
    rotations ``relative`` [n, 3, 3] (``R_camera @ subject_rot``), at a random distance in ``dist``, looking at a
    point near ``target``.  -> list of extrinsics [4, 4]"""
    out = []
    for rel in relative:
        R = rel @ subject_rot.T
        d = rng.uniform(*dist)
        aim = target + rng.normal(0, jitter * d * 0.05, 3)
        eye = aim - d * R[2]  # the camera's z axis (row 2 in world coordinates) points at the aim
        E = np.eye(4)
        E[:3, :3] = R
        E[:3, 3] = -R @ eye
        out.append(E)
    return out


def to_camera(points: np.ndarray, extrinsics: np.ndarray) -> np.ndarray:
    """points: [..., 3] world -> [..., 3] camera coords."""
    return points @ extrinsics[:3, :3].T + extrinsics[:3, 3]


def project(points_cam: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pinhole projection.  points_cam: [..., 3] (z > 0); K: [3, 3] -> [..., 2] pixels."""
    p = points_cam @ K.T
    return p[..., :2] / p[..., 2:3]


def crop_intrinsics(verts_cam: np.ndarray, size: int, margin: float) -> np.ndarray:
    """Intrinsics of a square ``size`` px crop centred on the projected ``verts_cam`` [V, 3], whose side is
    ``margin`` x the longer side of their bounding box. The rig camera's focal length cancels out, so a
    unit focal length is used: K = [[f, 0, cx], [0, f, cy], [0, 0, 1]] of the crop.  -> [3, 3]"""
    uv = verts_cam[:, :2] / verts_cam[:, 2:3]  # normalised image coordinates (focal 1)
    lo, hi = uv.min(axis=0), uv.max(axis=0)
    centre = (lo + hi) / 2
    side = margin * float(max(hi - lo))
    a = size / side
    K = np.array([[a, 0.0, (side / 2 - centre[0]) * a - 0.5],
                  [0.0, a, (side / 2 - centre[1]) * a - 0.5],
                  [0.0, 0.0, 1.0]])
    return K


def bbox_of(uv: np.ndarray) -> np.ndarray:
    """Tight box (x, y, w, h) of pixel points [N, 2].  -> [4] float32"""
    lo, hi = uv.min(axis=0), uv.max(axis=0)
    return np.array([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]], np.float32)


def rng_of(seed: tuple[int, ...]) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(list(seed)))


def film(renderer: Any, cfg: Any, verts_world: np.ndarray, cameras: list[np.ndarray],
         per_frame: Callable[[int, int, np.ndarray, np.ndarray, np.ndarray], dict[str, np.ndarray]],
         parts: bool = True) -> list[dict[str, np.ndarray]]:
    """Render every (time, camera) of a sequence with an actor already set on ``renderer``; ``cfg`` is the
    world's ``WorldConfig`` (``domain``, ``size``, ``margin``).

    verts_world: [T, V, 3]. ``per_frame(t, c, K, E, verts_cam)`` returns the domain's annotations for
    that frame. Returns frames in (time-major, camera-minor) order.
    """
    frames = []
    for t in range(len(verts_world)):
        renderer.update_actor(verts_world[t])
        for c, E in enumerate(cameras):
            vc = to_camera(verts_world[t], E)
            if (vc[:, 2] <= 0.05).any():
                raise DataError(f"camera {c} of a {cfg.domain} sequence sees the subject from too close; "
                                "this is a bug in the rig parameters")
            K = crop_intrinsics(vc, cfg.size, cfg.margin)
            img = renderer.render(K, E, parts=parts)
            f = {"rgb": img["rgb"], "mask": img["mask"]}
            if parts and "parts" in img:
                f["parts"] = img["parts"]
            f.update(per_frame(t, c, K, E, vc))
            f["K"] = K.astype(np.float32)
            f["extrinsics"] = E.astype(np.float32)
            f["bbox"] = bbox_of(project(vc, K))
            frames.append(f)
    return frames
