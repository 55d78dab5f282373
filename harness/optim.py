"""AdamW parameter groups and the learning-rate schedule of the one training loop.

- Effective learning rate scales linearly with the global batch: ``lr = base_lr * global_batch / 256``
  (Goyal et al. 2017, "Accurate, Large Minibatch SGD"; the MAE/CroCo recipes state ``blr`` this way).
- Schedule: linear warmup, then half-cosine decay to ``min_ratio * lr`` (Loshchilov & Hutter, SGDR, 2017),
  as a pure function of the step (nanoGPT's ``get_lr``).
- No weight decay on biases, norm weights, tokens and position embeddings (parameters with fewer than two
  dimensions, plus the names a timm model lists in ``no_weight_decay()`` and ``*_token`` / ``pos_embed``).
- Layer-wise LR decay for ViT fine-tuning (BEiT, Bao et al. 2022; MAE fine-tuning recipe): with ``L`` blocks,
  the patch embedding, position embedding and tokens are layer 0, ``blocks.N`` is layer ``N + 1`` and
  everything else (final norm, heads) is layer ``L + 1``; a parameter in layer ``i`` gets
  ``lr_scale = decay ** (L + 1 - i)``.

Each group carries ``lr_scale``; the loop sets ``group["lr"] = lr_at(...) * group["lr_scale"]`` every step.
"""

from __future__ import annotations

import math
from typing import Any

from core.errors import CpcbenchError

NO_DECAY_NAMES = ("pos_embed", "cls_token", "mask_token", "reg_token", "dist_token")
EMBED_PREFIXES = ("patch_embed", "pos_embed", "cls_token", "reg_token", "dist_token", "mask_token", "rope")


def effective_lr(base_lr: float, global_batch: int) -> float:
    """``base_lr`` is stated per 256 samples; the learning rate actually used for ``global_batch``."""
    return base_lr * global_batch / 256


def lr_at(step: int, total: int, warmup: int, base: float, min_ratio: float = 0.0) -> float:
    """Learning rate for the optimizer step with 0-based index ``step`` of ``total`` steps.

    Linear warmup ``base * (step + 1) / warmup`` for ``step < warmup``, then cosine from ``base`` down to
    ``base * min_ratio`` at ``step == total`` (so the last step, ``total - 1``, is just above the floor).
    """
    if total <= 0:
        raise ValueError(f"total steps must be positive, got {total}")
    if warmup > 0 and step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, max(0.0, (step - warmup) / max(1, total - warmup)))
    floor = base * min_ratio
    return floor + (base - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _no_decay_set(model: Any) -> set[str]:
    """Full parameter names that a timm-style ``no_weight_decay()`` lists, on the model or its backbone."""
    names: set[str] = set()
    for prefix, mod in (("", model), ("backbone.", getattr(model, "backbone", None))):
        fn = getattr(mod, "no_weight_decay", None)
        if callable(fn):
            names |= {prefix + n for n in fn()}
    return names


def _skip_decay(name: str, ndim: int, listed: set[str]) -> bool:
    leaf = name.rsplit(".", 1)[-1]
    return ndim < 2 or name.endswith(".bias") or name in listed or leaf in NO_DECAY_NAMES


def _blocks_prefix(model: Any) -> tuple[str, int]:
    """('backbone.' or '', number of blocks) for layer-wise decay; a clear error when there are no blocks."""
    backbone = getattr(model, "backbone", None)
    if backbone is not None and hasattr(backbone, "blocks"):
        return "backbone.", len(backbone.blocks)
    if hasattr(model, "blocks"):
        return "", len(model.blocks)
    raise CpcbenchError(f"layer_decay needs a ViT with `.blocks` (or `.backbone.blocks`); "
                        f"{type(model).__name__} has neither: set layer_decay to none")


def layer_id(name: str, prefix: str, num_blocks: int) -> int:
    """Layer index of parameter ``name``: 0 for embeddings/tokens, N + 1 for ``blocks.N``, else num_blocks + 1."""
    if prefix and not name.startswith(prefix):
        return num_blocks + 1  # heads, decoders: not part of the backbone
    rel = name[len(prefix):]
    if rel.startswith("blocks."):
        return int(rel.split(".")[1]) + 1
    if rel.startswith(EMBED_PREFIXES):
        return 0
    return num_blocks + 1


def param_groups(model: Any, weight_decay: float, layer_decay: float | None = None) -> list[dict[str, Any]]:
    """AdamW groups of the trainable parameters of ``model``: [{params, param_names, weight_decay, lr_scale, layer}].

    Without ``layer_decay`` there are at most two groups (decay / no decay) with ``lr_scale`` 1.
    """
    listed = _no_decay_set(model)
    prefix, num_blocks = _blocks_prefix(model) if layer_decay is not None else ("", 0)
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = _skip_decay(name, p.ndim, listed)
        lid = layer_id(name, prefix, num_blocks) if layer_decay is not None else 0
        scale = layer_decay ** (num_blocks + 1 - lid) if layer_decay is not None else 1.0
        g = groups.setdefault((lid, skip), {"params": [], "param_names": [], "lr_scale": scale, "layer": lid,
                                            "weight_decay": 0.0 if skip else weight_decay})
        g["params"].append(p)
        g["param_names"].append(name)
    if not groups:
        raise CpcbenchError(f"{type(model).__name__} has no trainable parameters: nothing to train")
    return [groups[k] for k in sorted(groups)]
