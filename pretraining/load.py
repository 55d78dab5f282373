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

CroCo's own training checkpoints (``pretrain.py``: ``{'model', 'optimizer', 'scaler', 'args', 'epoch'}``)
carry the architecture only as ``args.model``, a constructor string such as ``"CroCoNet(enc_embed_dim=384,
enc_depth=12, enc_num_heads=6, pos_embed='RoPE100')"``: it is parsed (``ast``, literal keyword values only),
never evaluated, and ``argparse.Namespace`` is the one class the weights-only unpickler is allowed, for that
load only.

A plain weights file with no architecture of its own is named with one: ``ARCH:FILE``
(``pretraining.arch_file``).

Input normalisation: every loader reports the mean/std the weights expect (``input_norm``): timm's
``pretrained_cfg`` for timm tags (0.5/0.5 for augreg and others), ImageNet's for ours and CroCo.

timm weights are found offline: ``$CPCBENCH_WEIGHTS/<NAME.TAG>.safetensors`` (or ``.pth``/``.bin``; default
directory ``~/.cache/cpcbench/weights``), else the Hugging Face hub cache that ``timm.create_model(...,
pretrained=True)`` fills. Nothing is downloaded here.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.checkpoints import CheckpointError, load_weights, sha256_file
from humans.frames import IMAGENET_MEAN, IMAGENET_STD

OBJECTIVE_PREFIXES = ("decoder.", "head.", "teacher_backbone.", "teacher_head.", "center", "progress")
TIMM_HEAD_PREFIXES = ("head.", "head_drop.", "fc_norm.")
CROCO_DECODER_PREFIXES = ("decoder_embed.", "mask_token", "dec_blocks.", "dec_norm.", "prediction_head.",
                          "dec_pos_embed", "dec_blocks2.")
NORMS: dict[str, dict[str, list[float]]] = {
    "imagenet": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
    "inception": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
}
# CroCoNet's constructor arguments in order (naver/croco models/croco.py), for positional values in args.model
CROCO_ARGS = ("img_size", "patch_size", "mask_ratio", "enc_embed_dim", "enc_depth", "enc_num_heads", "dec_embed_dim",
              "dec_depth", "dec_num_heads", "mlp_ratio", "norm_layer", "norm_im2_in_dec", "pos_embed")


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


def parse_croco_model(text: str) -> dict[str, Any]:
    """CroCo ``pretrain.py``'s ``args.model`` (``"CroCoNet(enc_embed_dim=384, ...)"``) -> its keyword arguments.

    Parsed, never evaluated: only ``CroCoNet(...)`` with literal values is accepted; a non-literal value
    (``norm_layer=partial(...)``) is refused, since it could change the encoder."""
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        node = None
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "CroCoNet"):
        raise CheckpointError(f"the checkpoint's args.model {text!r} is not a CroCoNet(...) call; "
                              "give the architecture explicitly (ARCH:FILE, see `cpcbench eval --help`)")
    if len(node.args) > len(CROCO_ARGS):
        raise CheckpointError(f"args.model {text!r} has more positional arguments than CroCoNet takes")
    items = [(name, v) for name, v in zip(CROCO_ARGS, node.args, strict=False)]
    items += [(kw.arg, kw.value) for kw in node.keywords]
    out: dict[str, Any] = {}
    for name, value in items:
        if name is None:
            raise CheckpointError(f"args.model {text!r} unpacks **kwargs; cannot read the architecture")
        try:
            out[name] = ast.literal_eval(value)
        except ValueError:
            raise CheckpointError(f"args.model {text!r}: {name}= is not a literal value; cannot read the "
                                  "architecture safely") from None
    return out


