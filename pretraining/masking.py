"""Patch masks for masked image modelling. One convention everywhere: ``mask: [B, N] bool, True = hidden``.

Every sample hides exactly ``num_hidden(N, ratio) = round(ratio * N)`` patches (CroCo's ``RandomMask`` and
MAE's ``random_masking`` also hide a fixed count per sample; CroCo takes ``int(ratio*N)``, which differs
from ``round`` only when ``ratio*N`` has a fractional part >= 0.5).

- ``uniform_mask``: the hidden patches are a uniformly random subset (CroCo, MAE).
- ``human_mask`` (CroCo-Man's "human-aware" masking, our reading of it: paper.md section 3.2): the same
  count, but patches that overlap the person are drawn ``weight`` times more likely (sampling without
  replacement with weights, via the Gumbel top-k trick). ``weight = inf`` (default) spends the mask on
  the person first: all person patches are hidden before any background patch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def num_hidden(n: int, ratio: float) -> int:
    """Patches hidden per sample: round(ratio * n); at least one stays visible."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")
    k = round(ratio * n)
    return min(k, n - 1)


def _topk_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    mask = torch.zeros_like(scores, dtype=torch.bool)
    if k:
        mask.scatter_(1, scores.topk(k, dim=1).indices, True)
    return mask


def uniform_mask(batch: int, n: int, ratio: float, device: torch.device | str = "cpu",
                 generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
    """[batch, n] bool with exactly ``num_hidden(n, ratio)`` True per row, uniformly at random
    (``noise``: [batch, n] uniform draws to use instead of ``torch.rand``)."""
    scores = torch.rand(batch, n, device=device, generator=generator) if noise is None else noise
    return _topk_mask(scores, num_hidden(n, ratio))


def person_patch_fraction(person: torch.Tensor, patch: int) -> torch.Tensor:
    """person: [B, H, W] in [0, 1] (1 = person) -> [B, N] fraction of each patch covered by the person."""
    return F.avg_pool2d(person[:, None].float(), patch).flatten(1)


def human_mask(person: torch.Tensor, patch: int, ratio: float, weight: float = math.inf,
               generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
    """person: [B, H, W] person map -> [B, N] bool mask hiding exactly ``num_hidden(N, ratio)`` patches,
    drawn ``weight`` times more likely on patches that overlap the person (inf: person patches first).
    ``noise``: [B, N] uniform(0, 1) draws to use instead of ``torch.rand`` (data-side masking)."""
    if weight < 1.0:
        raise ValueError(f"human mask weight must be >= 1 (1 = uniform), got {weight}")
    on_person = person_patch_fraction(person, patch) > 0
    if noise is None:
        noise = torch.rand(on_person.shape, device=person.device, generator=generator)
    u = noise.clamp_min(1e-12)
    gumbel = -torch.log((-torch.log(u)).clamp_min(1e-12))
    if math.isinf(weight):
        scores = gumbel.sigmoid() + on_person.float() * 2.0  # person patches rank above every background patch
    else:
        scores = gumbel + on_person.float() * math.log(weight)
    return _topk_mask(scores, num_hidden(on_person.shape[1], ratio))


def fill_hidden(visible: torch.Tensor, mask: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
    """Scatter visible tokens back into the full grid, hidden slots filled with ``token``.

    visible: [B, N_visible, C] (row-major order); mask: [B, N] bool, True = hidden; token: [1, 1, C] -> [B, N, C].
    """
    b, n = mask.shape
    full = token.to(visible.dtype).expand(b, n, -1).clone()
    full[~mask] = visible.reshape(-1, visible.shape[-1])
    return full
