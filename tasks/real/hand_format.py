"""Readers and writers of the FreiHAND and HO3D file formats (lmb-freiburg/freihand ``utils/fh_utils.py``,
``pred.py``; shreyashampali/ho3d ``utils/vis_utils.py``, ``pred.py``).

FreiHAND (Zimmermann et al., ICCV 2019), dataset root::

    training_K.json  training_xyz.json  training_verts.json  training_mano.json  training_scale.json
    training/rgb/%08d.jpg        (id + 32560 * v for the versions v = gs, hom, sample, auto; 32560 is fixed)
    evaluation_K.json  evaluation_xyz.json  evaluation_verts.json  evaluation_scale.json
    evaluation/rgb/%08d.jpg

K: list of 3x3; xyz: list of 21x3 (metres, camera frame, FreiHAND order); verts: list of 778x3; mano: list of
1x61 (pose 48, shape 10, uv_root 2, scale 1); scale: list of scalars. Submission: ``pred.json`` =
``[xyz_list (N x 21 x 3), verts_list (N x 778 x 3)]`` in metres.

HO3D v2/v3 (Hampali et al., CVPR 2020), dataset root::

    train.txt  evaluation.txt                    lines "<seq>/<id>"
    {train,evaluation}/<seq>/rgb/<id>.png|jpg    (v2: png, v3: jpg)
    {train,evaluation}/<seq>/meta/<id>.pkl       Python 2 pickles: handPose 48, handTrans 3, handBeta 10,
                                                 handJoints3D (train 21x3 MANO order; evaluation: root only),
                                                 camMat 3x3, handBoundingBox (evaluation, xyxy), objRot, ...

HO3D coordinates are OpenGL (camera looks along -z); they are converted to the OpenCV convention used by every
other task here (``OPENGL_TO_OPENCV``) when read, and back when the submission is written.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import DataError
from core.io import atomic_write_text
from tasks.protocols import MANO_TO_FREIHAND
from tasks.real.common import as_array, read_json, read_json_list
from tasks.real.safe_pickle import load_pickle

FREIHAND_SPLITS = {"train": "training", "test": "evaluation"}
FREIHAND_VERSIONS = ("gs", "hom", "sample", "auto")
#: the id offset between two versions of a training image: ``db_size('training')``, hard-coded in
#: lmb-freiburg/freihand ``utils/fh_utils.py::sample_version.map_id`` (not the length of the json lists)
FREIHAND_VERSION_STRIDE = 32560
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0]).astype(np.float32)


@dataclass
class HandFrames:
    """N hand frames. images: N paths; K: [N, 3, 3]; joints3d: [N, 21, 3] FreiHAND order, metres, OpenCV camera
    (None when hidden); verts: [N, 778, 3] or None; mano: [N, 61] (pose 48, shape 10, ...) or None;
    bbox: [N, 4] (x, y, w, h) or None (the image is the crop); ids: N frame names (for submissions)."""

    images: list[Path]
    K: np.ndarray
    joints3d: np.ndarray | None
    verts: np.ndarray | None
    mano: np.ndarray | None
    bbox: np.ndarray | None
    ids: list[str]
    root: np.ndarray | None = None  # [N, 3] the published root joint (HO3D evaluation), OpenCV camera

    def __len__(self) -> int:
        return len(self.images)


# ---------------------------------------------------------------------------------------------- FreiHAND
def read_freihand(data_dir: Path, split: str, versions: Sequence[str] = FREIHAND_VERSIONS) -> HandFrames:
    """FreiHAND ``train`` (training_*.json, all ``versions``) or ``test`` (the evaluation split) as validated
    arrays; every json must list the same number of frames."""
    if split not in FREIHAND_SPLITS:
        raise DataError(f"unknown FreiHAND split {split!r}; one of {', '.join(FREIHAND_SPLITS)}")
    pre = FREIHAND_SPLITS[split]
    K = read_json_list(data_dir / f"{pre}_K.json", (3, 3), "K")
    n = K.shape[0]
    xyz = read_json_list(data_dir / f"{pre}_xyz.json", (21, 3), "xyz", n)
    verts_path = data_dir / f"{pre}_verts.json"
    verts = read_json_list(verts_path, (778, 3), "verts", n) if verts_path.is_file() else None
    if split == "test" and verts is None:
        raise DataError(f"missing {verts_path}: the FreiHAND evaluation annotations (evaluation_xyz.json, "
                        "evaluation_verts.json) are part of the public FreiHAND v2 download")
    mano = None
    if split == "train":
        mano = read_json_list(data_dir / f"{pre}_mano.json", (1, 61), "mano", n)[:, 0]
    scale = read_json_list(data_dir / f"{pre}_scale.json", (), "scale", n) \
        if (data_dir / f"{pre}_scale.json").is_file() else None
    if scale is not None and (scale <= 0).any():
        raise DataError(f"{data_dir / f'{pre}_scale.json'}: scales must be positive")
    img_dir = data_dir / pre / "rgb"
    if split == "test":
        versions = ("gs",)
    unknown = [v for v in versions if v not in FREIHAND_VERSIONS]
    if unknown:
        raise DataError(f"unknown FreiHAND versions {unknown}; choose from {', '.join(FREIHAND_VERSIONS)}")
    ids, images = [], []
    for v in versions:
        off = FREIHAND_VERSIONS.index(v) * FREIHAND_VERSION_STRIDE
        if not (img_dir / f"{off:08d}.jpg").is_file():
            raise DataError(f"missing {img_dir / f'{off:08d}.jpg'} (FreiHAND {pre} images, version {v!r}); "
                            f"extract the FreiHAND {pre} images there")
        ids += [f"{i + off:08d}" for i in range(n)]
        images += [img_dir / f"{i + off:08d}.jpg" for i in range(n)]
    reps = len(versions)
    return HandFrames(images=images, K=np.tile(K, (reps, 1, 1)), joints3d=np.tile(xyz, (reps, 1, 1)),
                      verts=None if verts is None else np.tile(verts, (reps, 1, 1)),
                      mano=None if mano is None else np.tile(mano, (reps, 1)), bbox=None, ids=ids)


def write_hand_submission(path: Path, xyz: np.ndarray, verts: np.ndarray) -> Path:
    """The FreiHAND/HO3D submission ``pred.json`` = ``[xyz_list, verts_list]`` (metres), written atomically.

    xyz: [N, 21, 3]; verts: [N, 778, 3], in the order of the evaluation split.
    """
    xyz, verts = np.asarray(xyz, np.float64), np.asarray(verts, np.float64)
    if xyz.ndim != 3 or xyz.shape[1:] != (21, 3) or verts.ndim != 3 or verts.shape[1:] != (778, 3) \
            or len(xyz) != len(verts):
        raise DataError(f"submission needs xyz [N, 21, 3] and verts [N, 778, 3], got {xyz.shape} and {verts.shape}")
    if not (np.isfinite(xyz).all() and np.isfinite(verts).all()):
        raise DataError("refusing to write a submission with NaN/inf predictions")
    text = json.dumps([np.round(xyz, 6).tolist(), np.round(verts, 6).tolist()])
    atomic_write_text(Path(path), text)
    return Path(path)


def read_hand_submission(path: Path, n_expected: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``pred.json`` -> (xyz [N, 21, 3], verts [N, V, 3]) float64, metres; ``n_expected``: the evaluation frames.

    V is MANO's 778 in a submission; another mesh is read too (FreiHAND's script scores it without PA-MPVPE).
    """
    path = Path(path)
    fmt = "FreiHAND's submission format [xyz_list, verts_list] (N x 21 x 3 and N x 778 x 3, metres)"
    if not path.is_file():
        raise DataError(f"{path} not found: expected {fmt}")
    data = read_json(path)
    if not (isinstance(data, list) and len(data) == 2):
        raise DataError(f"{path}: expected {fmt}, got a JSON {type(data).__name__}"
                        + (f" of length {len(data)}" if isinstance(data, list) else ""))
    xyz = as_array(data[0], "xyz_list", str(path), (None, 21, 3), dtype=np.float64)
    verts = as_array(data[1], "verts_list", str(path), (None, None, 3), dtype=np.float64)
    if len(xyz) != len(verts):
        raise DataError(f"{path}: xyz_list has {len(xyz)} samples but verts_list {len(verts)}; both need one entry "
                        "per evaluation frame")
    if n_expected is not None and len(xyz) != n_expected:
        raise DataError(f"{path}: {len(xyz)} predictions for {n_expected} ground-truth frames; the submission needs "
                        "one entry per evaluation frame, in evaluation order")
    return xyz, verts