def croco_kwargs_of(ckpt: Mapping[str, Any]) -> dict[str, Any]:
    """A CroCo checkpoint's architecture: released CroCo v2 ``croco_kwargs``, else ``pretrain.py``'s ``args.model``
    (CroCoNet defaults for what neither gives)."""
    if ckpt.get("croco_kwargs"):
        return dict(ckpt["croco_kwargs"])
    args = ckpt.get("args")
    model = vars(args).get("model") if isinstance(args, argparse.Namespace) else (
        args.get("model") if isinstance(args, Mapping) else None)
    return parse_croco_model(model) if isinstance(model, str) else {}


def _plain(obj: Any) -> Any:
    """An ``argparse.Namespace`` (and what it holds) -> JSON-safe values, for the record."""
    if isinstance(obj, argparse.Namespace):
        obj = vars(obj)
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj if obj is None or isinstance(obj, bool | int | float | str) else repr(obj)


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


def timm_pretrained_cfg(model: str, tag: str) -> Any:
    """timm's ``pretrained_cfg`` for ``model.tag`` (from timm's own table, nothing downloaded); an unknown tag is a
    ``CheckpointError`` listing the close matches among timm's tags."""
    import timm

    name = f"{model}.{tag}"
    known = timm.list_pretrained(f"{model}.*")
    if name not in known:
        close = difflib.get_close_matches(name, known or timm.list_pretrained(), n=5, cutoff=0.6)
        hint = (f"did you mean {', '.join('timm:' + c for c in close)}?" if close else
                f"its tags: {', '.join('timm:' + k for k in known)}" if known else f"timm knows no {model!r}")
        raise CheckpointError(f"timm has no pretrained tag {tag!r} for {model}: {hint}")
    try:
        return timm.models.get_pretrained_cfg(name)
    except RuntimeError as e:  # timm's own refusal, one line
        raise CheckpointError(f"timm:{name}: {str(e).strip().splitlines()[0]}") from None


def timm_input_norm(pretrained_cfg: Any) -> dict[str, list[float]]:
    """The mean/std the weights were trained with (timm's ``pretrained_cfg``; ImageNet when it says none)."""
    mean, std = getattr(pretrained_cfg, "mean", None), getattr(pretrained_cfg, "std", None)
    if not mean or not std:
        return dict(NORMS["imagenet"])
    return {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}


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
def build_backbone(cfg: Mapping[str, Any], img_size: int | None) -> nn.Module:
    from pretraining.vit import vit_from_config

    cfg = dict(cfg)
    if img_size:
        cfg["img_size"] = int(img_size)
    try:
        return vit_from_config(cfg)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"cannot build the backbone {cfg.get('arch', '?')} from its stored config "
                              f"({e})") from None


