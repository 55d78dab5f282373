"""A plain weights file with its architecture named in the spec: ``ARCH[,key=value...]:FILE``.

For weights that carry no architecture of their own (a converted CroCo encoder, a timm state dict saved by hand):
``vit_small:weights.safetensors``, ``vit_base,pos=rope:croco_encoder.safetensors``. Our/timm key layout or CroCo's
(``pretraining.load``); the class token is read from the keys, learned positions and the image size from
``pos_embed``, CroCo's cosine code from ``enc_pos_embed`` (a CroCo encoder without it: RoPE100). Options:
``pos=learned|sincos|rope``, ``img=<px>``, ``rope_base=<float>``, ``norm=imagenet|inception`` (mean/std 0.5).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from core.checkpoints import CheckpointError, sha256_file
from pretraining.load import (
    NORMS,
    OBJECTIVE_PREFIXES,
    TIMM_HEAD_PREFIXES,
    adapt_timm,
    build_backbone,
    is_croco,
    load_croco,
    load_into,
    read_checkpoint,
    state_of,
    strip_objective,
)

ARCH_OPTIONS = ("pos", "img", "rope_base", "norm")


def parse_arch_spec(spec: str) -> tuple[str, dict[str, str], str] | None:
    """``ARCH[,key=value...]:FILE`` -> (arch, options, file); None when ``spec`` does not start with an arch name."""
    from pretraining.vit import ARCHS

    head, sep, file = spec.partition(":")
    arch, *opts = head.split(",")
    if not sep or arch not in ARCHS:
        return None
    if not file:
        raise CheckpointError(f"backbone {spec!r} names no weights file after {head + ':'!r}")
    options: dict[str, str] = {}
    for opt in opts:
        key, eq, value = opt.partition("=")
        if not eq or key not in ARCH_OPTIONS:
            raise CheckpointError(f"backbone {spec!r}: option {opt!r} is not one of "
                                  f"{', '.join(k + '=' for k in ARCH_OPTIONS)}")
        options[key] = value
    return arch, options, file


def backbone_from_arch_file(spec: str, img_size: int | None = None, strict: bool = True,
                            ) -> tuple[nn.Module, dict[str, Any]]:
    """``ARCH[,key=value...]:FILE`` (see module docstring) -> (backbone, info)."""
    from pretraining.vit import ARCHS, POS_EMBEDS

    parsed = parse_arch_spec(spec)
    if parsed is None:
        raise CheckpointError(f"{spec!r} is not ARCH[,key=value...]:FILE with ARCH one of {', '.join(ARCHS)}")
    arch, opts, file = parsed
    path = Path(file)
    ckpt, meta = read_checkpoint(path)
    sd = state_of(ckpt)
    norm_name = opts.get("norm", "imagenet")
    if norm_name not in NORMS:
        raise CheckpointError(f"backbone {spec!r}: norm={norm_name} is not one of {', '.join(NORMS)}")
    try:
        size = int(opts["img"]) if "img" in opts else None
        base = float(opts["rope_base"]) if "rope_base" in opts else None
    except ValueError as e:
        raise CheckpointError(f"backbone {spec!r}: {e}") from None
    pos = opts.get("pos")
    if pos is not None and pos not in POS_EMBEDS:
        raise CheckpointError(f"backbone {spec!r}: pos={pos} is not one of {', '.join(POS_EMBEDS)}")
    info: dict[str, Any] = {"weights": str(path), "weights_sha256": meta.get("sha256") or sha256_file(path),
                            "input_norm": dict(NORMS[norm_name]), "pretrain": {"arch_spec": spec}}
    if is_croco(sd):
        pe = {None: "cosine" if "enc_pos_embed" in sd else f"RoPE{base or 100:g}", "sincos": "cosine",
              "rope": f"RoPE{base or 100:g}"}.get(pos)
        if pe is None:
            raise CheckpointError(f"backbone {spec!r}: CroCo encoders use sincos or rope positions, not {pos}")
        dims = ARCHS[arch]
        kwargs = {"img_size": size or 224, "enc_embed_dim": dims["embed_dim"], "enc_depth": dims["depth"],
                  "enc_num_heads": dims["num_heads"], "pos_embed": pe}
        bb, report = load_croco(path, sd, kwargs, img_size, strict)
        return bb, {**info, "method": "croco", "load": report.as_dict(), "backbone": bb.config_dict()}
    sd = strip_objective(sd)
    learned = "pos_embed" in sd
    if pos is None and not learned:
        raise CheckpointError(f"{path} stores no position embedding: say which code its encoder used, "
                              f"e.g. {arch},pos=rope:{file} (or pos=sincos)")
    pos = pos or "learned"
    if size is None and pos == "learned" and learned:
        n = sd["pos_embed"].shape[1] - int("cls_token" in sd)
        size = 16 * round(max(n, 0) ** 0.5) if round(max(n, 0) ** 0.5) ** 2 == n else None
    cfg = {"arch": arch, **ARCHS[arch], "img_size": size or 224, "pos_embed": pos, "class_token": "cls_token" in sd,
           **({"rope_base": base} if base else {})}
    bb = build_backbone(cfg, img_size)
    report = load_into(bb, adapt_timm(sd, bb), source=f"{path} as {arch}",
                       allowed_prefixes=OBJECTIVE_PREFIXES + TIMM_HEAD_PREFIXES, strict=strict)
    return bb, {**info, "method": path.stem, "load": report.as_dict(),
                "backbone": bb.config_dict()}
