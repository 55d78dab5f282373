"""Reader of 3DPW (von Marcard et al., "Recovering Accurate 3D Human Pose in the Wild Using IMUs and a Moving
Camera", ECCV 2018) in its published layout::

    3dpw/sequenceFiles/{train,validation,test}/<seq>.pkl     Python 2 pickles (read with encoding="latin1")
    3dpw/imageFiles/<seq>/image_%05d.jpg

Sequence keys (official readme; nkolot/SPIN ``datasets/preprocess/pw3d.py``): ``sequence``, ``betas`` (per actor,
10+), ``poses`` (per actor, N x 72), ``trans`` (per actor, N x 3), ``genders`` ('m'/'f'), ``poses2d`` (per actor,
N x 3 x 18, all zeros when fewer than 6 joints were detected), ``campose_valid`` (per actor, N bools),
``cam_poses`` (N x 4 x 4, world -> camera), ``cam_intrinsics`` (3 x 3), ``img_frame_ids`` (N).

Frame filter: ``campose_valid`` and a non-zero ``poses2d`` (the official challenge's ``check_valid_inds``,
aymenmir1/3dpw-eval ``evaluate.py``; SPIN's preprocessing needs the same detections for its bbox). The global
orientation is rotated into the camera, ``R_cam @ R(pose[:3])``, as SPIN does; ``trans`` is not used. Crops: the
tight box of the detected 2D joints enlarged 1.2x (SPIN's ``scaleFactor``).

Task ``3dpw`` (protocol ``3dpw-lsp14-h36m-pelvis``, nkolot/SPIN ``eval.py``): GT vertices from the gendered SMPL,
joints regressed with ``J_regressor_h36m``; the H36M pelvis (joint 0 of all 17) is subtracted, then the 14 LSP
joints (``H36M_TO_J14``) are compared: MPJPE and PA-MPJPE (no reflection) in mm. PVE: mean error over the 6890
vertices, each mesh centred on its own H36M pelvis (the same root as the joints), mm. Fine-tuning uses the 3DPW
training sequences (sequenceFiles/train). Version 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from core.errors import DataError
from core.registry import TASKS
from tasks import metrics
from tasks.base import FinetuneDefaults, MetricSpec
from tasks.protocols import PROTOCOLS, Protocol
from tasks.real.body import SMPL_HINT, SMPL_MODELS, RealBodyTask
from tasks.real.common import (
    BodyFrames,
    as_array,
    bbox_from_points,
    data_status,
    dataset_dir,
    gender_name,
    require_keys,
    rotate_orient,
)
from tasks.real.safe_pickle import load_pickle

PW3D_KEYS = ("sequence", "betas", "poses", "genders", "poses2d", "campose_valid", "cam_poses", "cam_intrinsics",
             "img_frame_ids")
PW3D_SPLITS = ("train", "validation", "test")


def _flat_betas(b: Any) -> Any:
    """One actor's betas as a vector: the readme calls them "10x1", so a column (10, 1) is flattened."""
    try:
        arr = np.asarray(b)
    except (TypeError, ValueError):
        return b  # as_array reports it
    return arr.reshape(-1) if arr.ndim == 2 and 1 in arr.shape else arr


def read_pw3d_sequence(path: Path) -> dict[str, Any]:
    """One 3DPW sequence pickle, validated: arrays with the documented shapes, or ``DataError``."""
    d = load_pickle(path)
    src = str(path)
    require_keys(d, PW3D_KEYS, src, "a 3DPW sequence")
    n_act = len(d["poses"])
    for k in ("betas", "genders", "poses2d", "campose_valid"):
        if len(d[k]) != n_act:
            raise DataError(f"{src}: {k} has {len(d[k])} actors but poses has {n_act}")
    if n_act == 0:
        raise DataError(f"{src}: no actors")
    frame_ids = as_array(d["img_frame_ids"], "img_frame_ids", src, (None,), np.int64)
    n = frame_ids.shape[0]
    out: dict[str, Any] = {
        "sequence": str(d["sequence"]),
        "img_frame_ids": frame_ids,
        "cam_poses": as_array(d["cam_poses"], "cam_poses", src, (n, 4, 4)),
        "cam_intrinsics": as_array(d["cam_intrinsics"], "cam_intrinsics", src, (3, 3)),
        "poses": [as_array(p, f"poses[{i}]", src, (n, 72)) for i, p in enumerate(d["poses"])],
        "betas": [as_array(_flat_betas(b), f"betas[{i}]", src, (None,))[:10] for i, b in enumerate(d["betas"])],
        "genders": [gender_name(g, src) for g in d["genders"]],
        "poses2d": [as_array(p, f"poses2d[{i}]", src, (n, 3, 18)) for i, p in enumerate(d["poses2d"])],
        "campose_valid": [as_array(v, f"campose_valid[{i}]", src, (n,), bool)
                          for i, v in enumerate(d["campose_valid"])],
    }
    for i, b in enumerate(out["betas"]):
        if b.shape[0] < 10:
            raise DataError(f"{src}: betas[{i}] has {b.shape[0]} values, expected at least 10")
    return out


