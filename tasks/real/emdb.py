"""EMDB (Kaufmann et al., "EMDB: The Electromagnetic Database of Global 3D Human Pose and Shape in the Wild",
ICCV 2023), the EMDB1 test protocol, in its published layout (eth-ait/emdb ``dataset.md``)::

    emdb/P{0..9}/<seq>/P*_<seq>_data.pkl     pickle: gender, name, emdb1, emdb2, n_frames, good_frames_mask,
                                             camera{intrinsics, extrinsics (n x 4 x 4 world->cam), width, height},
                                             smpl{poses_root n x 3, poses_body n x 69, trans n x 3, betas 10},
                                             kp2d n x 24 x 2, bboxes{bboxes n x 4 xyxy, invalid_idxs}
    emdb/P{0..9}/<seq>/images/%05d.jpg

Protocol ``emdb-smpl24-hipmid`` (eth-ait/emdb ``evaluation_metrics.py``): all 24 SMPL joints of the GT-gender
SMPL, root = mean of SMPL joints 1 and 2 (hips), Procrustes without reflection; MVE on the 6890 vertices centred
on the same hip midpoint, MVE-PA with the transform estimated on the joints. Frames: sequences with
``emdb1 == True``, frames in ``good_frames_mask``. Crops: the published bbox (``invalid_idxs`` frames use the box of
the projected joints ``kp2d``), enlarged 1.2x.
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
from tasks.real.pw3d import PW3D_HINT, read_pw3d
from tasks.real.safe_pickle import load_pickle

EMDB_KEYS = ("gender", "name", "emdb1", "n_frames", "good_frames_mask", "camera", "smpl", "kp2d", "bboxes")


def read_emdb_sequence(path: Path) -> dict[str, Any]:
    """One ``*_data.pkl`` of EMDB, validated, or ``DataError``."""
    d = load_pickle(path)
    src = str(path)
    require_keys(d, EMDB_KEYS, src, "an EMDB sequence")
    require_keys(d["camera"], ("intrinsics", "extrinsics"), src, "camera")
    require_keys(d["smpl"], ("poses_root", "poses_body", "betas"), src, "smpl")
    require_keys(d["bboxes"], ("bboxes",), src, "bboxes")
    try:
        n = int(d["n_frames"])
    except (TypeError, ValueError) as err:
        raise DataError(f"{src}: n_frames is not an integer ({d['n_frames']!r})") from err
    inval = d["bboxes"].get("invalid_idxs", [])
    inval = as_array([] if inval is None else inval, "bboxes.invalid_idxs", src, (None,), np.int64)
    if inval.size and (inval.min() < 0 or inval.max() >= n):
        raise DataError(f"{src}: bboxes.invalid_idxs out of range for {n} frames")
    return {
        "name": str(d["name"]),
        "gender": gender_name(d["gender"], src),
        "emdb1": bool(d["emdb1"]),
        "n_frames": n,
        "good_frames_mask": as_array(d["good_frames_mask"], "good_frames_mask", src, (n,), bool),
        "intrinsics": as_array(d["camera"]["intrinsics"], "camera.intrinsics", src, (3, 3)),
        "extrinsics": as_array(d["camera"]["extrinsics"], "camera.extrinsics", src, (n, 4, 4)),
        "poses_root": as_array(d["smpl"]["poses_root"], "smpl.poses_root", src, (n, 3)),
        "poses_body": as_array(d["smpl"]["poses_body"], "smpl.poses_body", src, (n, 69)),
        "betas": as_array(d["smpl"]["betas"], "smpl.betas", src, (None,))[:10],
        "kp2d": as_array(d["kp2d"], "kp2d", src, (n, 24, 2)),
        "bboxes": as_array(d["bboxes"]["bboxes"], "bboxes.bboxes", src, (n, 4)),
        "invalid_idxs": inval,
    }


def emdb_frames(seq: dict[str, Any], seq_dir: Path) -> BodyFrames:
    """The ``good_frames_mask`` frames of one parsed sequence (empty when the sequence is not in EMDB1)."""
    if not seq["emdb1"]:
        return BodyFrames.empty()
    keep = np.flatnonzero(seq["good_frames_mask"])
    if keep.size == 0:
        return BodyFrames.empty()
    xyxy = seq["bboxes"][keep]
    boxes = np.stack([xyxy[:, 0], xyxy[:, 1], xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]], 1)
    bad = np.isin(keep, seq["invalid_idxs"]) | (boxes[:, 2] <= 0) | (boxes[:, 3] <= 0)
    for j in np.flatnonzero(bad):
        boxes[j] = bbox_from_points(seq["kp2d"][keep[j]])
    betas = seq["betas"]
    if betas.shape[0] < 10:
        raise DataError(f"{seq_dir}: smpl.betas has {betas.shape[0]} values, expected 10")
    k = keep.size
    return BodyFrames(
        images=[seq_dir / "images" / f"{int(f):05d}.jpg" for f in keep], bbox=boxes.astype(np.float32),
        global_orient=rotate_orient(seq["poses_root"][keep], seq["extrinsics"][keep, :3, :3]),
        body_pose=seq["poses_body"][keep].astype(np.float32), betas=np.repeat(betas[None], k, 0).astype(np.float32),
        gender=[seq["gender"]] * k, K=np.repeat(seq["intrinsics"][None], k, 0).astype(np.float32),
        sequence=[seq["name"]] * k, frame=keep.astype(np.int64), actor=np.zeros(k, np.int64))


def read_emdb(data_dir: Path, subset: str = "emdb1") -> BodyFrames:
    """All EMDB1 test frames under ``data_dir`` (= the folder holding P0..P9), sequences in sorted order."""
    if subset != "emdb1":
        raise DataError(f"unknown EMDB subset {subset!r}; only 'emdb1' (the image-based test set) is supported")
    files = sorted(data_dir.glob("P*/*/*_data.pkl"))
    if not files:
        raise DataError(f"no EMDB sequences (P*/<seq>/*_data.pkl) under {data_dir}; extract the EMDB download there")
    frames = BodyFrames.concat([emdb_frames(read_emdb_sequence(f), f.parent) for f in files])
    if len(frames) == 0:
        raise DataError(f"EMDB: no sequence under {data_dir} has emdb1 == True with good frames")
    return frames


# ---------------------------------------------------------------------------------------------- the task
EMDB_HINT = ("Download EMDB (eth-ait.github.io/emdb, after registration) and extract it into $CPCBENCH_DATA/emdb/ "
             "(giving emdb/P0/<seq>/P0_<seq>_data.pkl and images/). EMDB has no training split: fine-tuning uses "
             "the 3DPW training sequences ($CPCBENCH_DATA/3dpw/sequenceFiles/train).")


@TASKS.register("emdb")
class EMDBTask(RealBodyTask):
    """EMDB1: MPJPE / PA-MPJPE on 24 SMPL joints (hip-midpoint root), MVE / MVE-PA (mm); trained on 3DPW train."""

    name: ClassVar[str] = "emdb"
    version: ClassVar[str] = "1"
    citation: ClassVar[str] = ("Kaufmann et al., EMDB: The Electromagnetic Database of Global 3D Human Pose and Shape "
                               "in the Wild, ICCV 2023; protocol of eth-ait/emdb evaluation_metrics.py")
    protocol: ClassVar[Protocol] = PROTOCOLS["emdb-smpl24-hipmid"]
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("mpjpe", "mm", False, "24 SMPL joints, hip midpoint subtracted"),
        MetricSpec("pa_mpjpe", "mm", False, "after similarity alignment (no reflection)", aligned=True),
        MetricSpec("pve", "mm", False, "MVE: vertices centred on each mesh's hip midpoint"),
        MetricSpec("pa_pve", "mm", False, "MVE-PA: the joints' similarity transform applied to the vertices",
                   aligned=True),
    )
    primary_metric: ClassVar[str] = "pa_mpjpe"
    defaults: ClassVar[FinetuneDefaults] = FinetuneDefaults(
        steps=20000, batch_size=64, base_lr=1e-4, weight_decay=0.05, layer_decay=0.75, warmup_steps=500,
        img_size=224)
    data_hint: ClassVar[str] = EMDB_HINT + " " + SMPL_HINT
    data_short: ClassVar[str] = "EMDB (eth-ait.github.io/emdb) + 3DPW train (for fine-tuning); real SMPL"
    needs_h36m_regressor: ClassVar[bool] = False  # 24 SMPL joints: the H36M regressor is not part of the protocol

    def data_status(self) -> dict[str, str]:
        return data_status(self.root, "emdb", "P0", self.data_short, models=SMPL_MODELS)

    def body_frames(self, split: str) -> BodyFrames:
        if split == "train":
            return read_pw3d(dataset_dir(self.root, "3dpw", "sequenceFiles", PW3D_HINT + " (EMDB fine-tunes on "
                                         "the 3DPW training split.)", self.name), "train")
        return read_emdb(dataset_dir(self.root, "emdb", "P0", self.data_hint, self.name))

    def score_arrays(self, a: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        s = self.protocol.scale
        root = list(self.protocol.root_indices())
        pj, gj = a["pred/joints3d"] * s, a["gt/joints3d"] * s
        rp, rg = pj[:, root].mean(1), gj[:, root].mean(1)
        pjc, gjc = pj - rp[:, None], gj - rg[:, None]
        pv, gv = a["pred/verts"] * s - rp[:, None], a["gt/verts"] * s - rg[:, None]
        return {"mpjpe": metrics.mpjpe(pjc, gjc), "pa_mpjpe": metrics.pa_mpjpe(pjc, gjc, allow_reflection=False),
                "pve": metrics.pve(pv, gv),
                "pa_pve": metrics.pa_pve(pv, gv, allow_reflection=False, transform_from=(pjc, gjc))}
