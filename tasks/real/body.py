"""What the real body benchmarks (3DPW, EMDB, Human3.6M) share: SMPL ground truth from the published parameters,
the model-based mesh head, losses, and the body-model requirements.

Ground truth of 3DPW and EMDB comes from the published SMPL parameters through the **gendered** SMPL model
(``humans.models.load_model("smpl", gender)``, files from ``$CPCBENCH_MODELS``), global orientation in the camera
frame, no translation (nkolot/SPIN ``eval.py``; eth-ait/emdb ``evaluation_engine.py``). Predictions come from the
neutral SMPL. Joints of the H36M protocols are regressed from the vertices with ``J_regressor_h36m.npy`` (SPIN's
data), which must lie beside the SMPL files or at the root of ``$CPCBENCH_MODELS`` (SPIN's and 4D-Humans' layout,
``data/J_regressor_h36m.npy`` next to ``data/smpl/``; ``humans.models.h36m_regressor_file``); the record's ``data``
block names the file used. The benchmarks' numbers are only comparable with the real SMPL and the real regressor,
so these tasks refuse the embedded synthetic body model.

Item targets (all root-relative to SMPL joint 0, metres, camera orientation): ``joints3d`` [24, 3], ``verts``
[6890, 3], ``joints_h36m`` [17, 3], plus ``global_orient`` [3], ``body_pose`` [69], ``betas`` [10], ``gender``
(0 neutral, 1 male, 2 female), ``K`` [3, 3] of the crop, ``bbox`` [4].
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from core.errors import DataError
from humans.models import forward, h36m_regressor_file, load_model, model_info, real_model_file
from tasks import heads
from tasks.base import Task
from tasks.real.common import GENDER_CODE, BodyFrames, CropDataset, limit_indices, single_thread

SMPL_MODELS: tuple[tuple[str, str], ...] = (("smpl", "neutral"), ("smpl", "male"), ("smpl", "female"))
SMPL_HINT = ("Download the SMPL body model (smpl.is.tue.mpg.de: SMPL_NEUTRAL/MALE/FEMALE .pkl) into "
             "$CPCBENCH_MODELS/smpl/, and SPIN's J_regressor_h36m.npy (from SPIN's fetch_data.sh data) beside them "
             "or into $CPCBENCH_MODELS/.")


def require_real_smpl(genders: tuple[str, ...] = ("neutral", "male", "female"), h36m: bool = True) -> None:
    """The real SMPL files (and ``J_regressor_h36m.npy``) under ``$CPCBENCH_MODELS``, else a ``DataError``."""
    for g in genders:
        path = real_model_file("smpl", g)
        if path is None:
            raise DataError(f"the real-body benchmarks need the real SMPL model ({g}): none under "
                            f"$CPCBENCH_MODELS. {SMPL_HINT}")
    if h36m and h36m_regressor_file() is None:
        path = real_model_file("smpl", "neutral")
        where = path.parent if path is not None else "$CPCBENCH_MODELS"
        raise DataError(f"missing J_regressor_h36m.npy (the H36M-17 joint regressor of the protocol): looked in "
                        f"{where} and the root of $CPCBENCH_MODELS. {SMPL_HINT}")


def regressor_info() -> dict[str, str]:
    """The ``data`` block entry naming the H36M regressor file a run used (for the result record)."""
    path = h36m_regressor_file()
    return {"h36m_regressor": str(path) if path is not None else "missing"}


def h36m_regressor() -> np.ndarray:
    """[17, 6890] ``J_regressor_h36m`` of the neutral SMPL (the user's file: ``humans.models.h36m_regressor_file``)."""
    return np.asarray(model_info("smpl", "neutral")["h36m_regressor"], np.float32)


class SmplGroundTruth:
    """Gendered SMPL -> (verts [6890, 3], joints [24, 3], joints_h36m [17, 3]), root-relative to SMPL joint 0.

    Thread-safe and cached per gender; one frame per call (items are built lazily by the dataset).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reg: np.ndarray | None = None

    def __getstate__(self) -> dict[str, Any]:  # picklable for DataLoader workers (the lock is not)
        return {"_reg": self._reg}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._lock = threading.Lock()
        self._reg = state["_reg"]

    def __call__(self, gender: str, global_orient: np.ndarray, body_pose: np.ndarray,
                 betas: np.ndarray) -> dict[str, np.ndarray]:
        with self._lock:
            if self._reg is None:
                self._reg = h36m_regressor()
            model = load_model("smpl", gender)
            with single_thread():
                out = forward("smpl", {"global_orient": global_orient[None], "body_pose": body_pose[None],
                                       "betas": betas[None, :10]}, model=model)
        verts = out["verts"][0].numpy().astype(np.float32)
        joints = out["joints"][0].numpy().astype(np.float32)
        root = joints[:1]
        return {"verts": verts - root, "joints3d": joints - root, "joints_h36m": self._reg @ verts - root}


class BodyTargets:
    """Item targets of a ``BodyFrames`` split: SMPL ground truth (run per item) + the published parameters."""

    def __init__(self, frames: BodyFrames) -> None:
        self.frames = frames
        self.gt = SmplGroundTruth()

    def __call__(self, i: int) -> dict[str, Any]:
        f = self.frames
        out = self.gt(f.gender[i], f.global_orient[i], f.body_pose[i], f.betas[i])
        out.update(global_orient=f.global_orient[i], body_pose=f.body_pose[i], betas=f.betas[i],
                   gender=np.int64(GENDER_CODE[f.gender[i]]), K=f.K[i])
        return out


class BodyMeshModel(nn.Module):
    """The head of the real body tasks: ``tasks.heads.MeshRegressor`` (ParamMeshHead + neutral SMPL decoding)
    with the H36M regressor attached. forward(tokens) -> {rotmat, betas, cam, verts [B, 6890, 3], joints3d
    [B, 24, 3], joints_h36m [B, 17, 3]} (root-relative to SMPL joint 0, metres)."""

    def __init__(self, backbone_info: Mapping[str, Any]) -> None:
        super().__init__()
        dim, prefix, _, _ = heads.check_backbone_info(backbone_info)
        decoder = heads.ModelDecoder("smpl")
        self.mesh = heads.MeshRegressor(heads.ParamMeshHead(dim, prefix, decoder.n_joints), decoder)
        self.register_buffer("j_h36m", torch.as_tensor(h36m_regressor()), persistent=False)

    def forward(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.mesh(tokens)
        return {**out, "joints_h36m": self.j_h36m.to(out["verts"].dtype) @ out["verts"]}


def _np(t: Any) -> np.ndarray:
    return t.detach().float().cpu().numpy()


class RealBodyTask(Task):
    """A body benchmark whose frames carry SMPL parameters (3DPW, EMDB): see the module docstring."""

    domain: ClassVar[str] = "body"
    bbox_scale: ClassVar[float] = 1.2  # SPIN's scaleFactor for 3DPW boxes from 2D keypoints
    #: whether the protocol's joints come from ``J_regressor_h36m`` (then the real file is required)
    needs_h36m_regressor: ClassVar[bool] = True

    def body_frames(self, split: str) -> BodyFrames:
        raise NotImplementedError

    def data_info(self) -> dict[str, Any]:
        info = dict(self.data_status())
        return {**info, **regressor_info()} if self.needs_h36m_regressor else info

    def build_dataset(self, split: str, img_size: int, limit: int | None = None) -> CropDataset:
        if split not in ("train", "test"):
            raise DataError(f"split must be 'train' or 'test', got {split!r}")
        frames = self.body_frames(split)
        keep = limit_indices(len(frames), limit)
        frames = frames.subset(keep)
        require_real_smpl(tuple(sorted(set(frames.gender) | {"neutral"})), h36m=self.needs_h36m_regressor)
        return CropDataset(frames.images, frames.bbox, img_size, BodyTargets(frames), bbox_scale=self.bbox_scale,
                           frame_ids=keep)

    def build_head(self, backbone_info: Mapping[str, Any]):
        require_real_smpl(("neutral",), h36m=self.needs_h36m_regressor)
        return BodyMeshModel(backbone_info)

    def loss(self, pred, batch):
        lj = (pred["joints3d"] - batch["joints3d"]).abs().mean()
        lv = (pred["verts"] - batch["verts"]).abs().mean()
        return {"loss": lj + lv, "loss_joints": lj, "loss_verts": lv}

    def ground_truth(self, batch) -> dict[str, np.ndarray]:
        return {"gt/joints3d": _np(batch["joints3d"]), "gt/verts": _np(batch["verts"]),
                "gt/joints_h36m": _np(batch["joints_h36m"]), "gt/frame_id": batch["frame_id"].cpu().numpy()}

    def predictions(self, pred, batch) -> dict[str, np.ndarray]:
        return {"pred/joints3d": _np(pred["joints3d"]), "pred/verts": _np(pred["verts"]),
                "pred/joints_h36m": _np(pred["joints_h36m"]), **self.ground_truth(batch)}