def pw3d_frames(seq: dict[str, Any], image_dir: Path) -> BodyFrames:
    """The frames of one parsed sequence that pass the filter (campose_valid and non-zero poses2d)."""
    parts = []
    name = seq["sequence"]
    for a, (pose, valid, p2d) in enumerate(zip(seq["poses"], seq["campose_valid"], seq["poses2d"], strict=True)):
        detected = (p2d[:, 2, :] > 0).any(axis=1)
        keep = np.flatnonzero(valid & detected)
        if keep.size == 0:
            continue
        R = seq["cam_poses"][keep, :3, :3]
        orient = rotate_orient(pose[keep, :3], R)
        boxes = np.stack([bbox_from_points(p2d[f, :2][:, p2d[f, 2] > 0].T) for f in keep])
        parts.append(BodyFrames(
            images=[image_dir / name / f"image_{int(f):05d}.jpg" for f in keep], bbox=boxes,
            global_orient=orient, body_pose=pose[keep, 3:].astype(np.float32),
            betas=np.repeat(seq["betas"][a][None], keep.size, 0).astype(np.float32),
            gender=[seq["genders"][a]] * keep.size,
            K=np.repeat(seq["cam_intrinsics"][None], keep.size, 0).astype(np.float32),
            sequence=[name] * keep.size, frame=keep.astype(np.int64), actor=np.full(keep.size, a, np.int64)))
    return BodyFrames.concat(parts) if parts else BodyFrames.empty()


def read_pw3d(data_dir: Path, split: str = "test") -> BodyFrames:
    """All kept frames of a 3DPW split (sequences in sorted order). ``data_dir`` holds sequenceFiles/, imageFiles/."""
    if split not in PW3D_SPLITS:
        raise DataError(f"unknown 3DPW split {split!r}; one of {', '.join(PW3D_SPLITS)}")
    seq_dir = data_dir / "sequenceFiles" / split
    files = sorted(seq_dir.glob("*.pkl"))
    if not files:
        raise DataError(f"no 3DPW sequence pickles in {seq_dir}; extract sequenceFiles.zip of the 3DPW download there")
    frames = BodyFrames.concat([pw3d_frames(read_pw3d_sequence(f), data_dir / "imageFiles") for f in files])
    if len(frames) == 0:
        raise DataError(f"3DPW {split}: no frame passes the filter (campose_valid and detected 2D pose) in {seq_dir}")
    return frames


# ---------------------------------------------------------------------------------------------- the task
PW3D_HINT = ("Download 3DPW (virtualhumans.mpi-inf.mpg.de/3DPW: sequenceFiles.zip and imageFiles.zip) and extract "
             "both into $CPCBENCH_DATA/3dpw/ (giving 3dpw/sequenceFiles/test/*.pkl and 3dpw/imageFiles/<seq>/).")


@TASKS.register("3dpw")
class PW3DTask(RealBodyTask):
    """3DPW test split: MPJPE / PA-MPJPE on the 14 LSP joints (H36M regressor, H36M pelvis root) and PVE (mm)."""

    name: ClassVar[str] = "3dpw"
    version: ClassVar[str] = "1"
    citation: ClassVar[str] = ("von Marcard et al., Recovering Accurate 3D Human Pose in the Wild Using IMUs and a "
                               "Moving Camera, ECCV 2018; protocol of nkolot/SPIN eval.py")
    protocol: ClassVar[Protocol] = PROTOCOLS["3dpw-lsp14-h36m-pelvis"]
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("mpjpe", "mm", False, "14 LSP joints from J_regressor_h36m, H36M pelvis subtracted"),
        MetricSpec("pa_mpjpe", "mm", False, "after similarity alignment (no reflection)", aligned=True),
        MetricSpec("pve", "mm", False, "6890 SMPL vertices, each mesh centred on its H36M pelvis"),
    )
    aligned_on: ClassVar[str] = "joints_h36m"
    primary_metric: ClassVar[str] = "pa_mpjpe"
    defaults: ClassVar[FinetuneDefaults] = FinetuneDefaults(
        steps=20000, batch_size=64, base_lr=1e-4, weight_decay=0.05, layer_decay=0.75, warmup_steps=500,
        img_size=224)
    data_hint: ClassVar[str] = PW3D_HINT + " " + SMPL_HINT
    data_short: ClassVar[str] = "3DPW sequenceFiles + imageFiles (virtualhumans.mpi-inf.mpg.de/3DPW); real SMPL"

    def data_dir(self) -> Path:
        return dataset_dir(self.root, "3dpw", "sequenceFiles", self.data_hint, self.name)

    def data_status(self) -> dict[str, str]:
        return data_status(self.root, "3dpw", "sequenceFiles", self.data_short, models=SMPL_MODELS)

    def body_frames(self, split: str) -> BodyFrames:
        return read_pw3d(self.data_dir(), split)

    def score_arrays(self, a: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        s = self.protocol.scale
        out = self.protocol.evaluate_joints(a["pred/joints_h36m"], a["gt/joints_h36m"])
        out["pve"] = metrics.pve(a["pred/verts"] * s, a["gt/verts"] * s, root_pred=a["pred/joints_h36m"][:, 0] * s,
                                 root_gt=a["gt/joints_h36m"][:, 0] * s)
        return out
