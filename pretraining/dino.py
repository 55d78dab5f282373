"""DINO: self-distillation with no labels (Caron et al., ICCV 2021), written from the paper (no DINO code copied).

A student (backbone + projection head) sees every crop (2 global + ``local_crops`` local); a teacher with
the same architecture, an exponential moving average of the student, sees the global crops only. Teacher
outputs are centred (running mean ``center``, momentum 0.9) and sharpened (temperature 0.04); the loss is
the cross-entropy between each teacher global view and every student view of a different crop, averaged
over those pairs. Head: 3-layer MLP (GELU) -> bottleneck -> L2 normalisation -> weight-normalised linear
layer without bias (row norms fixed to 1 when ``norm_last_layer``). Teacher momentum follows a cosine from
``momentum_teacher`` to 1 over training; the EMA update runs in ``after_optimizer_step`` (called by the loop).

Documented gaps (CPU sizing): head 512/128/1024 instead of 2048/256/65536, 4 local crops of 64 px at a 128 px
global size instead of 8 x 96 at 224, no blur/solarisation, no last-layer freezing in the first epoch. The
paper preset restores the head sizes and crop counts. Exported backbone: the teacher (as DINO's release).

Teacher parameters have ``requires_grad=False``: they receive no gradient by design.

Batch: ``global: [B, 2, 3, G, G]``, optional ``local: [B, L, 3, l, l]``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from core.registry import METHODS
from pretraining.data import MultiCropDataset
from pretraining.objective import BatchNeeds, DataRequest


@dataclass(frozen=True)
class DINOConfig:
    """DINO objective and multi-crop settings (CPU-sized defaults; paper values in comments)."""

    out_dim: int = 1024  # paper 65536
    hidden_dim: int = 512  # paper 2048
    bottleneck_dim: int = 128  # paper 256
    norm_last_layer: bool = True
    student_temp: float = 0.1
    teacher_temp: float = 0.04
    warmup_teacher_temp: float = 0.04
    warmup_teacher_frac: float = 0.0  # fraction of training over which the teacher temperature warms up
    center_momentum: float = 0.9
    momentum_teacher: float = 0.99  # paper 0.996 for 100+ epochs; short CPU runs need a faster teacher
    local_crops: int = 4  # paper 8
    local_size: int = 0  # 0 = img_size * 96/224 rounded to the patch size (paper: 96 at 224)
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.4)


class DINOHead(nn.Module):
    """MLP projection head: [B, in] -> [B, out_dim] logits on the unit sphere's prototypes."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int, bottleneck_dim: int, norm_last_layer: bool) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, hidden_dim), nn.GELU(),
                                 nn.Linear(hidden_dim, bottleneck_dim))
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = nn.Linear(bottleneck_dim, out_dim, bias=False)
        nn.init.trunc_normal_(self.last_layer.weight, std=0.02)
        self.norm_last_layer = norm_last_layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(self.mlp(x), dim=-1)
        w = F.normalize(self.last_layer.weight, dim=1) if self.norm_last_layer else self.last_layer.weight
        return F.linear(x, w)


