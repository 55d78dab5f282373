"""CPC: cross-view and cross-pose completion (CroCo-Man, Armando et al., CVPR 2024, on CroCo v1/v2,
Weinzaepfel et al., NeurIPS 2022 / ICCV 2023). Written from the papers' description; no CroCo code is copied.

A pair (image 1 = target, image 2 = reference) is either two views of one instant ("cross_view") or one
camera at two times ("cross_pose"). Image 1 is masked (``mask_ratio``, CroCo: 0.9; uniform or human-aware,
see ``pretraining.masking``); both images go through the SAME encoder (visible tokens only for image 1); a
linear map takes both to decoder width; mask tokens are scattered back into image 1's grid; decoder blocks
alternate self-attention over image-1 tokens, cross-attention to image-2 tokens and an MLP; a linear head
predicts the p*p*3 pixels of every patch. Loss: MSE on per-patch normalised pixels over the hidden patches
only (CroCo's ``MaskedMSE`` with ``norm_pix_loss``), one value per sample, averaged over the batch; the
per-kind means are logged apart as ``loss_cross_view`` / ``loss_cross_pose`` (L = L_view + L_pose up to
the mixing weights). Decoder positions: RoPE when the encoder uses RoPE (CroCo v2), else fixed sin-cos.

Batch: ``img1, img2: [B, 3, H, W]`` (ImageNet-normalised), ``kind: [B]`` long (index in PAIR_KINDS),
optional ``person1: [B, H, W]`` (1 = person; needed by ``mask_strategy="human"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from core.registry import METHODS
from humans.frames import PAIR_KINDS
from pretraining.data import PairDataset
from pretraining.layers import Block, DecoderBlock, RoPE2D, grid_positions, init_weights, layer_norm, sincos_2d
from pretraining.masking import fill_hidden, human_mask, num_hidden, uniform_mask
from pretraining.objective import BatchNeeds, DataRequest
from pretraining.patches import denormalize_patches, masked_mse_per_sample, normalize_patches, patchify, unpatchify

MASK_STRATEGIES = ("uniform", "human")

# decoder (width, depth, heads) per encoder size: CroCo's ViT-B/L use 512x8x16 / 768x12x12; tiny/small are
# scaled down so that the decoder costs about as much as the encoder on the CPU defaults.
DECODERS: dict[str, tuple[int, int, int]] = {
    "vit_tiny": (128, 4, 4), "vit_small": (256, 4, 8), "vit_base": (512, 8, 16), "vit_large": (768, 12, 12)}


@dataclass(frozen=True)
class CPCConfig:
    """CPC objective settings. ``dec_*`` of 0 take the per-arch default in ``DECODERS``."""

    mask_ratio: float = 0.9
    # CroCo-Man's human-aware masking is the recipe (paper.md 3.2); "uniform" is CroCo's, kept for the ablation
    mask_strategy: str = "human"  # human | uniform
    human_weight: float = 0.0  # human masking: person-patch weight relative to background; 0 = person first
    dec_dim: int = 0
    dec_depth: int = 0
    dec_heads: int = 0
    mlp_ratio: float = 4.0


def decoder_shape(arch: str, dim: int, depth: int, heads: int) -> tuple[int, int, int]:
    d, n, h = DECODERS.get(arch, DECODERS["vit_base"])
    return dim or d, depth or n, heads or h


def make_mask(img: torch.Tensor, patch: int, ratio: float, strategy: str, person: torch.Tensor | None,
              human_weight: float, noise: torch.Tensor | None = None) -> torch.Tensor:
    """[B, N] bool (True = hidden) for images [B, 3, H, W], uniform or human-aware; ``noise`` [B, N] uniform
    draws replace torch's RNG (the data sets pass their own, so masks are part of the deterministic data)."""
    b, _, h, w = img.shape
    if strategy == "uniform":
        return uniform_mask(b, (h // patch) * (w // patch), ratio, img.device, noise=noise)
    if strategy == "human":
        if person is None:
            raise ValueError("mask_strategy='human' needs a person map in the batch ('person1' / 'person')")
        return human_mask(person, patch, ratio, weight=human_weight or float("inf"), noise=noise)
    raise ValueError(f"unknown mask_strategy {strategy!r}; choose uniform or human")


def check_mask_config(ratio: float, strategy: str) -> None:
    num_hidden(2, ratio)  # raises on a ratio outside [0, 1)
    if strategy not in MASK_STRATEGIES:
        raise ValueError(f"unknown mask_strategy {strategy!r}; choose one of {MASK_STRATEGIES}")


class CompletionDecoder(nn.Module):
    """Shared machinery of CPC and MAE decoders: embed, scatter mask tokens, positions, head."""

    def __init__(self, backbone: nn.Module, dim: int, depth: int, heads: int, mlp_ratio: float, cross: bool) -> None:
        super().__init__()
        self.patch_size = backbone.patch_size
        self.num_prefix = backbone.num_prefix_tokens
        self.use_rope = backbone.pos_embed_kind == "rope"
        self.dim, self.heads = dim, heads
        self.decoder_embed = nn.Linear(backbone.embed_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.rope = RoPE2D(backbone.rope.base) if self.use_rope else None
        if cross:
            self.blocks = nn.ModuleList(DecoderBlock(dim, heads, mlp_ratio) for _ in range(depth))
        else:
            self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.cross = cross
        self.norm = layer_norm(dim)
        self.head = nn.Linear(dim, self.patch_size ** 2 * 3)
        init_weights(self)
        nn.init.normal_(self.mask_token, std=0.02)

    def _with_pos(self, x: torch.Tensor, gh: int, gw: int) -> torch.Tensor:
        if self.use_rope:
            return x
        pos = sincos_2d(self.dim, gh, gw).to(x.device, x.dtype)
        return torch.cat([x[:, :self.num_prefix], x[:, self.num_prefix:] + pos], dim=1)

    def forward(self, enc1: torch.Tensor, mask: torch.Tensor, grid: tuple[int, int],
                enc2: torch.Tensor | None = None) -> torch.Tensor:
        """enc1: [B, P + N_vis, C] visible target tokens; mask: [B, N]; enc2: [B, P + N, C] reference tokens
        (cross decoder only) -> pred [B, N, p*p*3] (normalised-pixel units)."""
        p = self.num_prefix
        b = enc1.shape[0]
        x = self.decoder_embed(enc1)
        x = torch.cat([x[:, :p], fill_hidden(x[:, p:], mask, self.mask_token)], dim=1)
        x = self._with_pos(x, *grid)
        rope = None
        if self.rope is not None:
            pos = grid_positions(*grid, device=x.device)[None].expand(b, -1, -1)
            rope = self.rope.cos_sin(pos, self.dim // self.heads, p)
        if self.cross:
            if enc2 is None:
                raise ValueError("the cross-attention decoder needs reference tokens")
            mem = self._with_pos(self.decoder_embed(enc2), *grid)
            for blk in self.blocks:
                x = blk(x, mem, rope, rope)
        else:
            for blk in self.blocks:
                x = blk(x, rope)
        return self.head(self.norm(x)[:, p:])


def pair_items(frames: Any, req: DataRequest, seed: int) -> PairDataset:
    """CPC's items: pairs of one person (``pretraining.data.PairDataset``), mask draws per backbone patch."""
    return PairDataset(frames, req.data, req.img_size, seed, req.patch_size)


@METHODS.register("cpc")
class CPC(nn.Module):
    """Cross-view + cross-pose completion (CroCo-Man): masked image 1 reconstructed from image 2."""

    config_cls = CPCConfig
    data_kind = "pairs"
    batch_needs = BatchNeeds(dataset=pair_items)

    def __init__(self, backbone: nn.Module, cfg: CPCConfig | None = None,
                 data_info: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or CPCConfig()
        self.backbone = backbone
        dim, depth, heads = decoder_shape(getattr(backbone, "arch", ""), cfg.dec_dim, cfg.dec_depth, cfg.dec_heads)
        self.decoder = CompletionDecoder(backbone, dim, depth, heads, cfg.mlp_ratio, cross=True)
        check_mask_config(cfg.mask_ratio, cfg.mask_strategy)

    @staticmethod
    def validate_config(cfg: CPCConfig) -> None:
        check_mask_config(cfg.mask_ratio, cfg.mask_strategy)

    @staticmethod
    def part_counts(batch: dict[str, Any]) -> dict[str, int]:
        """Items behind each ``loss_<kind>`` output: {pair kind: number of such pairs in the batch}."""
        kind = batch.get("kind")
        return {} if kind is None else {name: int((kind == k).sum()) for k, name in enumerate(PAIR_KINDS)}

    def mask_for(self, batch: dict[str, Any]) -> torch.Tensor:
        """[B, N] mask of image 1: ``batch["mask"]`` if given, else drawn from ``batch["mask_noise"]`` (uniform
        draws the data set made: deterministic per item, identical under DDP) or from torch's RNG."""
        if "mask" in batch:
            return batch["mask"]
        return make_mask(batch["img1"], self.backbone.patch_size, self.cfg.mask_ratio, self.cfg.mask_strategy,
                         batch.get("person1"), self.cfg.human_weight, batch.get("mask_noise"))

    def predict(self, img1: torch.Tensor, img2: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """-> pred [B, N, p*p*3] for image 1 given visible patches of image 1 and all of image 2."""
        p = self.backbone.patch_size
        enc1 = self.backbone.forward_encoder(img1, mask)
        enc2 = self.backbone.forward_encoder(img2)
        return self.decoder(enc1, mask, (img1.shape[2] // p, img1.shape[3] // p), enc2)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        img1, img2 = batch["img1"], batch["img2"]
        mask = self.mask_for(batch)
        pred = self.predict(img1, img2, mask)
        target = normalize_patches(patchify(img1, self.backbone.patch_size))
        per_sample = masked_mse_per_sample(pred, target, mask)
        out = {"loss": per_sample.mean()}
        kind = batch.get("kind")
        if kind is not None:
            for k, name in enumerate(PAIR_KINDS):
                sel = kind == k
                if bool(sel.any()):  # a part is logged only when the batch holds that kind
                    out[f"loss_{name}"] = per_sample[sel].mean().detach()
        return out

    @torch.no_grad()
    def baseline_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """Per-sample loss [B] of predicting every hidden patch's mean (0 in normalised units)."""
        target = normalize_patches(patchify(batch["img1"], self.backbone.patch_size))
        mask = self.mask_for(batch)
        return masked_mse_per_sample(torch.zeros_like(target), target, mask)

    @torch.no_grad()
    def reconstruct(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Pictures [B, 3, H, W] (normalised image space): masked input, reference, reconstruction, target."""
        img1, img2 = batch["img1"], batch["img2"]
        p = self.backbone.patch_size
        grid = (img1.shape[2] // p, img1.shape[3] // p)
        mask = self.mask_for(batch)
        target = patchify(img1, p)
        pred = denormalize_patches(self.predict(img1, img2, mask), target)
        m = mask[..., None]
        return {"masked input": unpatchify(target * ~m, p, grid), "reference": img2,
                "reconstruction": unpatchify(torch.where(m, pred, target), p, grid), "target": img1}
