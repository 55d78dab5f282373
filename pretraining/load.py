"""Loading weights into our ViT backbones: our safetensors checkpoints, timm weights (``timm:NAME.TAG``) and
CroCo / CroCo v2 checkpoints, with exact reports of missing and unexpected keys.

Rules (MAE's fine-tuning asserts the exact missing keys; we do the same for every source):
- ``missing``: backbone keys the checkpoint does not provide. Any missing key is a surprise.
- ``unexpected``: checkpoint keys the backbone has no place for. Keys under the source's known
  non-encoder prefixes (a CPC/MAE decoder, a classifier head, DINO's teacher and projection head) are
  reported as ``allowed_unexpected``; any other is a surprise.
- Surprises raise ``CheckpointError`` naming the keys, unless ``strict=False`` is asked.
- A learned ``pos_embed`` of another grid is resampled (bicubic, timm's ``resample_abs_pos_embed``) and
  reported in ``resampled``; any other shape mismatch is an error.

CroCo layout (naver/croco ``CroCoNet`` state dicts, read only as data): ``enc_blocks.N.* -> blocks.N.*``,
``enc_norm.* -> norm.*``, ``patch_embed.*`` unchanged; ``enc_pos_embed`` (its fixed cosine code) is dropped
after checking it equals ours where the grid matches; the decoder (``decoder_embed``, ``mask_token``,
``dec_blocks``, ``dec_norm``, ``prediction_head``, ``dec_pos_embed``) is allowed-unexpected. CroCo has no CLS
token and uses ``pos_embed='cosine'`` (our ``sincos``) or ``'RoPE100'`` (our ``rope``, base 100).

timm weights are found offline: ``$CPCBENCH_WEIGHTS/<NAME.TAG>.safetensors`` (or ``.pth``/``.bin``; default
directory ``~/.cache/cpcbench/weights``), else the Hugging Face hub cache that ``timm.create_model(...,
pretrained=True)`` fills. Nothing is downloaded here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.checkpoints import CheckpointError

OBJECTIVE_PREFIXES = ("decoder.", "head.", "teacher_backbone.", "teacher_head.", "center", "progress")
TIMM_HEAD_PREFIXES = ("head.", "head_drop.", "fc_norm.")
CROCO_DECODER_PREFIXES = ("decoder_embed.", "mask_token", "dec_blocks.", "dec_norm.", "prediction_head.",
                          "dec_pos_embed", "dec_blocks2.")


@dataclass
class LoadReport:
    """What a load did: keys missing from the checkpoint, unexpected keys (allowed or not), resampled keys."""

    source: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    allowed_unexpected: list[str] = field(default_factory=list)
    resampled: list[str] = field(default_factory=list)
    renamed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "missing": self.missing, "unexpected": self.unexpected,
                "allowed_unexpected": self.allowed_unexpected, "resampled": self.resampled, "renamed": self.renamed}


def _short(keys: list[str], n: int = 8) -> str:
    return ", ".join(keys[:n]) + (f" ... (+{len(keys) - n} more)" if len(keys) > n else "")


def load_into(backbone: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str = "checkpoint",
              allowed_prefixes: Iterable[str] = (), strict: bool = True) -> LoadReport:
    """Load ``state_dict`` (already in our key names) into ``backbone``; see module docstring for the rules."""
    from timm.layers import resample_abs_pos_embed

    allowed = tuple(allowed_prefixes)
    own = backbone.state_dict()
    report = LoadReport(source=source)
    report.missing = sorted(k for k in own if k not in state_dict)
    extra = sorted(k for k in state_dict if k not in own)
    report.allowed_unexpected = [k for k in extra if k.startswith(allowed)]
    report.unexpected = [k for k in extra if not k.startswith(allowed)]
    to_load: dict[str, torch.Tensor] = {}
    for k, v in state_dict.items():
        if k not in own:
            continue
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{source}: entry {k!r} is a {type(v).__name__}, not a tensor")
        if v.shape != own[k].shape:
            if k == "pos_embed" and v.ndim == 3 and v.shape[-1] == own[k].shape[-1]:
                p = getattr(backbone, "num_prefix_tokens", 0)
                old = round((v.shape[1] - p) ** 0.5)
                if old * old != v.shape[1] - p:
                    raise CheckpointError(f"{source}: pos_embed {tuple(v.shape)} is not a square grid; cannot resample")
                v = resample_abs_pos_embed(v.float(), new_size=list(backbone.grid_size), old_size=[old, old],
                                           num_prefix_tokens=p)
                report.resampled.append(k)
            else:
                raise CheckpointError(f"{source}: {k!r} has shape {tuple(v.shape)} but the backbone expects "
                                      f"{tuple(own[k].shape)}: the checkpoint is for another architecture")
        to_load[k] = v
    if strict and (report.missing or report.unexpected):
        parts = []
        if report.missing:
            parts.append(f"missing keys {_short(report.missing)}")
        if report.unexpected:
            parts.append(f"unexpected keys {_short(report.unexpected)}")
        raise CheckpointError(f"{source} does not fit the backbone: {'; '.join(parts)}. Check the architecture "
                              "(arch, class token, pos_embed) or load with strict=False to accept this.")
    backbone.load_state_dict(to_load, strict=False)
    return report


# --- our checkpoints ---------------------------------------------------------------------------------------
def strip_objective(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A full objective state (``backbone.*``, ``decoder.*``, ...) -> encoder keys unprefixed, rest unchanged.
    A plain backbone state passes through."""
    if not any(k.startswith("backbone.") for k in state_dict):
        return dict(state_dict)
    return {(k[len("backbone."):] if k.startswith("backbone.") else k): v for k, v in state_dict.items()}