def pooled(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """CLS token (or mean token without CLS) of the final features: [B, C]."""
    tokens = backbone.forward_features(x)
    return tokens[:, 0] if backbone.num_prefix_tokens else tokens.mean(dim=1)


def crop_sizes(frames: Any, req: DataRequest) -> dict[str, Any]:
    """The local crop side: ``local_size``, or 96/224 of the global side rounded to the backbone's patch."""
    p = req.patch_size
    return {"local_size": req.objective.local_size or max(p, round(req.img_size * 96 / 224 / p) * p)}


def multicrop_items(frames: Any, req: DataRequest, seed: int) -> MultiCropDataset:
    """DINO's items: 2 global and ``local_crops`` local views of one person (``MultiCropDataset``)."""
    c = req.objective
    return MultiCropDataset(frames, req.data, req.img_size, req.info["local_size"], c.local_crops, c.global_scale,
                            c.local_scale, seed)


@METHODS.register("dino")
class DINO(nn.Module):
    """Self-distillation: student matches an EMA teacher across multi-crop views (centring + sharpening)."""

    config_cls = DINOConfig
    data_kind = "multicrop"
    batch_needs = BatchNeeds(dataset=multicrop_items, info=crop_sizes)
    # paper scale (protocols-and-formats D2): head 65536-d, 8 local 96 px crops, teacher momentum 0.996
    presets = {"paper": {"out_dim": 65536, "hidden_dim": 2048, "bottleneck_dim": 256, "local_crops": 8,
                         "momentum_teacher": 0.996}}

    def __init__(self, backbone: nn.Module, cfg: DINOConfig | None = None,
                 data_info: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or DINOConfig()
        self.backbone = backbone
        self.head = DINOHead(backbone.embed_dim, cfg.out_dim, cfg.hidden_dim, cfg.bottleneck_dim, cfg.norm_last_layer)
        self.teacher_backbone = copy.deepcopy(backbone)
        self.teacher_head = copy.deepcopy(self.head)
        for p in [*self.teacher_backbone.parameters(), *self.teacher_head.parameters()]:
            p.requires_grad_(False)
        self.register_buffer("center", torch.zeros(1, cfg.out_dim))
        self.register_buffer("progress", torch.zeros(()))  # step / total_steps, saved for exact resume

    def export_backbone(self) -> nn.Module:
        """The encoder to export: the teacher (DINO releases teacher weights)."""
        return self.teacher_backbone

    def teacher_temp(self) -> float:
        c, frac = self.cfg, self.cfg.warmup_teacher_frac
        if frac <= 0 or float(self.progress) >= frac:
            return c.teacher_temp
        return c.warmup_teacher_temp + (c.teacher_temp - c.warmup_teacher_temp) * float(self.progress) / frac

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        g = batch["global"]
        b, ng = g.shape[:2]
        views = [g.transpose(0, 1).reshape(ng * b, *g.shape[2:])]
        loc = batch.get("local")
        nl = 0 if loc is None else loc.shape[1]
        if nl:
            views.append(loc.transpose(0, 1).reshape(nl * b, *loc.shape[2:]))
        student = torch.cat([self.head(pooled(self.backbone, v)) for v in views]) / self.cfg.student_temp
        s_logp = F.log_softmax(student, dim=-1).chunk(ng + nl)
        with torch.no_grad():
            t_out = self.teacher_head(pooled(self.teacher_backbone, views[0]))
            t_prob = F.softmax((t_out - self.center) / self.teacher_temp(), dim=-1).chunk(ng)
        total, terms = student.new_zeros(()), 0
        for it, tp in enumerate(t_prob):
            for iv, lp in enumerate(s_logp):
                if iv == it:
                    continue
                total = total + (-tp * lp).sum(dim=-1).mean()
                terms += 1
        loss = total / terms
        if self.training:
            self._update_center(t_out)
        entropy = -(t_prob[0] * t_prob[0].clamp_min(1e-12).log()).sum(-1).mean()
        return {"loss": loss, "teacher_entropy": entropy.detach()}

    @torch.no_grad()
    def _update_center(self, t_out: torch.Tensor) -> None:
        batch_center = t_out.sum(dim=0, keepdim=True)
        n = torch.tensor(float(t_out.shape[0]), device=t_out.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(batch_center)
            dist.all_reduce(n)
        m = self.cfg.center_momentum
        self.center.mul_(m).add_(batch_center / n, alpha=1 - m)

    @torch.no_grad()
    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        """EMA teacher update; momentum follows a cosine from momentum_teacher (step 0) to 1 (last step)."""
        frac = min(max(step / max(total_steps, 1), 0.0), 1.0)
        m = 1.0 - (1.0 - self.cfg.momentum_teacher) * (math.cos(math.pi * frac) + 1) / 2
        for mod_s, mod_t in ((self.backbone, self.teacher_backbone), (self.head, self.teacher_head)):
            for ps, pt in zip(mod_s.parameters(), mod_t.parameters(), strict=True):
                pt.mul_(m).add_(ps.detach(), alpha=1 - m)
        self.progress.fill_(frac)