def read_checkpoint(path: Path, verify: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """``load_weights`` with ``argparse.Namespace`` (CroCo ``pretrain.py``'s ``args``) allowed for this load only;
    any other class in a pickle is still refused."""
    with torch.serialization.safe_globals([argparse.Namespace]):
        return load_weights(path, verify=verify)


def state_of(ckpt: Mapping[str, Any]) -> Mapping[str, Any]:
    """The state dict inside a checkpoint (``model`` / ``state_dict`` entry, or the checkpoint itself)."""
    for key in ("model", "state_dict"):
        if isinstance(ckpt.get(key), Mapping):
            return ckpt[key]
    return ckpt


def backbone_from_timm(spec: str, img_size: int | None = None, strict: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """``timm:NAME.TAG`` -> (backbone with learned positions, info). Classifier heads are allowed-unexpected."""
    model, tag = parse_timm(spec)
    cfg = timm_config(model)
    norm = timm_input_norm(timm_pretrained_cfg(model, tag))
    path = find_timm_weights(model, tag)
    sd, _ = read_checkpoint(path, verify=False)
    sd = state_of(sd)
    has_cls = "cls_token" in sd
    bb = build_backbone({**cfg, "class_token": has_cls}, img_size)
    report = load_into(bb, adapt_timm(sd, bb), source=f"timm:{model}.{tag} ({path})",
                       allowed_prefixes=TIMM_HEAD_PREFIXES, strict=strict)
    return bb, {"weights": str(path), "weights_sha256": sha256_file(path), "load": report.as_dict(),
                "method": f"timm.{tag}", "backbone": bb.config_dict(), "input_norm": norm}


def load_croco(path: Path, sd: Mapping[str, Any], kwargs: Mapping[str, Any], img_size: int | None,
                strict: bool) -> tuple[nn.Module, LoadReport]:
    """A CroCo-layout state dict + CroCoNet kwargs -> (our backbone, load report); see module docstring."""
    sd, renamed = remap_croco(sd)
    bb = build_backbone(croco_config(kwargs), img_size)
    check_croco_pos(sd, bb)
    sd.pop("enc_pos_embed", None)
    report = load_into(bb, sd, source=f"CroCo checkpoint {path}", allowed_prefixes=CROCO_DECODER_PREFIXES,
                       strict=strict)
    report.renamed = renamed
    return bb, report


def backbone_from_file(path: str | Path, img_size: int | None = None, strict: bool = True,
                       ) -> tuple[nn.Module, dict[str, Any]]:
    """Our safetensors checkpoint (sidecar ``config.backbone``), a CroCo v2 release ``.pth`` or a CroCo
    ``pretrain.py`` checkpoint -> (backbone, info)."""
    path = Path(path)
    ckpt, meta = read_checkpoint(path)
    info: dict[str, Any] = {"weights": str(path), "weights_sha256": meta.get("sha256", ""),
                            "input_norm": dict(NORMS["imagenet"])}
    if "croco_kwargs" in ckpt or is_croco(state_of(ckpt)):
        kwargs = croco_kwargs_of(ckpt)
        bb, report = load_croco(path, state_of(ckpt), kwargs, img_size, strict)
        pretrain: dict[str, Any] = {"croco_kwargs": _plain(kwargs)}
        if "args" in ckpt:
            pretrain.update(args=_plain(ckpt["args"]), epoch=_plain(ckpt.get("epoch")))
        return bb, {**info, "method": "croco", "pretrain": pretrain, "load": report.as_dict(),
                    "backbone": bb.config_dict()}
    config = meta.get("config") or {}
    if "backbone" not in config:
        raise CheckpointError(f"{path} has no backbone config in its sidecar {path.with_suffix('.json').name}: "
                              "not a cpcbench checkpoint; name its architecture as ARCH:FILE (e.g. "
                              f"vit_small:{path}); CroCo .pth files and timm:NAME.TAG specs are also accepted")
    bb = build_backbone(config["backbone"], img_size)
    report = load_into(bb, strip_objective(ckpt), source=str(path), allowed_prefixes=OBJECTIVE_PREFIXES,
                       strict=strict)
    return bb, {**info, "method": config.get("method", ""), "pretrain": config, "load": report.as_dict(),
                "backbone": bb.config_dict()}


# --- pixels in the backbone's normalisation ---------------------------------------------------------------------
class Renormalize(nn.Module):
    """Images normalised with ImageNet mean/std (what every dataset here yields) -> the normalisation the weights
    expect (``info["input_norm"]``): ``x * std_in / std + (mean_in - mean) / std`` per channel. ``[B,3,H,W]``."""

    def __init__(self, input_norm: Mapping[str, Any] | None) -> None:
        super().__init__()
        norm = input_norm or NORMS["imagenet"]
        mean, std = (torch.tensor([float(v) for v in norm[k]]) for k in ("mean", "std"))
        m0, s0 = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        if mean.shape != (3,) or std.shape != (3,) or not bool((std > 0).all()):
            raise CheckpointError(f"input normalisation {dict(norm)} is not three means and three positive stds")
        self.identity = bool(torch.allclose(mean, m0) and torch.allclose(std, s0))
        self.register_buffer("scale", (s0 / std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", ((m0 - mean) / std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.identity else x * self.scale + self.shift
