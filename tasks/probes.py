"""Probes of 3D human understanding on frozen features (issue #15): global targets read from one pooled vector.

Each task here asks one question about the person in a frame of the embedded synthetic world and answers it with a
light head on the backbone's tokens: the mean of the patch tokens, a LayerNorm and one linear layer (``build_head``;
protocol ``linear`` on frozen tokens), or the same linear layer on an attentive pooling of the tokens
(``vector_head``; protocol ``attentive``), or full fine-tuning (``finetune``). What they measure:

- ``probe-body-facing``: which way the body faces, relative to the camera. The root (pelvis) orientation in camera
  coordinates ``R`` (``cam_global_orient``: world->camera rotation times the SMPL global orientation) maps the body's
  forward axis (SMPL's +z: out of the chest) to ``f = R[:, 2]`` in OpenCV camera axes (x right, y down, z away from
  the camera). The yaw is ``atan2(f_x, -f_z)`` in degrees, in (-180, 180]: 0 = facing the camera, +90 = the front
  points to the image's right (+x), -90 = to its left, 180 = the back is seen. Equivalently: the body that faces the
  camera, turned by +yaw about the camera's up axis (-y). The elevation of ``f`` is ignored (bodies stand upright;
  camera elevations are at most 35 deg). It is the quantity MPJPE/PVE need and PA-MPJPE aligns away (the facing
  diagnosis of issue #6), so it asks whether a pretraining encodes the global 3D orientation of a person. Prediction:
  (cos, sin) of the yaw, MSE; metrics ``yaw_err`` (mean absolute angular error, wrapped to [0, 180] deg, lower is
  better) and ``yaw_acc8`` (% of frames whose predicted yaw falls in the true one of 8 bins of 45 deg, bin k =
  [45 k - 22.5, 45 k + 22.5) deg, bin 0 centred on facing the camera; chance 12.5 % for uniform yaws). ``knn``
  classifies the 8-bin class (``knn_target = "yaw_bin"``); its prediction is the bin's centre.
- ``probe-hand-orient``: the hand's global orientation in the camera frame (the MANO root rotation seen from the
  camera, ``cam_global_orient``), predicted in the 6D representation (Zhou et al. CVPR 2019); metric ``rot_err``,
  the geodesic angle between predicted and true rotation in degrees (0-180, lower is better). It is the hand
  counterpart of facing: does the representation know how the hand is turned in 3D, not only where it is.
- ``probe-hand-artic``: finger articulation. For each finger (thumb, index, middle, ring, pinky) the curl is the sum,
  over its three MANO joints, of the joint's rotation angle relative to its parent (the norm of the ``hand_pose``
  axis-angle; MANO with ``flat_hand_mean=True``, so 0 = the flat hand); 5 values in degrees. Metric ``curl_err``: the
  mean absolute error over the 5 fingers, degrees (lower is better). It asks for articulation independently of the
  gesture classes (``synth-hand-gesture``) and of the hand's global pose.

Baselines (``baseline_predictions``, the record's ``baseline_mean``): the training mean of the target (facing: the
mean (cos, sin), i.e. the circular mean direction; orientation: the chordal mean rotation; curls: the mean curls).
The per-patch depth probe is in ``tasks.probe_depth``, the correspondence probes in ``tasks.probe_match``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.registry import TASKS
from tasks import heads
from tasks.base import MetricSpec, Split
from tasks.metrics import angle_diff, facing_yaw
from tasks.synthetic import SYNTH_DEFAULTS, SynthTask, to_numpy

YAW_BINS = 8
#: MANO ``hand_pose`` joints (1-based rows of ``rotmat``: 0 is the root) of each finger, thumb first
FINGERS: dict[str, tuple[int, int, int]] = {"thumb": (13, 14, 15), "index": (1, 2, 3), "middle": (4, 5, 6),
                                            "ring": (10, 11, 12), "pinky": (7, 8, 9)}


# ---------------------------------------------------------------------------------------------- labels
def yaw_bin(yaw_deg: np.ndarray) -> np.ndarray:
    """Yaw in degrees -> bin 0..7 of 45 deg, bin k = [45 k - 22.5, 45 k + 22.5) (mod 360); bin 0 faces the camera."""
    return (np.floor((np.asarray(yaw_deg, np.float64) + 22.5) / 45.0).astype(np.int64)) % YAW_BINS


def rotation_angle(rot: np.ndarray) -> np.ndarray:
    """[..., 3, 3] rotations -> their angle in degrees [...], 0-180."""
    r = np.asarray(rot, np.float64)
    sin2 = np.stack([r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]], -1)
    # atan2(2 sin, 2 cos): accurate near 0 and 180 deg, where arccos of the trace is not
    return np.degrees(np.arctan2(np.linalg.norm(sin2, axis=-1), np.trace(r, axis1=-2, axis2=-1) - 1.0))


def project_so3(m: np.ndarray) -> np.ndarray:
    """[..., 3, 3] matrices -> the nearest rotations (SVD, determinant +1)."""
    u, _, vh = np.linalg.svd(np.asarray(m, np.float64))
    d = np.sign(np.linalg.det(u @ vh))
    u = u.copy()
    u[..., :, -1] *= d[..., None]
    return u @ vh


def geodesic_deg(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Geodesic angle in degrees between rotations [..., 3, 3] (``pred`` projected onto SO(3) first)."""
    p = project_so3(pred)
    return rotation_angle(np.swapaxes(p, -1, -2) @ np.asarray(gt, np.float64))