# --- CroCo -------------------------------------------------------------------------------------------------
def croco_config(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """ViTConfig fields from a CroCo ``croco_kwargs`` dict (CroCoNet defaults for absent keys)."""
    from pretraining.vit import ARCHS

    dim, depth, heads = (int(kwargs.get(k, d)) for k, d in
                         (("enc_embed_dim", 768), ("enc_depth", 12), ("enc_num_heads", 12)))
    pe = str(kwargs.get("pos_embed", "cosine"))
    if pe == "cosine":
        pos, base = "sincos", 100.0
    elif m := re.fullmatch(r"RoPE(\d+(?:\.\d+)?)", pe):
        pos, base = "rope", float(m.group(1))
    else:
        raise CheckpointError(f"CroCo pos_embed {pe!r} is not supported (cosine or RoPE<freq>)")
    arch = next((a for a, s in ARCHS.items() if (s["embed_dim"], s["depth"], s["num_heads"]) == (dim, depth, heads)),
                f"vit_{dim}d{depth}")
    return {"arch": arch, "img_size": int(kwargs.get("img_size", 224)), "patch_size": int(kwargs.get("patch_size", 16)),
            "embed_dim": dim, "depth": depth, "num_heads": heads, "mlp_ratio": float(kwargs.get("mlp_ratio", 4.0)),
            "pos_embed": pos, "class_token": False, "rope_base": base}


def is_croco(state_dict: Mapping[str, Any]) -> bool:
    return any(k.startswith("enc_blocks.") for k in state_dict)


def remap_croco(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int]:
    """CroCo key layout -> ours (see module docstring). Returns (state_dict, number of renamed keys)."""
    out: dict[str, torch.Tensor] = {}
    renamed = 0
    for k, v in state_dict.items():
        if k.startswith("enc_blocks."):
            out["blocks." + k[len("enc_blocks."):]] = v
            renamed += 1
        elif k.startswith("enc_norm."):
            out["norm." + k[len("enc_norm."):]] = v
            renamed += 1
        else:
            out[k] = v
    return out, renamed


def check_croco_pos(state_dict: Mapping[str, torch.Tensor], backbone: nn.Module) -> None:
    """CroCo's fixed cosine code must equal our sin-cos code where the grid matches (else layouts differ)."""
    from pretraining.layers import sincos_2d

    pe = state_dict.get("enc_pos_embed")
    if pe is None or getattr(backbone, "pos_embed_kind", "") != "sincos":
        return
    ours = sincos_2d(backbone.embed_dim, *backbone.grid_size)
    pe = pe.reshape(-1, pe.shape[-1]).float()
    if pe.shape == ours.shape and not torch.allclose(pe, ours, atol=1e-4):
        raise CheckpointError("the CroCo checkpoint's enc_pos_embed differs from the 2D sin-cos code this backbone "
                              "uses: the position layout would be wrong; refusing to load")


# --- timm --------------------------------------------------------------------------------------------------
def parse_timm(spec: str) -> tuple[str, str]:
    """``timm:vit_base_patch16_224.mae`` -> ("vit_base_patch16_224", "mae")."""
    name = spec[len("timm:"):] if spec.startswith("timm:") else spec
    model, _, tag = name.partition(".")
    if not model or not tag:
        raise CheckpointError(f"timm backbone {spec!r} must name a weights tag, e.g. timm:vit_base_patch16_224.mae")
    return model, tag


def timm_config(model: str) -> dict[str, Any]:
    """ViTConfig fields for a timm ViT name (``vit_{tiny,small,base,large}_patch16_<size>``)."""
    from pretraining.vit import ARCHS

    m = re.fullmatch(r"(vit_(?:tiny|small|base|large))_patch16_(\d+)(?:_.*)?", model)
    if not m or m.group(1) not in ARCHS:
        raise CheckpointError(f"timm model {model!r} is not a plain ViT/16 we can host; "
                              f"use vit_{{tiny,small,base,large}}_patch16_<size>")
    return {"arch": m.group(1), "img_size": int(m.group(2)), "pos_embed": "learned", **ARCHS[m.group(1)]}


def weights_dir() -> Path:
    return Path(os.environ.get("CPCBENCH_WEIGHTS", Path.home() / ".cache" / "cpcbench" / "weights"))


def find_timm_weights(model: str, tag: str) -> Path:
    """The local file holding ``model.tag`` weights, or a ``CheckpointError`` saying how to get it."""
    name = f"{model}.{tag}"
    for ext in (".safetensors", ".pth", ".bin"):
        p = weights_dir() / f"{name}{ext}"
        if p.is_file():
            return p
    try:
        import timm
        from huggingface_hub import try_to_load_from_cache

        cfg = timm.models.get_pretrained_cfg(name)
        hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
        if hub_id:
            for fname in ("model.safetensors", "pytorch_model.bin"):
                hit = try_to_load_from_cache(hub_id, fname)
                if isinstance(hit, str) and Path(hit).is_file():
                    return Path(hit)
    except ImportError:
        pass
    raise CheckpointError(
        f"weights for timm:{name} are not on this machine and nothing is downloaded at run time: on a machine with "
        f"network run  python -c \"import timm; timm.create_model('{name}', pretrained=True)\"  (fills the Hugging "
        f"Face cache), or save its state dict as {weights_dir() / (name + '.safetensors')}")


def adapt_timm(state_dict: Mapping[str, torch.Tensor], backbone: nn.Module) -> dict[str, torch.Tensor]:
    """timm ViT state -> ours: a pos_embed without a CLS slot (``no_embed_class``) gets a zero slot (same maths)."""
    sd = dict(state_dict)
    pe = sd.get("pos_embed")
    if pe is not None and "cls_token" in sd and backbone.num_prefix_tokens == 1:
        n = pe.shape[1]
        if round(n ** 0.5) ** 2 == n:  # square grid without a prefix slot
            sd["pos_embed"] = torch.cat([pe.new_zeros(1, 1, pe.shape[-1]), pe], dim=1)
    return sd


# --- building a backbone from a source ---------------------------------------------------------------------
def _build(cfg: Mapping[str, Any], img_size: int | None) -> nn.Module:
    from pretraining.vit import vit_from_config

    cfg = dict(cfg)
    if img_size:
        cfg["img_size"] = int(img_size)
    try:
        return vit_from_config(cfg)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"cannot build the backbone {cfg.get('arch', '?')} from its stored config "
                              f"({e})") from None


