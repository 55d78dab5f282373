"""MAE: masked autoencoder (He et al., CVPR 2022), written from the paper (no MAE code copied).

One image; ``mask_ratio`` (0.75) of its patches hidden uniformly at random; the encoder sees the visible
patches only; a light decoder of self-attention blocks over [visible tokens + mask tokens] predicts the
pixels of every patch; loss = MSE on per-patch normalised pixels (``norm_pix_loss``) over hidden patches.
The decoder is the shared ``CompletionDecoder`` of CPC without cross-attention, so MAE and CPC differ only
in the reference image (the fair comparison the paper makes). Paper recipe (protocols-and-formats D1):
decoder 512-d x 8 blocks x 16 heads for ViT-B/L; scaled down for tiny/small.

Batch: ``image: [B, 3, H, W]`` (ImageNet-normalised), optional ``person: [B, H, W]`` for human masking.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from core.registry import METHODS
from pretraining.cpc import CompletionDecoder, check_mask_config, make_mask
from pretraining.data import ImageDataset
from pretraining.objective import BatchNeeds, DataRequest
from pretraining.patches import denormalize_patches, masked_mse_per_sample, normalize_patches, patchify, unpatchify

DECODERS: dict[str, tuple[int, int, int]] = {
    "vit_tiny": (128, 2, 4), "vit_small": (256, 4, 8), "vit_base": (512, 8, 16), "vit_large": (512, 8, 16)}


@dataclass(frozen=True)
class MAEConfig:
    """MAE objective settings. ``dec_*`` of 0 take the per-arch default in ``DECODERS``."""

    mask_ratio: float = 0.75
    mask_strategy: str = "uniform"  # uniform | human
    human_weight: float = 0.0
    dec_dim: int = 0
    dec_depth: int = 0
    dec_heads: int = 0
    mlp_ratio: float = 4.0


def image_items(frames: Any, req: DataRequest, seed: int) -> ImageDataset:
    """MAE's items: single person-centred images (``pretraining.data.ImageDataset``)."""
    return ImageDataset(frames, req.data, req.img_size, seed, req.patch_size)


@METHODS.register("mae")
class MAE(nn.Module):
    """Masked autoencoder: reconstruct hidden patches of one image (normalised-pixel loss)."""

    config_cls = MAEConfig
    data_kind = "images"
    batch_needs = BatchNeeds(dataset=image_items)

    def __init__(self, backbone: nn.Module, cfg: MAEConfig | None = None,
                 data_info: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or MAEConfig()
        check_mask_config(cfg.mask_ratio, cfg.mask_strategy)
        self.backbone = backbone
        d, n, h = DECODERS.get(getattr(backbone, "arch", ""), DECODERS["vit_base"])
        self.decoder = CompletionDecoder(backbone, cfg.dec_dim or d, cfg.dec_depth or n, cfg.dec_heads or h,
                                         cfg.mlp_ratio, cross=False)

    @staticmethod
    def validate_config(cfg: MAEConfig) -> None:
        check_mask_config(cfg.mask_ratio, cfg.mask_strategy)

    def mask_for(self, batch: dict[str, Any]) -> torch.Tensor:
        if "mask" in batch:
            return batch["mask"]
        return make_mask(batch["image"], self.backbone.patch_size, self.cfg.mask_ratio, self.cfg.mask_strategy,
                         batch.get("person"), self.cfg.human_weight, batch.get("mask_noise"))

    def predict(self, img: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """img: [B, 3, H, W], mask: [B, N] -> pred [B, N, p*p*3] (normalised-pixel units)."""
        p = self.backbone.patch_size
        return self.decoder(self.backbone.forward_encoder(img, mask), mask, (img.shape[2] // p, img.shape[3] // p))

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        img = batch["image"]
        mask = self.mask_for(batch)
        target = normalize_patches(patchify(img, self.backbone.patch_size))
        return {"loss": masked_mse_per_sample(self.predict(img, mask), target, mask).mean()}

    @torch.no_grad()
    def baseline_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """Per-sample loss [B] of predicting every hidden patch's mean (0 in normalised units)."""
        target = normalize_patches(patchify(batch["image"], self.backbone.patch_size))
        return masked_mse_per_sample(torch.zeros_like(target), target, self.mask_for(batch))

    @torch.no_grad()
    def reconstruct(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Pictures [B, 3, H, W] (normalised image space): masked input, reconstruction, target."""
        img = batch["image"]
        p = self.backbone.patch_size
        grid = (img.shape[2] // p, img.shape[3] // p)
        mask = self.mask_for(batch)
        target = patchify(img, p)
        pred = denormalize_patches(self.predict(img, mask), target)
        m = mask[..., None]
        return {"masked input": unpatchify(target * ~m, p, grid),
                "reconstruction": unpatchify(torch.where(m, pred, target), p, grid), "target": img}
