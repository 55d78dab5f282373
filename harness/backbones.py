"""``resolve_backbone(spec)``: the one place that turns a ``--backbone`` value into a ViT and its provenance.

``spec`` is one of:
- a pretraining method name (``cpc``, ``mae``, ``dino``, ``supervised``): the newest local export of that
  method for that domain, ``<runs>/pretrain/<domain>-<method>-*/backbone.safetensors`` with ``<runs>`` =
  ``$CPCBENCH_RUNS`` or ``./runs`` (``supervised``: of any domain, its data are objects, not people); none -> a
  ``CpcbenchError`` naming the ``cpcbench pretrain`` command;
- ``scratch``: random init of the default architecture (``SCRATCH``: ViT-Tiny/16, 2D RoPE, CLS token,
  the same backbone ``cpcbench pretrain`` trains by default); ``scratch,key=value,...`` another one, keys
  ``arch`` (vit_tiny, vit_small, ...), ``patch`` (patch size), ``stem`` (patch | conv), ``pos`` (rope | sincos |
  learned): the random-init baseline of pretraining runs made with those settings;
- ``timm:NAME.TAG`` (e.g. ``timm:vit_base_patch16_224.mae``): timm weights from the local cache;
- ``cnn:NAME`` (e.g. ``cnn:resnet18``): a reference CNN (issue 16), timm's random init of that convolutional
  network, its final feature map as the tokens (``pretraining.cnn``); method ``reference-cnn``, no weights file. Input
  size: ``img_size``, else ``SCRATCH``'s, so it shares its table columns with the default ViT rows;
- a checkpoint file: ours (``.safetensors`` + sidecar), a CroCo v2 release ``.pth`` or a CroCo ``pretrain.py``
  checkpoint (architecture from its ``args.model``);
- ``ARCH[,key=value...]:FILE`` (e.g. ``vit_small:weights.safetensors``): a plain weights file (timm/our or CroCo
  key layout) with the architecture given; options ``pos=learned|sincos|rope``, ``img=``, ``rope_base=``,
  ``norm=imagenet|inception`` (``pretraining.arch_file``).

The info dict: ``name, arch, method, weights (path or ""), weights_sha256, img_size, pretrain`` (the pretraining
config or {}), ``input_norm`` (``{"mean": [3], "std": [3]}``: the pixel normalisation the weights expect, timm's
``pretrained_cfg`` for timm tags, ImageNet's otherwise), plus ``backbone`` (the config that rebuilds it) and
``load`` (the key report).

A method name is a moving target (a run that finishes makes a newer export): ``pinned_spec(spec, info)`` is
the spec that rebuilds exactly the file one resolution found; ``cpcbench eval`` resolves once and builds every
seed from it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import CpcbenchError

if TYPE_CHECKING:
    from torch import nn

SCRATCH: dict[str, Any] = {"arch": "vit_tiny", "img_size": 128, "pos_embed": "rope"}
REFERENCE_CNN = "reference-cnn"  # the record's method of a ``cnn:NAME`` backbone: a diagnostic, not a pretraining


def runs_root() -> Path:
    return Path(os.environ.get("CPCBENCH_RUNS", "runs"))


def find_pretrained(method: str, domain: str, root: Path | None = None) -> Path | None:
    """Newest ``backbone.safetensors`` of ``method`` for ``domain`` (by modification time), or None. A method
    whose data do not depend on the run's domain (its ``batch_needs.any_domain``, e.g. supervised on
    synth-objects) takes any domain's run."""
    from harness.registries import METHODS

    base = (root or runs_root()).absolute() / "pretrain"
    pattern = f"*-{method}-*" if METHODS.get(method).batch_needs.any_domain else f"{domain}-{method}-*"
    hits = [p for p in base.glob(f"{pattern}/backbone.safetensors") if p.is_file()]
    return max(hits, key=lambda p: p.stat().st_mtime) if hits else None


SCRATCH_KEYS = {"arch": ("arch", str), "patch": ("patch_size", int), "stem": ("stem", str),
                "pos": ("pos_embed", str)}


