"""``probe-body-depth``: per-patch depth of the person from frozen patch tokens (issue #15).

El Banani et al. (CVPR 2024, "Probing the 3D awareness of visual foundation models") probe frozen features for
monocular depth with a dense head; this is that probe restricted to the person. Per patch of the backbone's grid,
the target is the camera-frame depth (z, metres) of the nearest body surface seen through that patch: the vertices
of the mesh (camera coordinates, as stored by the world: ``humans.cameras.film``) are projected with the crop's
intrinsics ``K``, z-buffered per pixel (``tasks.synth_data.depth_map``: the smallest z among the vertices whose
projection rounds to the pixel, only where the person mask is on), and the patch takes the smallest of its pixels'
depths. A patch counts as a person patch when the mask covers at least ``MIN_COVER`` = 10 % of its pixels and at
least one vertex projects into it (the bodies are slim: at 64 px with 16 px patches, a stricter cover leaves too few
patches to order). Targets are relative to the person's median patch depth (the lower median over the person patches
of the image), so the probe asks for the 3D shape of the body, not its distance from the camera.

Head: one linear layer per patch token (LayerNorm + Linear(C, 1)), trained with an L1 loss on the person patches
(protocol ``linear`` on frozen tokens, or ``finetune``; there is no ``attentive`` variant, whose single pooled
vector cannot give a value per patch).

Metric ``depth_order`` (%, higher is better): over all pairs of person patches of an image whose true depths differ
by more than ``ORDER_THRESHOLD`` = 5 cm, the percentage whose predicted depths are in the same order (a tie in the
prediction counts half); per image, averaged over images. Chance (and a constant prediction) is 50 %; an image with
no such pair scores 50. The trivial baseline (``baseline_predictions``) predicts, per patch position, the mean
relative depth of the training images' person patches at that position (a prior such as "the middle of the crop is
nearer"), which may score above 50.

Saved arrays: ``pred/depth`` [B, gh, gw] (relative metres), ``gt/depth`` [B, S, S] (the per-pixel z-buffer, metres,
0 = none) and ``gt/mask`` [B, S, S]; the patch targets are recomputed from them on the prediction's grid, so
``cpcbench score`` re-scores saved predictions alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from core.errors import CpcbenchError
from core.registry import TASKS
from tasks import heads
from tasks.base import MetricSpec
from tasks.synthetic import SYNTH_DEFAULTS, SynthTask, to_numpy

ORDER_THRESHOLD = 0.05  # metres: pairs of patches closer in depth than this are not scored
MIN_COVER = 0.1  # the fraction of a patch's pixels the person mask must cover


def patch_depth(depth: torch.Tensor, mask: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel depth [B, S, S] (0 = none) and mask [B, S, S] -> (nearest depth per patch [B, gh, gw] (0 where not a
    person patch), person-patch mask [B, gh, gw] bool) on a ``grid`` of square patches (module docstring)."""
    b, s, s2 = depth.shape
    gh, gw = grid
    if s % gh or s2 % gw:
        raise CpcbenchError(f"probe-body-depth: a {s}x{s2} crop does not split into a {gh}x{gw} patch grid")
    ph, pw = s // gh, s2 // gw

    def cells(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(b, gh, ph, gw, pw).permute(0, 1, 3, 2, 4).reshape(b, gh, gw, ph * pw)

    d, m = cells(depth.float()), cells(mask.float() > 0)
    has = d > 0
    z = torch.where(has, d, torch.full_like(d, float("inf"))).amin(-1)
    valid = (m.float().mean(-1) >= MIN_COVER) & has.any(-1)
    return torch.where(valid, z, torch.zeros_like(z)), valid


def relative_depth(z: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """[B, gh, gw] patch depths -> minus each image's (lower) median over its person patches; 0 elsewhere."""
    flat = torch.where(valid, z, torch.full_like(z, float("nan"))).flatten(1)
    med = torch.nanmedian(flat, dim=1).values.nan_to_num(0.0)
    return torch.where(valid, z - med[:, None, None], torch.zeros_like(z))


def depth_order(pred: np.ndarray, z: np.ndarray, valid: np.ndarray, threshold: float = ORDER_THRESHOLD) -> np.ndarray:
    """Pairwise ordering accuracy per image, % [B] (module docstring). pred, z: [B, gh, gw]; valid: bool [B, gh, gw]."""
    out = np.full(len(z), 50.0)
    for i in range(len(z)):
        v = valid[i].reshape(-1)
        zi, pi = z[i].reshape(-1)[v].astype(np.float64), pred[i].reshape(-1)[v].astype(np.float64)
        dz, dp = zi[:, None] - zi[None], pi[:, None] - pi[None]
        sel = np.triu(np.abs(dz) > threshold, 1)
        if sel.any():
            right = (np.sign(dp[sel]) == np.sign(dz[sel])) + 0.5 * (dp[sel] == 0)
            out[i] = 100.0 * float(right.mean())
    return out


class PatchDepthHead(nn.Module):
    """Tokens [B, P + gh*gw, C] -> {"depth": [B, gh, gw]}: LayerNorm + Linear(C, 1) on every patch token."""

    def __init__(self, dim: int, num_prefix: int, grid: tuple[int, int]) -> None:
        super().__init__()
        self.num_prefix, self.grid = num_prefix, tuple(grid)
        self.norm, self.fc = nn.LayerNorm(dim), nn.Linear(dim, 1)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        patches = tokens[:, self.num_prefix:]
        return {"depth": self.fc(self.norm(patches)).reshape(tokens.shape[0], *self.grid)}


@TASKS.register("probe-body-depth")
class ProbeBodyDepth(SynthTask):
    """Per-patch relative depth of the person, linear per-patch head; pairwise depth-ordering accuracy (module
    docstring). No ``vector_head`` (a per-patch target), no ``knn_target``."""

    name = "probe-body-depth"
    version = "1"
    domain = "body"
    protocol = None
    fields = ("depth", "mask")
    protocols: ClassVar[tuple[str, ...]] = ("linear", "finetune")
    metrics = (MetricSpec("depth_order", "%", True, "person patch pairs (true depths > 5 cm apart) whose predicted "
                                                    "depths are in the right order (chance 50)"),)
    primary_metric = "depth_order"
    defaults = SYNTH_DEFAULTS

    def build_head(self, backbone_info: Mapping[str, Any]) -> nn.Module:
        dim, prefix, grid, img = heads.check_backbone_info(backbone_info)
        if img % grid[0] or img % grid[1]:
            raise CpcbenchError(f"probe-body-depth: a {img} px input does not split into the backbone's "
                                f"{grid[0]}x{grid[1]} patch grid")
        return PatchDepthHead(dim, prefix, grid)

    def loss(self, pred: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        p = pred["depth"].float()
        z, valid = patch_depth(batch["depth"], batch["mask"], tuple(p.shape[1:]))
        target = relative_depth(z, valid)
        w = valid.float()
        return {"loss": ((p - target).abs() * w).sum() / w.sum().clamp(min=1.0)}

    def pred_arrays(self, pred: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {"pred/depth": to_numpy(pred["depth"]).astype(np.float32)}

    def ground_truth(self, batch: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {"gt/depth": to_numpy(batch["depth"]).astype(np.float32),
                "gt/mask": to_numpy(batch["mask"]).astype(np.uint8)}

    def score_arrays(self, a: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        p = np.asarray(a["pred/depth"], np.float32)
        z, valid = patch_depth(torch.from_numpy(np.asarray(a["gt/depth"], np.float32)),
                               torch.from_numpy(np.asarray(a["gt/mask"])), tuple(p.shape[1:]))
        return {"depth_order": depth_order(p, z.numpy(), valid.numpy())}

    def baseline_predictions(self, train_gt: Mapping[str, np.ndarray],
                             test_pred: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """Per patch position, the mean relative depth of the training person patches there (0 where none)."""
        pred = test_pred.get("pred/depth")
        if pred is None or "gt/depth" not in train_gt or "gt/mask" not in train_gt:
            return None
        z, valid = patch_depth(torch.from_numpy(np.asarray(train_gt["gt/depth"], np.float32)),
                               torch.from_numpy(np.asarray(train_gt["gt/mask"])), tuple(pred.shape[1:]))
        rel, w = relative_depth(z, valid).double(), valid.double()
        mean = (rel * w).sum(0) / w.sum(0).clamp(min=1.0)
        return {"pred/depth": np.broadcast_to(mean.numpy(), pred.shape).astype(np.float32)}
