"""Human3.6M (Ionescu et al., "Human3.6M: Large Scale Datasets and Predictive Methods for 3D Human Sensing in Natural
Environments", TPAMI 2014) in SPIN's preprocessed form, protocols 1 and 2 (``h36m-p1``, ``h36m-p2``).

Layout (nkolot/SPIN ``config.py``; ``tasks.real.spin_npz`` documents the keys)::

    h36m/h36m_valid_protocol1.npz    S9, S11, every 5th frame, all 4 cameras
    h36m/h36m_valid_protocol2.npz    the same frames of camera 60457274 only
    h36m/h36m_train.npz              training frames (S1, S5, S6, S7, S8) with S (and pose/shape where moshed)
    h36m/images/...                  the frames named by ``imgname`` (paths relative to h36m/)

Protocol (SPIN ``eval.py``): the predicted mesh's joints regressed with ``J_regressor_h36m``, H36M pelvis
subtracted, 14 LSP joints (``H36M_TO_J14``) against the GT ``S`` joints mapped to the same 14 (``J24_TO_J14``;
here the 17 H36M joints are recovered from ``S`` with ``SPIN24_TO_H36M17`` and both sides use ``H36M_TO_J14``);
MPJPE (protocol 1 reports it) and PA-MPJPE (protocol 2's number) in mm. Crops: SPIN's ``center``/``scale`` box.
Items: ``image``, ``joints_h36m`` [17, 3] (metres, pelvis-centred), ``bbox``, ``index``, ``frame_id``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from core.errors import DataError
from core.registry import TASKS
from tasks.base import FinetuneDefaults, MetricSpec, Task
from tasks.protocols import PROTOCOLS, Protocol
from tasks.real.body import SMPL_HINT, BodyMeshModel, regressor_info, require_real_smpl
from tasks.real.common import ArrayTargets, CropDataset, data_status, dataset_dir, limit_indices
from tasks.real.spin_npz import read_spin_npz

H36M_HINT = ("Human3.6M (vision.imar.ro/human3.6m, after registration) preprocessed as in SPIN: put "
             "h36m_valid_protocol1.npz, h36m_valid_protocol2.npz (and h36m_train.npz for fine-tuning) from SPIN's "
             "dataset_extras into $CPCBENCH_DATA/h36m/, with the frames their imgname refers to (h36m/images/...) "
             "extracted by SPIN's datasets/preprocess/h36m.py.")


def _np(t: Any) -> np.ndarray:
    return t.detach().float().cpu().numpy()


class _H36M(Task):
    """Shared by ``h36m-p1`` and ``h36m-p2``."""

    domain: ClassVar[str] = "body"
    version: ClassVar[str] = "1"
    test_file: ClassVar[str] = ""
    citation: ClassVar[str] = ("Ionescu et al., Human3.6M, TPAMI 2014; SPIN preprocessing and eval.py "
                               "(Kolotouros et al., ICCV 2019)")
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("mpjpe", "mm", False, "14 LSP joints from J_regressor_h36m, H36M pelvis subtracted"),
        MetricSpec("pa_mpjpe", "mm", False, "after similarity alignment (no reflection)", aligned=True),
    )
    aligned_on: ClassVar[str] = "joints_h36m"
    defaults: ClassVar[FinetuneDefaults] = FinetuneDefaults(
        steps=20000, batch_size=64, base_lr=1e-4, weight_decay=0.05, layer_decay=0.75, warmup_steps=500,
        img_size=224)
    data_hint: ClassVar[str] = H36M_HINT + " " + SMPL_HINT
    data_short: ClassVar[str] = "SPIN's h36m_valid_protocol{1,2}.npz + h36m_train.npz + Human3.6M frames; real SMPL"

    def data_status(self) -> dict[str, str]:
        return data_status(self.root, "h36m", self.test_file, self.data_short, models=(("smpl", "neutral"),))

    def data_info(self) -> dict[str, Any]:
        return {**self.data_status(), **regressor_info()}

    def npz_path(self, split: str) -> Path:
        if split not in ("train", "test"):
            raise DataError(f"split must be 'train' or 'test', got {split!r}")
        d = dataset_dir(self.root, "h36m", self.test_file, self.data_hint, self.name)
        path = d / (self.test_file if split == "test" else "h36m_train.npz")
        if not path.is_file():
            raise DataError(f"task {self.name!r}: missing {path}. {self.data_hint}")
        return path

    def build_dataset(self, split: str, img_size: int, limit: int | None = None) -> CropDataset:
        path = self.npz_path(split)
        npz = read_spin_npz(path, require=("S",))
        idx = limit_indices(len(npz), limit)
        joints = npz.joints_h36m17()[idx]
        joints = joints - joints[:, :1]
        images = [path.parent / npz.imgname[i] for i in idx]
        bbox = npz.bbox[idx]
        return CropDataset(images, bbox, img_size, ArrayTargets({"joints_h36m": joints}), bbox_scale=1.0,
                           frame_ids=idx)

    def build_head(self, backbone_info: Mapping[str, Any]):
        require_real_smpl(("neutral",))
        return BodyMeshModel(backbone_info)

    def loss(self, pred, batch):
        p = pred["joints_h36m"] - pred["joints_h36m"][:, :1]
        g = batch["joints_h36m"] - batch["joints_h36m"][:, :1]
        return {"loss": (p - g).abs().mean()}

    def ground_truth(self, batch) -> dict[str, np.ndarray]:
        return {"gt/joints_h36m": _np(batch["joints_h36m"]), "gt/frame_id": batch["frame_id"].cpu().numpy()}

    def predictions(self, pred, batch) -> dict[str, np.ndarray]:
        return {"pred/joints_h36m": _np(pred["joints_h36m"]), **self.ground_truth(batch)}

    def score_arrays(self, a: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.protocol.evaluate_joints(a["pred/joints_h36m"], a["gt/joints_h36m"])


@TASKS.register("h36m-p1")
class H36MP1(_H36M):
    """Human3.6M protocol 1 (S9, S11, all cameras): MPJPE / PA-MPJPE on 14 joints (mm)."""

    name: ClassVar[str] = "h36m-p1"
    protocol: ClassVar[Protocol] = PROTOCOLS["h36m-p1"]
    test_file: ClassVar[str] = "h36m_valid_protocol1.npz"
    primary_metric: ClassVar[str] = "mpjpe"


@TASKS.register("h36m-p2")
class H36MP2(_H36M):
    """Human3.6M protocol 2 (S9, S11, camera 60457274): PA-MPJPE / MPJPE on 14 joints (mm)."""

    name: ClassVar[str] = "h36m-p2"
    protocol: ClassVar[Protocol] = PROTOCOLS["h36m-p2"]
    test_file: ClassVar[str] = "h36m_valid_protocol2.npz"
    primary_metric: ClassVar[str] = "pa_mpjpe"
