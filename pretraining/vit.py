"""Vision Transformer backbones (Dosovitskiy et al., ICLR 2021) on timm layers, patch 16, any image size that
is a multiple of the patch, with 2D RoPE (CroCo v2), fixed 2D sin-cos (MAE, CroCo v1) or learned (timm)
positions, and an optional CLS token.

The backbone contract (DESIGN.md, helper brief): ``forward_features(x: [B,3,H,W]) -> [B, P + N, C]``
(P = ``num_prefix_tokens``, 1 with a CLS token), attributes ``embed_dim``, ``patch_size``, ``img_size``,
``grid_size``, ``num_prefix_tokens``, ``blocks``, ``depth``; timm parameter names (``patch_embed.proj``,
``cls_token``, ``pos_embed``, ``blocks.N.attn.qkv``, ``norm``) so timm and CroCo encoder weights load.
``forward_encoder(x, mask)`` encodes only the visible patches (MAE/CroCo), ``mask: [B, N] bool, True = hidden``.

Sizes (timm / DeiT names): tiny 192-d x 12 (3 heads), small 384 x 12 (6), base 768 x 12 (12), large 1024 x 24 (16).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from timm.layers import PatchEmbed, resample_abs_pos_embed
from torch import nn

from core.config import from_dict
from core.registry import BACKBONES
from pretraining.layers import Block, ConvStem, RoPE2D, grid_positions, init_weights, layer_norm, sincos_2d

POS_EMBEDS = ("rope", "sincos", "learned")
STEMS = ("patch", "conv")


@dataclass(frozen=True)
class ViTConfig:
    """Everything needed to rebuild a backbone (stored in every checkpoint sidecar)."""

    arch: str = "vit_tiny"
    img_size: int = 128
    patch_size: int = 16
    embed_dim: int = 192
    depth: int = 12
    num_heads: int = 3
    mlp_ratio: float = 4.0
    pos_embed: str = "rope"
    class_token: bool = True
    rope_base: float = 100.0
    drop_path_rate: float = 0.0
    stem: str = "patch"  # "patch": one linear patch projection (ViT); "conv": ConvStem (ViT_C, Xiao et al. 2021)


# The one table of architectures: ``build_vit``, the ``BACKBONES`` registry (``cpcbench ls backbones``,
# ``resolve_backbone``), ``pretraining.arch_file`` and the checkpoint loaders read it.
ARCHS: dict[str, dict[str, int]] = {
    "vit_tiny": {"embed_dim": 192, "depth": 12, "num_heads": 3},
    "vit_small": {"embed_dim": 384, "depth": 12, "num_heads": 6},
    "vit_base": {"embed_dim": 768, "depth": 12, "num_heads": 12},
    "vit_large": {"embed_dim": 1024, "depth": 24, "num_heads": 16},
}


class VisionTransformer(nn.Module):
    """ViT encoder; see module docstring for the contract."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        if cfg.pos_embed not in POS_EMBEDS:
            raise ValueError(f"unknown pos_embed {cfg.pos_embed!r}; choose one of {POS_EMBEDS}")
        if cfg.img_size % cfg.patch_size:
            raise ValueError(f"img_size {cfg.img_size} is not a multiple of the patch size {cfg.patch_size}")
        if cfg.stem not in STEMS:
            raise ValueError(f"unknown stem {cfg.stem!r}; choose one of {STEMS}")
        self.cfg = cfg
        self.arch = cfg.arch
        self.embed_dim = self.num_features = cfg.embed_dim
        self.patch_size = cfg.patch_size
        self.img_size = cfg.img_size
        self.grid_size = (cfg.img_size // cfg.patch_size, cfg.img_size // cfg.patch_size)
        self.num_prefix_tokens = 1 if cfg.class_token else 0
        self.depth = cfg.depth
        self.num_heads = cfg.num_heads
        self.pos_embed_kind = cfg.pos_embed
        self.patch_embed = PatchEmbed(cfg.img_size, cfg.patch_size, 3, cfg.embed_dim, strict_img_size=False)
        if cfg.stem == "conv":  # timm's PatchEmbed (flatten, norm) around a convolutional stem: same names, same map
            self.patch_embed.proj = ConvStem(cfg.patch_size, cfg.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim)) if cfg.class_token else None
        n = self.grid_size[0] * self.grid_size[1]
        if cfg.pos_embed == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, self.num_prefix_tokens + n, cfg.embed_dim))
        else:
            self.pos_embed = None
        self.rope = RoPE2D(cfg.rope_base) if cfg.pos_embed == "rope" else None
        dpr = [cfg.drop_path_rate * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]  # stochastic depth ramp
        self.blocks = nn.ModuleList(Block(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio, qkv_bias=True, drop_path=dpr[i])
                                    for i in range(cfg.depth))
        self.norm = layer_norm(cfg.embed_dim)
        self._sincos_cache: dict[tuple[int, int, str], torch.Tensor] = {}
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_weights(self)
        if isinstance(self.patch_embed.proj, nn.Conv2d):
            w = self.patch_embed.proj.weight
            nn.init.xavier_uniform_(w.view(w.shape[0], -1))
            nn.init.zeros_(self.patch_embed.proj.bias)
        else:  # the convolutional stem: He init for the ReLU convolutions (torch's default is for leaky ReLU)
            for m in self.patch_embed.proj.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=0.02)
        if self.pos_embed is not None:
            with torch.no_grad():  # learned positions start from the sin-cos code (as MAE's timm weights)
                self.pos_embed.zero_()
                self.pos_embed[0, self.num_prefix_tokens:] = sincos_2d(self.embed_dim, *self.grid_size)

    # --- positions ---------------------------------------------------------------------------------------
    def _abs_pos(self, gh: int, gw: int, device: torch.device, dtype: torch.dtype) -> tuple[Any, Any]:
        """(prefix pos [1, P, C] or None, patch pos [1, gh*gw, C] or None) for absolute position codes."""
        if self.pos_embed_kind == "sincos":
            key = (gh, gw, str(device))
            if key not in self._sincos_cache:
                self._sincos_cache[key] = sincos_2d(self.embed_dim, gh, gw).to(device)[None]
            return None, self._sincos_cache[key].to(dtype)
        if self.pos_embed_kind == "learned":
            pos = self.pos_embed
            if (gh, gw) != self.grid_size:
                pos = resample_abs_pos_embed(pos, new_size=[gh, gw], old_size=list(self.grid_size),
                                             num_prefix_tokens=self.num_prefix_tokens)
            p = self.num_prefix_tokens
            return (pos[:, :p] if p else None), pos[:, p:]
        return None, None

    def rope_for(self, pos: torch.Tensor, num_prefix: int) -> Any:
        """RoPE (cos, sin) for token positions pos: [B, N, 2], or None without RoPE."""
        if self.rope is None:
            return None
        return self.rope.cos_sin(pos, self.embed_dim // self.num_heads, num_prefix)

    # --- encoding -----------------------------------------------------------------------------------------
    def forward_encoder(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                        return_intermediates: list[int] | None = None) -> Any:
        """x: [B, 3, H, W]; mask: [B, N] bool (True = hidden, same count per row) or None ->
        normed tokens [B, P + N_visible, C] (visible patches in row-major order after the prefix)."""
        b, _, h, w = x.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"input {h}x{w} is not a multiple of the patch size {p}")
        gh, gw = h // p, w // p
        tokens = self.patch_embed(x)  # [B, N, C]
        prefix_pos, patch_pos = self._abs_pos(gh, gw, x.device, tokens.dtype)
        if patch_pos is not None:
            tokens = tokens + patch_pos
        pos = grid_positions(gh, gw, x.device)[None].expand(b, -1, -1)
        if mask is not None:
            if mask.shape != tokens.shape[:2]:
                raise ValueError(f"mask shape {tuple(mask.shape)} does not match {b} images of {gh * gw} patches")
            keep = ~mask
            tokens = tokens[keep].reshape(b, -1, self.embed_dim)
            pos = pos[keep].reshape(b, -1, 2)
        if self.cls_token is not None:
            cls = self.cls_token.expand(b, -1, -1)
            if prefix_pos is not None:
                cls = cls + prefix_pos
            tokens = torch.cat([cls, tokens], dim=1)
        rope = self.rope_for(pos, self.num_prefix_tokens)
        outs = []
        for i, blk in enumerate(self.blocks):
            tokens = blk(tokens, rope)
            if return_intermediates is not None and i in return_intermediates:
                outs.append(tokens)
        tokens = self.norm(tokens)
        return (tokens, outs) if return_intermediates is not None else tokens

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, H, W] -> [B, P + N, C] (final LayerNorm applied)."""
        return self.forward_encoder(x)

    def forward_intermediates(self, x: torch.Tensor, indices: int | list[int] = 4,
                              norm: bool = False) -> list[torch.Tensor]:
        """Outputs of blocks ``indices`` (an int n = the last n blocks): list of [B, P + N, C]."""
        idx = list(range(self.depth - indices, self.depth)) if isinstance(indices, int) else list(indices)
        bad = [i for i in idx if not 0 <= i < self.depth]
        if bad:
            raise ValueError(f"block indices {bad} out of range for depth {self.depth}")
        _, outs = self.forward_encoder(x, return_intermediates=idx)
        return [self.norm(o) for o in outs] if norm else outs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.cfg)


def build_vit(arch: str = "vit_tiny", **overrides: Any) -> VisionTransformer:
    """A backbone by size name and config overrides (img_size, pos_embed, class_token, ...)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown ViT size {arch!r}; choose one of {sorted(ARCHS)}")
    return VisionTransformer(ViTConfig(arch=arch, **{**ARCHS[arch], **overrides}))


def vit_from_config(cfg: dict[str, Any]) -> VisionTransformer:
    """Rebuild a backbone from ``config_dict()`` (as stored in checkpoint sidecars)."""
    return VisionTransformer(from_dict(ViTConfig, cfg))


class ViTVariant:
    """One size of ``ARCHS``, registered in ``BACKBONES`` under its name: calling it builds that ViT."""

    def __init__(self, arch: str) -> None:
        d = ARCHS[arch]
        self.arch = arch
        self.__doc__ = (f"ViT-{arch.removeprefix('vit_').title()}/{ViTConfig.patch_size} ({d['embed_dim']}-d, "
                        f"{d['depth']} blocks, {d['num_heads']} heads).")

    def __call__(self, **overrides: Any) -> VisionTransformer:
        return build_vit(self.arch, **overrides)


for _arch in ARCHS:  # the registry is filled from the one table of sizes
    BACKBONES.register(_arch, obj=ViTVariant(_arch))