def backbone_from_timm(spec: str, img_size: int | None = None, strict: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """``timm:NAME.TAG`` -> (backbone with learned positions, info). Classifier heads are allowed-unexpected."""
    from harness.checkpoints import load_weights, sha256_file

    model, tag = parse_timm(spec)
    cfg = timm_config(model)
    path = find_timm_weights(model, tag)
    sd, _ = load_weights(path, verify=False)
    sd = sd.get("state_dict", sd.get("model", sd)) if isinstance(sd, dict) else sd
    has_cls = "cls_token" in sd
    bb = _build({**cfg, "class_token": has_cls}, img_size)
    report = load_into(bb, adapt_timm(sd, bb), source=f"timm:{model}.{tag} ({path})",
                       allowed_prefixes=TIMM_HEAD_PREFIXES, strict=strict)
    return bb, {"weights": str(path), "weights_sha256": sha256_file(path), "load": report.as_dict(),
                "method": f"timm.{tag}", "backbone": bb.config_dict()}


def backbone_from_file(path: str | Path, img_size: int | None = None, strict: bool = True,
                       ) -> tuple[nn.Module, dict[str, Any]]:
    """Our safetensors checkpoint (sidecar ``config.backbone``) or a CroCo ``.pth`` -> (backbone, info)."""
    from harness.checkpoints import load_weights

    path = Path(path)
    sd, meta = load_weights(path)
    info: dict[str, Any] = {"weights": str(path), "weights_sha256": meta.get("sha256", "")}
    if "croco_kwargs" in sd or is_croco(sd.get("model", sd) if isinstance(sd.get("model"), Mapping) else sd):
        kwargs = sd.get("croco_kwargs", {}) or {}
        sd = sd.get("model", sd) if isinstance(sd.get("model"), Mapping) else sd
        sd, renamed = remap_croco(sd)
        bb = _build(croco_config(kwargs), img_size)
        check_croco_pos(sd, bb)
        sd.pop("enc_pos_embed", None)
        report = load_into(bb, sd, source=f"CroCo checkpoint {path}", allowed_prefixes=CROCO_DECODER_PREFIXES,
                           strict=strict)
        report.renamed = renamed
        return bb, {**info, "method": "croco", "pretrain": {"croco_kwargs": dict(kwargs)}, "load": report.as_dict(),
                    "backbone": bb.config_dict()}
    config = meta.get("config") or {}
    if "backbone" not in config:
        raise CheckpointError(f"{path} has no backbone config in its sidecar {path.with_suffix('.json').name}: "
                              "not a cpcbench checkpoint (CroCo .pth files and timm:NAME.TAG specs are also accepted)")
    bb = _build(config["backbone"], img_size)
    report = load_into(bb, strip_objective(sd), source=str(path), allowed_prefixes=OBJECTIVE_PREFIXES, strict=strict)
    return bb, {**info, "method": config.get("method", ""), "pretrain": config, "load": report.as_dict(),
                "backbone": bb.config_dict()}
