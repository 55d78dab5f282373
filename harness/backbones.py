"""``resolve_backbone(spec)``: the one place that turns a ``--backbone`` value into a ViT and its provenance.

``spec`` is one of:
- a pretraining method name (``cpc``, ``mae``, ``dino``, ``supervised``): the newest local export of that
  method for that domain, ``<runs>/pretrain/<domain>-<method>-*/backbone.safetensors`` with ``<runs>`` =
  ``$CPCBENCH_RUNS`` or ``./runs`` (``supervised``: of any domain, its data are objects, not people); none -> a
  ``CpcbenchError`` naming the ``cpcbench pretrain`` command;
- ``scratch``: random init of the default architecture (``SCRATCH``: ViT-Tiny/16, 2D RoPE, CLS token,
  the same backbone ``cpcbench pretrain`` trains by default);
- ``timm:NAME.TAG`` (e.g. ``timm:vit_base_patch16_224.mae``): timm weights from the local cache;
- a checkpoint file: ours (``.safetensors`` + sidecar) or a CroCo/CroCo v2 ``.pth``.

The info dict: ``name, arch, method, weights (path or ""), weights_sha256, img_size, pretrain`` (the pretraining
config or {}), plus ``backbone`` (the config that rebuilds it) and ``load`` (the key report).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import CpcbenchError

if TYPE_CHECKING:
    from torch import nn

SCRATCH: dict[str, Any] = {"arch": "vit_tiny", "img_size": 128, "pos_embed": "rope"}


def runs_root() -> Path:
    return Path(os.environ.get("CPCBENCH_RUNS", "runs"))


def find_pretrained(method: str, domain: str, root: Path | None = None) -> Path | None:
    """Newest ``backbone.safetensors`` of ``method`` for ``domain`` (by modification time), or None."""
    base = (root or runs_root()).absolute() / "pretrain"
    # supervised pretraining reads synth-objects (or an ImageFolder) whatever the domain: any domain's run will do
    pattern = f"*-{method}-*" if method == "supervised" else f"{domain}-{method}-*"
    hits = [p for p in base.glob(f"{pattern}/backbone.safetensors") if p.is_file()]
    return max(hits, key=lambda p: p.stat().st_mtime) if hits else None


def resolve_backbone(spec: str, domain: str = "body", img_size: int | None = None,
                     strict: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """-> (backbone, info); see module docstring. ``img_size`` rebuilds for another input size (RoPE and
    sin-cos need nothing; learned positions are resampled)."""
    import pretraining  # noqa: F401  (fills the registries)
    from harness.registry import METHODS
    from pretraining.load import backbone_from_file, backbone_from_timm
    from pretraining.vit import ARCHS, build_vit

    if spec == "scratch":
        cfg = {**SCRATCH, **({"img_size": int(img_size)} if img_size else {})}
        bb = build_vit(**cfg)
        info: dict[str, Any] = {"weights": "", "weights_sha256": "", "method": "scratch", "load": {},
                                "backbone": bb.config_dict()}
    elif spec.startswith("timm:"):
        bb, info = backbone_from_timm(spec, img_size, strict)
    elif spec in METHODS.names():
        path = find_pretrained(spec, domain)
        if path is None:
            raise CpcbenchError(f"no local {spec!r} backbone for domain {domain!r} under {runs_root() / 'pretrain'}: "
                                f"make one with `cpcbench pretrain {domain} --method {spec}` (or set CPCBENCH_RUNS)")
        bb, info = backbone_from_file(path, img_size, strict)
        info["method"] = spec
    elif spec in ARCHS:
        raise CpcbenchError(f"{spec!r} is an architecture, not a backbone spec: use 'scratch' for a random "
                            f"{spec}, a method name ({', '.join(METHODS.names())}), timm:NAME.TAG or a checkpoint file")
    elif Path(spec).suffix in (".safetensors", ".pth", ".pt", ".bin", ".ckpt") or Path(spec).is_file():
        bb, info = backbone_from_file(spec, img_size, strict)
    else:
        raise CpcbenchError(f"unknown backbone {spec!r}: use a method name ({', '.join(METHODS.names())}), "
                            "'scratch', timm:NAME.TAG (e.g. timm:vit_base_patch16_224.mae) or a checkpoint file")
    info = {"name": spec, "arch": bb.arch, "img_size": bb.img_size, "pretrain": info.pop("pretrain", {}), **info}
    return bb, info
