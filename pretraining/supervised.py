"""Supervised classification pretraining: the "ImageNet-style" baseline (Dosovitskiy et al., ICLR 2021;
DeiT, Touvron et al., ICML 2021), on ``synth-objects`` (the object-centric stand-in) or an ImageFolder root.

Head: linear classifier on the CLS token after the final LayerNorm (mean of the patch tokens for a backbone
without CLS), cross-entropy loss with label smoothing (DeiT: 0.1). The head is dropped at export.

Batch: ``image: [B, 3, H, W]``, ``label: [B]`` long in [0, num_classes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from core.registry import METHODS
from pretraining.data import LabelledFrames
from pretraining.objective import BatchNeeds, DataRequest


@dataclass(frozen=True)
class SupervisedConfig:
    """Supervised classification settings (``num_classes`` 0 = read from the data set)."""

    num_classes: int = 0
    label_smoothing: float = 0.1


def class_count(frames: Any, req: DataRequest) -> dict[str, Any]:
    """The number of classes: the largest ``label`` of the frame set + 1."""
    labels = frames.manifest["label"].to_numpy()
    return {"num_classes": int(labels.max()) + 1 if len(labels) else 0}


def labelled_items(frames: Any, req: DataRequest, seed: int) -> LabelledFrames:
    """Supervised items: labelled frames (``pretraining.data.LabelledFrames``)."""
    return LabelledFrames(frames, req.data, req.img_size, seed, req.info["num_classes"])


@METHODS.register("supervised")
class Supervised(nn.Module):
    """Image classification with a linear head on the CLS token (the object-centric baseline)."""

    config_cls = SupervisedConfig
    data_kind = "labelled"
    # synth-objects (or an ImageFolder root) whatever the run's domain: its backbone serves every domain
    batch_needs = BatchNeeds(dataset=labelled_items, info=class_count, domain="objects", image_folder=True)

    def __init__(self, backbone: nn.Module, cfg: SupervisedConfig | None = None,
                 data_info: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or SupervisedConfig()
        n = cfg.num_classes or int((data_info or {}).get("num_classes", 0))
        if n < 2:
            raise ValueError(f"supervised pretraining needs >= 2 classes, got {n}")
        self.num_classes = n
        self.backbone = backbone
        self.head = nn.Linear(backbone.embed_dim, n)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def logits(self, img: torch.Tensor) -> torch.Tensor:
        """img: [B, 3, H, W] -> [B, num_classes]."""
        tokens = self.backbone.forward_features(img)
        p = self.backbone.num_prefix_tokens
        pooled = tokens[:, 0] if p else tokens.mean(dim=1)
        return self.head(pooled)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        label = batch["label"]
        logits = self.logits(batch["image"])
        loss = F.cross_entropy(logits, label, label_smoothing=self.cfg.label_smoothing)
        acc = (logits.argmax(dim=1) == label).float().mean().detach()
        return {"loss": loss, "acc": acc}
