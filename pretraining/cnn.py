"""Reference CNNs (``--backbone cnn:NAME``): a timm convolutional network, random init, behind the backbone contract.

Issue 16: on a task that ViTs fail to learn from random init, a CNN trained the same way (same data, heads, loop and
schedule) is the diagnostic that says whether the task is learnable at all at that data and compute: an upper bound
of what a random-init backbone can reach, not a pretraining method. Nothing is downloaded: weights are timm's
random init (``timm.create_model(NAME, pretrained=False, num_classes=0)``), seeded by the caller.

The contract (``pretraining.vit``): ``forward_features(x: [B, 3, H, W]) -> tokens [B, h*w, C]``, timm's
``forward_features`` map ``[B, C, h, w]`` flattened row-major (so ``tasks.heads.patch_grid`` gives the map back),
``num_prefix_tokens`` 0 (mean-pooling heads pool the map), ``embed_dim`` = C, ``patch_size`` = the map's stride
(timm's ``feature_info`` reduction, 32 for ResNets), ``grid_size`` = (h, w) at ``img_size`` (2x2 at 64 px, 4x4 at
128 px for a stride-32 network). It has no ``blocks``: layer-wise LR decay does not apply
(``harness.evaluate.layer_decay``).

NAME is any timm model whose ``forward_features`` gives a channels-first map at ``img_size``; a name timm does not
know, a pretrained tag, or a model that gives tokens (a ViT) or fails at that size is a one-line error. Parameters
that ``forward_features`` never reaches (timm heads outside it, e.g. MobileNetV3's ``conv_head``) are frozen, so no
optimizer or DDP step sees a parameter without a gradient.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from core.errors import CpcbenchError

PREFIX = "cnn:"


@dataclass(frozen=True)
class CNNConfig:
    """Everything that rebuilds a reference CNN (random init; the weights come from the seed)."""

    arch: str = "resnet18"
    img_size: int = 128


def parse_cnn_spec(spec: str) -> str:
    """``cnn:NAME`` -> NAME (a timm model name without a pretrained tag), or a one-line error."""
    import timm

    name = spec[len(PREFIX):].strip() if spec.startswith(PREFIX) else spec.strip()
    if not name:
        raise CpcbenchError(f"backbone {spec!r}: name a timm CNN, e.g. cnn:resnet18")
    if "." in name:
        raise CpcbenchError(f"backbone {spec!r}: cnn:NAME is random init only (nothing is downloaded); drop the "
                            f"pretrained tag: cnn:{name.split('.', 1)[0]}")
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(PREFIX + c for c in close)}?" if close else ""
        raise CpcbenchError(f"backbone {spec!r}: timm has no model {name!r}{hint} (cnn:NAME takes a timm CNN name, "
                            "e.g. cnn:resnet18, cnn:resnet50, cnn:convnext_atto)")
    return name


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


class ReferenceCNN(nn.Module):
    """A timm CNN whose final feature map is the token sequence; see the module docstring for the contract."""

    def __init__(self, cfg: CNNConfig) -> None:
        import timm

        super().__init__()
        if cfg.img_size < 1:
            raise CpcbenchError(f"cnn:{cfg.arch}: img_size must be positive, got {cfg.img_size}")
        self.cfg = cfg
        self.arch = cfg.arch
        self.img_size = cfg.img_size
        self.num_prefix_tokens = 0
        try:
            self.net = timm.create_model(cfg.arch, pretrained=False, num_classes=0)
        except Exception as e:  # a timm constructor's own complaint, shown on one line
            raise CpcbenchError(f"cnn:{cfg.arch}: timm cannot build it ({_first_line(e)})") from None
        c, h, w = self._probe()
        self.embed_dim = self.num_features = c
        self.grid_size = (h, w)
        last = (getattr(self.net, "feature_info", None) or [{}])[-1]  # timm: one dict per stage, the last is the map
        reduction = last.get("reduction") if isinstance(last, dict) else None
        self.patch_size = int(reduction) if reduction else max(1, cfg.img_size // h)
        if (h * self.patch_size, w * self.patch_size) != (cfg.img_size, cfg.img_size):
            raise CpcbenchError(f"cnn:{cfg.arch} at {cfg.img_size} px gives a {h}x{w} map of stride {self.patch_size}, "
                                f"which does not tile the image: use an input size that is a multiple of "
                                f"{self.patch_size} (--img-size)")

    def _probe(self) -> tuple[int, int, int]:
        """One forward + backward of a blank image at ``img_size`` (eval mode: BatchNorm needs no batch): the
        map's (C, h, w); a model that gives no channels-first map is an error; parameters without a gradient
        are frozen."""
        name = f"cnn:{self.cfg.arch}"
        self.net.eval()
        try:
            out = self.net.forward_features(torch.zeros(1, 3, self.cfg.img_size, self.cfg.img_size))
        except Exception as e:  # e.g. a ViT asserting its own input size
            raise CpcbenchError(f"{name}: timm's forward_features fails on a {self.cfg.img_size} px input "
                                f"({_first_line(e)}): not a CNN that takes this size") from None
        channels = getattr(self.net, "num_features", None)
        if not isinstance(out, torch.Tensor) or out.ndim != 4 or (channels and out.shape[1] != channels
                                                                   and out.shape[-1] == channels):
            shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise CpcbenchError(f"{name}: forward_features gives {shape}, not a [B, C, h, w] feature map: not a "
                                "CNN (use scratch,... or timm:NAME.TAG for a ViT)")
        out.float().sum().backward()
        for p in self.net.parameters():
            if p.grad is None:
                p.requires_grad_(False)
            p.grad = None
        self.net.train()
        _, c, h, w = out.shape
        return int(c), int(h), int(w)

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, H, W] -> the final feature map [B, C, h, w]."""
        return self.net.forward_features(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, H, W] -> tokens [B, h*w, C] (the map, row-major; no prefix token)."""
        return self.forward_map(x).flatten(2).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)

    def config_dict(self) -> dict[str, Any]:
        return {"kind": "cnn", **asdict(self.cfg)}


def build_cnn(spec: str, img_size: int) -> ReferenceCNN:
    """``cnn:NAME`` at ``img_size`` -> a random-init ReferenceCNN (seed the torch RNG first)."""
    return ReferenceCNN(CNNConfig(arch=parse_cnn_spec(spec), img_size=int(img_size)))
