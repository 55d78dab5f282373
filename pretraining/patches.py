"""Patchify / unpatchify and the per-patch normalised pixel targets of MAE and CroCo (``norm_pix_loss``).

Patch layout (MAE ``patchify``): image [B, C, H, W] -> [B, N, p*p*C] with N = (H/p)*(W/p) row-major patches,
each flattened in (row-in-patch, column-in-patch, channel) order.

Normalised target of a patch ``t`` (D = p*p*C values): ``(t - mean(t)) / sqrt(var(t) + 1e-6)`` with the
unbiased variance (torch's default, as MAE and CroCo). The loss of predicting the patch mean (0 in normalised
units) on a patch is therefore ``((D-1)/D) * var/(var + 1e-6)``: 0.9987 for a textured 16x16x3 patch and
0 for a flat one, so the "predict the mean" baseline is just below 1 and lower on flat backgrounds.
"""

from __future__ import annotations

import torch

EPS = 1e-6


def patchify(imgs: torch.Tensor, p: int) -> torch.Tensor:
    """imgs: [B, C, H, W] -> [B, N, p*p*C]."""
    b, c, h, w = imgs.shape
    if h % p or w % p:
        raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {p}")
    x = imgs.reshape(b, c, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(x: torch.Tensor, p: int, grid: tuple[int, int], channels: int = 3) -> torch.Tensor:
    """x: [B, N, p*p*C] with N = gh*gw -> [B, C, gh*p, gw*p]."""
    b, n, d = x.shape
    gh, gw = grid
    if n != gh * gw or d != p * p * channels:
        raise ValueError(f"cannot unpatchify [B, {n}, {d}] into a {gh}x{gw} grid of {p}x{p}x{channels} patches")
    x = x.reshape(b, gh, gw, p, p, channels)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(b, channels, gh * p, gw * p)


def patch_stats(target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """target: [B, N, D] -> per-patch (mean, unbiased var), each [B, N, 1]."""
    return target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)


def normalize_patches(target: torch.Tensor) -> torch.Tensor:
    """target: [B, N, D] -> per-patch normalised [B, N, D] (see module docstring)."""
    mean, var = patch_stats(target)
    return (target - mean) / (var + EPS).sqrt()


def denormalize_patches(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Map normalised predictions back to pixels with the target's own patch statistics (for pictures)."""
    mean, var = patch_stats(target)
    return pred * (var + EPS).sqrt() + mean


def masked_mse_per_sample(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """pred, target: [B, N, D]; mask: [B, N] bool, True = hidden -> [B]: mean squared error over the hidden
    patches of each sample (mean over D within a patch, then over hidden patches)."""
    per_patch = (pred - target).pow(2).mean(dim=-1)  # [B, N]
    m = mask.to(per_patch.dtype)
    return (per_patch * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)