# ---------------------------------------------------------------------------------------------- HO3D
HO3D_SPLITS = {"train": ("train", "train.txt"), "test": ("evaluation", "evaluation.txt")}


def read_frame_list(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"missing {path} (the HO3D frame list); extract the HO3D download there")
    names = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    for ln in names:
        parts = ln.split("/")
        if len(parts) != 2 or not all(parts) or ".." in parts:
            raise DataError(f"{path}: line {ln!r} is not '<sequence>/<frame id>'")
    if not names:
        raise DataError(f"{path} lists no frames")
    return names


def read_ho3d_meta(path: Path, split: str) -> dict[str, Any] | None:
    """One HO3D meta pickle. Train frames without hand annotation (``handJoints3D`` None) -> None."""
    meta = load_pickle(path)
    src = str(path)
    if not isinstance(meta, dict):
        raise DataError(f"{src}: expected a dict of annotations, got {type(meta).__name__}")
    joints = meta.get("handJoints3D")
    if split == "train" and (meta.get("objRot") is None or joints is None or meta.get("handPose") is None):
        return None  # shreyashampali/ho3d vis_HO3D.py: a frame whose objRot is None has no annotations
    if meta.get("camMat") is None:
        raise DataError(f"{src}: no camMat (camera intrinsics)")
    out: dict[str, Any] = {"K": as_array(meta["camMat"], "camMat", src, (3, 3))}
    if split == "test":
        if joints is None:
            raise DataError(f"{src}: no handJoints3D (the root joint of the evaluation split)")
        out["root"] = as_array(joints, "handJoints3D", src, (3,)) @ OPENGL_TO_OPENCV.T
        if meta.get("handBoundingBox") is None:
            raise DataError(f"{src}: no handBoundingBox")
        out["bbox_xyxy"] = as_array(meta["handBoundingBox"], "handBoundingBox", src, (4,))
        return out
    j = as_array(joints, "handJoints3D", src, (21, 3)) @ OPENGL_TO_OPENCV.T
    out["joints3d"] = j[list(MANO_TO_FREIHAND)].astype(np.float32)
    pose = as_array(meta["handPose"], "handPose", src, (48,))
    beta = as_array(meta["handBeta"], "handBeta", src, (10,))
    trans = as_array(meta["handTrans"], "handTrans", src, (3,))
    out["mano"] = np.concatenate([pose, beta, trans]).astype(np.float32)  # OpenGL frame, as published
    return out


