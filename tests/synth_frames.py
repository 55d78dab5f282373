"""Tiny, internally consistent synthetic frame sets for task/eval tests, made without rendering.

Geometry comes from the body/hand model through smplx (``tasks.heads.ModelDecoder``): random poses and shapes,
a camera in front of the subject, vertices and joints in camera coordinates, 2D joints = K @ joints3d, part
labels splatted from the projected vertices (part = the vertex's dominant skinning joint), a noise image with
the parts painted in. Train and test subjects are disjoint; ``label`` is a gesture class per sequence.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def make_frames(root: Path, domain: str, size: int = 32, seqs: int = 5, frames_per_seq: int = 3,
                seed: int = 0, n_labels: int = 3) -> Path:
    from scipy.spatial.transform import Rotation

    from humans.frames import FrameWriter
    from tasks.heads import ModelDecoder

    kind = "smpl" if domain == "body" else "mano"
    dec = ModelDecoder(kind)
    rng = np.random.default_rng(seed)
    part_of_vertex = dec.lbs_weights.argmax(1).numpy() + 1
    dist, sigma = (3.0, 0.25) if domain == "body" else (0.45, 0.35)
    w = FrameWriter(root, {"domain": domain, "size": size, "model": kind}, shard_size=4)
    for s in range(seqs):
        test = s == seqs - 1
        for f in range(frames_per_seq):
            aa = rng.normal(0, sigma, (dec.n_joints, 3))
            aa[0] = [0.0, rng.uniform(-0.6, 0.6), 0.0]
            if domain == "body":
                aa[0, 0] = np.pi  # SMPL's y-up model seen by an OpenCV (y-down) camera: turn it upright
            R = Rotation.from_rotvec(aa).as_matrix().astype(np.float32)
            betas = rng.normal(0, 0.5, 10).astype(np.float32)
            with torch.no_grad():
                v, j = dec(torch.from_numpy(R)[None], torch.from_numpy(betas)[None])
            transl = np.array([0, 0, dist], np.float32) - j[0, 0].numpy()
            verts, joints = v[0].numpy() + transl, j[0].numpy() + transl
            focal = size * 1.6 if domain == "body" else size * 1.2
            K = np.array([[focal, 0, size / 2 - 0.5], [0, focal, size / 2 - 0.5], [0, 0, 1]], np.float32)
            uv = verts @ K.T
            uv = uv[:, :2] / uv[:, 2:]
            j2 = joints @ K.T
            j2 = j2[:, :2] / j2[:, 2:]
            parts = np.zeros((size, size), np.uint8)
            px = np.clip(uv.round().astype(int), 0, size - 1)
            order = np.argsort(-verts[:, 2])  # far first, near vertices win
            parts[px[order, 1], px[order, 0]] = part_of_vertex[order]
            rgb = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            pi = parts.astype(np.int64)
            rgb[parts > 0] = np.stack([pi * 37 % 256, pi * 71 % 256, pi * 113 % 256], -1)[parts > 0]
            lo, hi = uv.min(0), uv.max(0)
            frame = {"rgb": rgb, "parts": parts, "mask": (parts > 0).astype(np.uint8),
                     "joints2d": j2.astype(np.float32),
                     "joints3d": joints.astype(np.float32), "verts": verts.astype(np.float32), "K": K,
                     "extrinsics": np.eye(4, dtype=np.float32), "global_orient": aa[0].astype(np.float32),
                     "betas": betas, "transl": transl,
                     "bbox": np.array([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]], np.float32)}
            frame["body_pose" if domain == "body" else "hand_pose"] = aa[1:].reshape(-1).astype(np.float32)
            w.add(frame, {"sequence": f"q{s}", "camera": "c0", "frame": f, "subject": f"p{s}", "motion": f"m{s}",
                          "split": "test" if test else "train", "label": s % n_labels})
    return w.close()