def finger_curl(rotmat: np.ndarray) -> np.ndarray:
    """MANO joint rotations [..., 16, 3, 3] (row 0 the root) -> per-finger curl [..., 5] in degrees (thumb, index,
    middle, ring, pinky): the sum of the finger's three joint rotation angles (module docstring)."""
    ang = rotation_angle(np.asarray(rotmat)[..., 1:16, :, :])
    return np.stack([ang[..., [j - 1 for j in FINGERS[f]]].sum(-1) for f in FINGERS], -1)


# ---------------------------------------------------------------------------------------------- heads
class VectorHead(nn.Module):
    """One linear layer on a pooled vector: [B, dim] -> ``{key: post(fc(x))}`` (``vector_head`` of a probe)."""

    def __init__(self, dim: int, out: int, key: str,
                 post: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        super().__init__()
        self.fc, self.key, self.post = nn.Linear(dim, out), key, post
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        y = self.fc(x)
        return {self.key: self.post(y) if self.post is not None else y}


class PooledProbe(nn.Module):
    """Tokens [B, P + N, C] -> mean of the N patch tokens -> LayerNorm -> ``vector`` (a ``VectorHead``)."""

    def __init__(self, dim: int, num_prefix: int, vector: nn.Module) -> None:
        super().__init__()
        self.num_prefix, self.norm, self.vector = num_prefix, nn.LayerNorm(dim), vector

    def forward(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.vector(self.norm(heads.pooled(tokens, self.num_prefix)))


def _rot6d(y: torch.Tensor) -> torch.Tensor:
    return heads.rot6d_to_rotmat(y + torch.tensor([1.0, 0, 0, 0, 1.0, 0], dtype=y.dtype, device=y.device))


def _curl(y: torch.Tensor) -> torch.Tensor:
    return 100.0 * y  # outputs near unit scale for curls of ~0-300 deg


# ---------------------------------------------------------------------------------------------- base
class VectorProbe(SynthTask):
    """A global-target probe: ``derive`` turns the loaded frame fields into the targets of the dataset items;
    ``build_head`` = ``PooledProbe`` around ``vector_head``."""

    version = "1"
    protocol = None
    defaults = SYNTH_DEFAULTS
    #: the protocols the probe supports (``vector_head`` makes ``attentive`` possible)
    protocols: ClassVar[tuple[str, ...]] = ("linear", "attentive", "finetune")

    def derive(self, a: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def arrays(self, split: Split, img_size: int, limit: int | None = None) -> dict[str, np.ndarray]:
        """``image`` + the derived targets (the raw fields they come from are dropped)."""
        key = ("derived", split, img_size, limit)
        if key not in self._cache:
            raw = super().arrays(split, img_size, limit)
            self._cache[key] = {"image": raw["image"], **self.derive(raw)}
        return self._cache[key]

    def vector_head(self, dim: int) -> nn.Module:
        """The head on one pooled vector: [B, dim] -> the pred dict of ``build_head``'s head (one linear layer)."""
        raise NotImplementedError

    def build_head(self, backbone_info: Mapping[str, Any]) -> nn.Module:
        dim, prefix, _, _ = heads.check_backbone_info(backbone_info)
        return PooledProbe(dim, prefix, self.vector_head(dim))


# ---------------------------------------------------------------------------------------------- facing
@TASKS.register("probe-body-facing")
class ProbeBodyFacing(VectorProbe):
    """Facing yaw of the body relative to the camera (module docstring): (cos, sin) regression; yaw error and 8-bin
    accuracy. ``vector_head(dim)``: Linear(dim, 2) -> {"facing": [B, 2]}; ``knn_target``: "yaw_bin" (8 classes)."""

    name = "probe-body-facing"
    domain = "body"
    fields = ("rotmat",)
    protocols = ("linear", "attentive", "knn", "finetune")
    knn_target: ClassVar[str] = "yaw_bin"
    metrics = (MetricSpec("yaw_err", "deg", False, "mean absolute error of the facing yaw, wrapped to [0, 180]"),
               MetricSpec("yaw_acc8", "%", True, "predicted yaw in the true bin of 8 bins of 45 deg (chance 12.5)"))
    primary_metric = "yaw_err"

    def n_classes(self) -> int:
        return YAW_BINS

    def derive(self, a: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        yaw = facing_yaw(a["rotmat"][:, 0])
        r = np.radians(yaw)
        return {"facing": np.stack([np.cos(r), np.sin(r)], -1).astype(np.float32), "yaw_bin": yaw_bin(yaw)}

    def vector_head(self, dim: int) -> nn.Module:
        return VectorHead(dim, 2, "facing")

    def loss(self, pred: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"loss": F.mse_loss(pred["facing"].float(), batch["facing"].float())}

    def pred_arrays(self, pred: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        """``pred/facing`` [B, 2]; a pred dict of 8-bin scores ``logits`` [B, 8] (a k-NN vote) gives the centre of
        the highest-scoring bin."""
        if "facing" in pred:
            return {"pred/facing": to_numpy(pred["facing"]).astype(np.float32)}
        r = np.radians(45.0 * to_numpy(pred["logits"]).argmax(1))
        return {"pred/facing": np.stack([np.cos(r), np.sin(r)], -1).astype(np.float32)}

    def ground_truth(self, batch: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {"gt/facing": to_numpy(batch["facing"]).astype(np.float32)}

    def score_arrays(self, a: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        p, g = np.asarray(a["pred/facing"], np.float64), np.asarray(a["gt/facing"], np.float64)
        yp, yg = np.degrees(np.arctan2(p[:, 1], p[:, 0])), np.degrees(np.arctan2(g[:, 1], g[:, 0]))
        return {"yaw_err": angle_diff(yp, yg), "yaw_acc8": 100.0 * (yaw_bin(yp) == yaw_bin(yg))}


# ---------------------------------------------------------------------------------------------- hand orientation
@TASKS.register("probe-hand-orient")
class ProbeHandOrient(VectorProbe):
    """Global orientation of the hand in the camera frame (module docstring): 6D rotation regression, geodesic error.
    ``vector_head(dim)``: Linear(dim, 6) -> {"rotmat": [B, 3, 3]} (6D -> rotation by Gram-Schmidt)."""

    name = "probe-hand-orient"
    domain = "hand"
    fields = ("rotmat",)
    metrics = (MetricSpec("rot_err", "deg", False, "geodesic angle between predicted and true camera-frame hand "
                                                   "orientation"),)
    primary_metric = "rot_err"

    def derive(self, a: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"orient": a["rotmat"][:, 0].astype(np.float32)}

    def vector_head(self, dim: int) -> nn.Module:
        return VectorHead(dim, 6, "rotmat", _rot6d)

    def loss(self, pred: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"loss": F.mse_loss(pred["rotmat"].float(), batch["orient"].float())}

    def pred_arrays(self, pred: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {"pred/orient": to_numpy(pred["rotmat"]).astype(np.float32)}

    def ground_truth(self, batch: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {"gt/orient": to_numpy(batch["orient"]).astype(np.float32)}

    def score_arrays(self, a: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"rot_err": geodesic_deg(a["pred/orient"], a["gt/orient"])}

    def baseline_predictions(self, train_gt: Mapping[str, np.ndarray],
                             test_pred: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """The chordal mean of the training orientations (the arithmetic mean projected onto SO(3))."""
        gt, pred = train_gt.get("gt/orient"), test_pred.get("pred/orient")
        if gt is None or pred is None:
            return None
        m = project_so3(np.asarray(gt, np.float64).mean(0))
        return {"pred/orient": np.broadcast_to(m, pred.shape).astype(np.float32)}


# ---------------------------------------------------------------------------------------------- articulation
@TASKS.register("probe-hand-artic")
class ProbeHandArtic(VectorProbe):
    """Per-finger curl of the hand (module docstring): 5 values in degrees, mean absolute error.
    ``vector_head(dim)``: Linear(dim, 5) -> {"curl": [B, 5]} (degrees, the output scaled by 100)."""

    name = "probe-hand-artic"
    domain = "hand"
    fields = ("rotmat",)
    metrics = (MetricSpec("curl_err", "deg", False, "mean absolute error of the 5 per-finger curls (sum of the "
                                                    "finger's 3 joint rotation angles)"),)
    primary_metric = "curl_err"

    def derive(self, a: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"curl": finger_curl(a["rotmat"]).astype(np.float32)}

    def vector_head(self, dim: int) -> nn.Module:
        return VectorHead(dim, 5, "curl", _curl)

    def loss(self, pred: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"loss": F.smooth_l1_loss(pred["curl"].float() / 100.0, batch["curl"].float() / 100.0, beta=0.1)}

    def pred_arrays(self, pred: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {"pred/curl": to_numpy(pred["curl"]).astype(np.float32)}

    def ground_truth(self, batch: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {"gt/curl": to_numpy(batch["curl"]).astype(np.float32)}

    def score_arrays(self, a: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        d = np.abs(np.asarray(a["pred/curl"], np.float64) - np.asarray(a["gt/curl"], np.float64))
        return {"curl_err": d.mean(1)}