def ho3d_image(split_dir: Path, name: str) -> Path:
    seq, fid = name.split("/")
    for ext in (".jpg", ".png"):  # v3, v2
        p = split_dir / seq / "rgb" / f"{fid}{ext}"
        if p.is_file():
            return p
    raise DataError(f"missing image {split_dir / seq / 'rgb' / fid}.jpg|.png; extract the HO3D images there")


def read_ho3d(data_dir: Path, split: str) -> HandFrames:
    """HO3D ``train`` (annotated frames of train.txt) or ``test`` (evaluation.txt; 3D labels hidden: only the root
    joint and the hand box are published). Bboxes: ``handBoundingBox`` (test) or the projected joints (train)."""
    if split not in HO3D_SPLITS:
        raise DataError(f"unknown HO3D split {split!r}; one of {', '.join(HO3D_SPLITS)}")
    sub, list_name = HO3D_SPLITS[split]
    names = read_frame_list(data_dir / list_name)
    split_dir = data_dir / sub
    images, Ks, joints, manos, boxes, roots, ids = [], [], [], [], [], [], []
    for name in names:
        seq, fid = name.split("/")
        meta = read_ho3d_meta(split_dir / seq / "meta" / f"{fid}.pkl", split)
        if meta is None:
            continue
        images.append(ho3d_image(split_dir, name))
        Ks.append(meta["K"])
        ids.append(name)
        if split == "test":
            x0, y0, x1, y1 = meta["bbox_xyxy"]
            boxes.append([x0, y0, x1 - x0, y1 - y0])
            roots.append(meta["root"])
        else:
            uv = meta["joints3d"] @ meta["K"].T
            uv = uv[:, :2] / np.clip(uv[:, 2:], 1e-6, None)
            lo, hi = uv.min(0), uv.max(0)
            boxes.append([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]])
            joints.append(meta["joints3d"])
            manos.append(meta["mano"])
    if not images:
        raise DataError(f"HO3D {split}: no annotated frame among the {len(names)} listed in {data_dir / list_name}")
    bbox = np.asarray(boxes, np.float32)
    if (bbox[:, 2:] <= 0).any():
        raise DataError(f"HO3D {split}: degenerate hand boxes (width or height <= 0) in {split_dir}")
    return HandFrames(images=images, K=np.stack(Ks).astype(np.float32),
                      joints3d=np.stack(joints) if joints else None, verts=None,
                      mano=np.stack(manos) if manos else None, bbox=bbox, ids=ids,
                      root=np.stack(roots).astype(np.float32) if roots else None)
