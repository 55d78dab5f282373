"""The mesh tasks of the synthetic world (``tasks.synthetic`` states their protocols): model-based and
model-free body mesh recovery and hand mesh recovery, on root-relative 3D joints and vertices.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from core.errors import DataError
from core.registry import TASKS
from tasks import heads, metrics
from tasks.base import MetricSpec, Split
from tasks.protocols import PROTOCOLS
from tasks.real.freihand import HAND_METRICS, hand_array_scores
from tasks.synth_data import dataset_arrays
from tasks.synthetic import SYNTH_DEFAULTS, SynthTask, crop_units, to_numpy


class MeshTask(SynthTask):
    """Root-relative 3D joints and vertices; model-based or model-free head.

    Loss (metres, L1 as in HMR2.0's keypoint losses): joints + vertices; the model-based head adds its parameter
    losses (rotation matrices and betas, MSE) and a 2D keypoint loss through its weak-perspective camera (crop
    coordinates in [-1, 1]), with small weights.
    """

    fields: ClassVar[tuple[str, ...]] = ("joints3d", "verts", "root", "K", "rotmat", "betas", "joints2d")
    model_based: ClassVar[bool] = True
    head_from_data: ClassVar[bool] = True
    pool: ClassVar[str] = "mean"  # how the model-based head reads the tokens: "mean" (HMR) or "attn" (HMR2.0)
    w_rotmat: ClassVar[float] = 0.1
    w_root: ClassVar[float] = 0.0
    w_betas: ClassVar[float] = 0.001
    w_2d: ClassVar[float] = 0.05

    def _kind(self) -> str:
        return "smpl" if self.domain == "body" else "mano"

    def build_dataset(self, split: Split, img_size: int, limit: int | None = None) -> Dataset:
        ds = super().build_dataset(split, img_size, limit)
        self.check_model(self.arrays(split, img_size, limit))
        return ds

    def check_model(self, a: Mapping[str, np.ndarray], n: int = 4, tol: float = 0.005) -> None:
        """The frames' parameters must decode (through the body/hand model in use) to their stored vertices: a
        frame set rendered with another model version would give silently wrong mesh targets and metrics."""
        with torch.no_grad():
            verts, joints = heads.ModelDecoder(self._kind())(torch.from_numpy(a["rotmat"][:n]),
                                                             torch.from_numpy(a["betas"][:n]))
        err = float((verts - joints[:, :1] - torch.from_numpy(a["verts"][:n])).norm(dim=-1).max())
        if err > tol:
            raise DataError(f"frame set {self.frame_root()} was rendered with another {self._kind().upper()} model "
                            f"(its parameters decode to vertices up to {err * 1000:.0f} mm away from the stored ones): "
                            "delete it and re-render with `cpcbench data synth`, or pass a matching frame set")

    def init_params(self, train: Dataset | None) -> dict[str, torch.Tensor]:
        """Mean parameters (rotations, betas, camera) of ``train``, the samples the head trains on; {} without."""
        if train is None:
            return {}
        a = dataset_arrays(train, ("rotmat", "betas", "root", "K"))
        size = int(train[0]["image"].shape[-1])  # the crop the intrinsics K refer to
        root, k = a["root"].astype(np.float64), a["K"].astype(np.float64)
        scale = 2 * k[:, 0, 0] / (size * root[:, 2])  # weak perspective: crop units per metre at the root's depth
        uv = np.einsum("bij,bj->bi", k, root)
        t = (uv[:, :2] / uv[:, 2:] + 0.5) * 2 / size - 1
        return {"init_rotmat": heads.mean_rotation(torch.from_numpy(a["rotmat"])),
                "init_betas": torch.from_numpy(a["betas"].mean(0)),
                "init_cam": torch.tensor([scale.mean(), *t.mean(0)], dtype=torch.float32)}

    def build_head(self, backbone_info: Mapping[str, Any], train: Dataset | None = None) -> nn.Module:
        """``train``: the samples the head trains on (the ``--fraction`` subset); the head starts from their mean
        (HMR's mean-pose start), or, without ``train``, from the model's rest pose / template mesh."""
        dim, prefix, _, _ = heads.check_backbone_info(backbone_info)
        decoder = heads.ModelDecoder(self._kind())
        if self.model_based:
            return heads.MeshRegressor(heads.ParamMeshHead(dim, prefix, decoder.n_joints, pool=self.pool,
                                                     **self.init_params(train)), decoder)
        return heads.VertexRegressor(heads.VertexHead(dim, self.mean_mesh(decoder, train)), decoder)

    def mean_mesh(self, decoder: heads.ModelDecoder, train: Dataset | None) -> torch.Tensor:
        """[V, 3] the model-free head's starting mesh: the mean root-relative mesh of ``train`` (camera
        coordinates, as the targets), else the model's rest mesh."""
        if train is None:
            return decoder.template()
        return torch.from_numpy(dataset_arrays(train, ("verts",))["verts"].mean(0))

    def loss(self, pred: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        lj = (pred["joints3d"] - batch["joints3d"]).abs().mean()
        lv = (pred["verts"] - batch["verts"]).abs().mean()
        out = {"loss_joints": lj, "loss_verts": lv}
        total = lj + lv
        if "rotmat" in pred and "rotmat" in batch:
            out["loss_rotmat"] = ((pred["rotmat"] - batch["rotmat"]) ** 2).mean()
            out["loss_root"] = ((pred["rotmat"][:, 0] - batch["rotmat"][:, 0]) ** 2).mean()
            out["loss_betas"] = ((pred["betas"] - batch["betas"]) ** 2).mean()
            total = (total + self.w_rotmat * out["loss_rotmat"] + self.w_root * out["loss_root"]
                     + self.w_betas * out["loss_betas"])
        if "cam" in pred and "joints2d" in batch:
            cam = pred["cam"]
            proj = cam[:, None, :1] * pred["joints3d"][..., :2] + cam[:, None, 1:]
            out["loss_2d"] = (proj - crop_units(batch["joints2d"], batch["image"].shape[-1])).abs().mean()
            total = total + self.w_2d * out["loss_2d"]
        return {"loss": total, **out}

    def pred_arrays(self, pred: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {"pred/joints3d": to_numpy(pred["joints3d"]), "pred/verts": to_numpy(pred["verts"])}

    def ground_truth(self, batch: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {"gt/joints3d": to_numpy(batch["joints3d"]), "gt/verts": to_numpy(batch["verts"])}


@TASKS.register("synth-body-mesh")
class SynthBodyMesh(MeshTask):
    """Model-based body mesh recovery on the synthetic world (SMPL params via smplx; MPJPE, PA-MPJPE, PVE)."""

    name = "synth-body-mesh"
    version = "2"  # 2: + the facing metrics (the predicted root orientation's yaw about the camera's up axis)
    domain = "body"
    protocol = PROTOCOLS["synth-smpl24-pelvis"]
    metrics = (MetricSpec("mpjpe", "mm", False, "24 SMPL joints, joint 0 subtracted"),
               MetricSpec("pa_mpjpe", "mm", False, "after similarity alignment (no reflection)", aligned=True),
               MetricSpec("pve", "mm", False, "vertices, joint 0 subtracted"),
               MetricSpec("facing_err", "deg", False, "facing yaw of the root orientation vs the camera, absolute "
                          "error wrapped to [0, 180] (random: 90)"),
               MetricSpec("facing45", "%", True, "frames whose facing yaw is within 45 deg of the truth (random: 25; "
                          "> 50 means a median facing error below 45 deg)"))
    primary_metric = "pa_mpjpe"
    defaults = SYNTH_DEFAULTS

    def pred_arrays(self, pred: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {**super().pred_arrays(pred), "pred/root_rot": to_numpy(pred["rotmat"][:, 0])}

    def ground_truth(self, batch: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {**super().ground_truth(batch), "gt/root_rot": to_numpy(batch["rotmat"][:, 0])}

    def score_arrays(self, a: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        p, g = self.protocol.prepare(a["pred/joints3d"], a["gt/joints3d"])
        out = {"mpjpe": metrics.mpjpe(p, g), "pa_mpjpe": metrics.pa_mpjpe(p, g, allow_reflection=False),
               "pve": metrics.pve(a["pred/verts"] * self.protocol.scale, a["gt/verts"] * self.protocol.scale)}
        if "pred/root_rot" not in a or "gt/root_rot" not in a:
            raise DataError("synth-body-mesh predictions lack 'pred/root_rot' / 'gt/root_rot' (the camera-frame root "
                            "rotations [N, 3, 3]) needed for the facing metrics; re-run the evaluation")
        err = metrics.facing_error(a["pred/root_rot"], a["gt/root_rot"])
        return {**out, "facing_err": err, "facing45": 100.0 * (err < 45.0)}


@TASKS.register("synth-body-meshfree")
class SynthBodyMeshFree(MeshTask):
    """Model-free body mesh recovery on the synthetic world (vertices directly; PVE, PA-PVE, MPJPE)."""

    name = "synth-body-meshfree"
    version = "1"
    domain = "body"
    model_based = False
    fields = ("joints3d", "verts", "root", "K", "rotmat", "betas")
    protocol = PROTOCOLS["synth-smpl24-pelvis"]
    metrics = (MetricSpec("pve", "mm", False, "vertices, joint 0 subtracted"),
               MetricSpec("pa_pve", "mm", False, "vertices after similarity alignment on the vertices",
                          aligned=True),
               MetricSpec("mpjpe", "mm", False, "24 joints regressed from the vertices, joint 0 subtracted"))
    primary_metric = "pve"
    defaults = SYNTH_DEFAULTS

    def score_arrays(self, a: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        s = self.protocol.scale
        p, g = self.protocol.prepare(a["pred/joints3d"], a["gt/joints3d"])
        pv, gv = a["pred/verts"] * s, a["gt/verts"] * s
        return {"pve": metrics.pve(pv, gv), "pa_pve": metrics.pa_pve(pv, gv, allow_reflection=False),
                "mpjpe": metrics.mpjpe(p, g)}


@TASKS.register("synth-hand-mesh")
class SynthHandMesh(MeshTask):
    """Hand mesh recovery on the synthetic world, FreiHAND protocol (PA-MPJPE, PA-MPVPE, F@5, F@15, AUC)."""

    name = "synth-hand-mesh"
    version = "1"
    domain = "hand"
    protocol = PROTOCOLS["synth-mano21-root"]
    metrics = HAND_METRICS
    primary_metric = "pa_mpjpe"
    defaults = SYNTH_DEFAULTS

    def score_arrays(self, a: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return hand_array_scores(a, self.protocol)