def scratch_config(spec: str) -> tuple[str, dict[str, Any]]:
    """``scratch[,key=value...]`` -> (arch, build overrides); unknown keys or bad values are a clear error."""
    cfg = {k: v for k, v in SCRATCH.items() if k != "arch"}
    arch = str(SCRATCH["arch"])
    for item in spec.split(",")[1:]:
        key, sep, value = item.partition("=")
        if not sep or key.strip() not in SCRATCH_KEYS or not value.strip():
            keys = ", ".join(k + "=..." for k in SCRATCH_KEYS)
            raise CpcbenchError(f"backbone {spec!r}: {item!r} is not one of {keys} (e.g. scratch,patch=8,stem=conv)")
        name, kind = SCRATCH_KEYS[key.strip()]
        try:
            val = kind(value.strip())
        except ValueError:
            raise CpcbenchError(f"backbone {spec!r}: {key}={value!r} is not a valid {kind.__name__}") from None
        if name == "arch":
            arch = str(val)
        else:
            cfg[name] = val
    return arch, cfg


def resolve_backbone(spec: str, domain: str = "body", img_size: int | None = None,
                     strict: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """-> (backbone, info); see module docstring. ``img_size`` rebuilds for another input size (RoPE and
    sin-cos need nothing; learned positions are resampled)."""
    import pretraining  # noqa: F401  (fills the registries)
    from harness.registries import BACKBONES, METHODS
    from pretraining.arch_file import backbone_from_arch_file, parse_arch_spec
    from pretraining.cnn import PREFIX as CNN_PREFIX
    from pretraining.cnn import build_cnn
    from pretraining.load import NORMS, backbone_from_file, backbone_from_timm

    if spec == "scratch" or spec.startswith("scratch,"):
        arch, cfg = scratch_config(spec)
        cfg |= {"img_size": int(img_size)} if img_size else {}
        try:
            bb = BACKBONES.get(arch)(**cfg)
        except ValueError as e:
            raise CpcbenchError(f"backbone {spec!r}: {e}") from None
        info: dict[str, Any] = {"weights": "", "weights_sha256": "", "method": "scratch", "load": {},
                                "backbone": bb.config_dict(), "input_norm": dict(NORMS["imagenet"])}
    elif spec.startswith("timm:"):
        bb, info = backbone_from_timm(spec, img_size, strict)
    elif spec.startswith(CNN_PREFIX):
        bb = build_cnn(spec, int(img_size or SCRATCH["img_size"]))
        info = {"weights": "", "weights_sha256": "", "method": REFERENCE_CNN, "load": {},
                "backbone": bb.config_dict(), "input_norm": dict(NORMS["imagenet"])}
    elif spec in METHODS.names():
        path = find_pretrained(spec, domain)
        if path is None:
            raise CpcbenchError(f"no local {spec!r} backbone for domain {domain!r} under {runs_root() / 'pretrain'}: "
                                f"make one with `cpcbench pretrain {domain} --method {spec}` (or set CPCBENCH_RUNS)")
        bb, info = backbone_from_file(path, img_size, strict)
        info["method"] = spec
    elif parse_arch_spec(spec) is not None:
        bb, info = backbone_from_arch_file(spec, img_size, strict)
    elif spec in BACKBONES:
        raise CpcbenchError(f"{spec!r} is an architecture, not a backbone spec: use 'scratch' for a random "
                            f"{spec}, a method name ({', '.join(METHODS.names())}), timm:NAME.TAG, cnn:NAME, a "
                            f"checkpoint file or {spec}:FILE for a plain weights file of that architecture")
    elif Path(spec).suffix in (".safetensors", ".pth", ".pt", ".bin", ".ckpt") or Path(spec).is_file():
        bb, info = backbone_from_file(spec, img_size, strict)
    else:
        raise CpcbenchError(f"unknown backbone {spec!r}: use a method name ({', '.join(METHODS.names())}), "
                            "'scratch', timm:NAME.TAG (e.g. timm:vit_base_patch16_224.mae), cnn:NAME (a random-init "
                            "reference CNN, e.g. cnn:resnet18), a checkpoint file or ARCH:FILE (e.g. "
                            "vit_small:weights.safetensors)")
    info = {"name": spec, "arch": bb.arch, "img_size": bb.img_size, "pretrain": info.pop("pretrain", {}), **info}
    return bb, info


def pinned_spec(spec: str, info: dict[str, Any]) -> str:
    """The spec that rebuilds exactly the weights ``info`` (from ``resolve_backbone(spec)``) describes: a method
    name -> the file it resolved to; every other spec already names its weights."""
    from harness.registries import METHODS

    return str(info["weights"]) if spec in METHODS.names() and info.get("weights") else spec
