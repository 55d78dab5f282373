"""Foreign weights: CroCo checkpoints (the v2 release and ``pretrain.py``'s training checkpoints) against a reference
CroCo encoder written from the paper's formulas, plain weights files with an explicit architecture, refused
pickles, timm tags (unknown tags, the weights' own pixel normalisation) and one weights file for every seed of an
eval."""

from __future__ import annotations

import argparse
import os
import pathlib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from test_backbones import _mae_sincos_reference
from typer.testing import CliRunner

import pretraining  # noqa: F401  (registration)
from core.checkpoints import CheckpointError, save_weights, sha256_file
from core.errors import CpcbenchError
from harness.backbones import resolve_backbone
from harness.cli import app
from humans.frames import IMAGENET_MEAN, IMAGENET_STD
from pretraining.vit import build_vit

DIM, DEPTH, HEADS, IMG = 192, 12, 3, 64  # vit_tiny's encoder at 64 px (a 4 x 4 grid)


# --- a CroCo encoder from the formulas ----------------------------------------------------------------------
def _croco_state(pos: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in naver/croco's CroCoNet key layout (encoder + a small decoder)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int, std: float = 0.05, mean: float = 0.0) -> torch.Tensor:
        return mean + std * torch.randn(*shape, generator=g)

    sd = {"patch_embed.proj.weight": r(DIM, 3, 16, 16), "patch_embed.proj.bias": r(DIM),
          "enc_norm.weight": r(DIM, mean=1.0), "enc_norm.bias": r(DIM)}
    for i in range(DEPTH):
        b = f"enc_blocks.{i}."
        sd.update({b + "norm1.weight": r(DIM, mean=1.0), b + "norm1.bias": r(DIM),
                   b + "attn.qkv.weight": r(3 * DIM, DIM), b + "attn.qkv.bias": r(3 * DIM),
                   b + "attn.proj.weight": r(DIM, DIM), b + "attn.proj.bias": r(DIM),
                   b + "norm2.weight": r(DIM, mean=1.0), b + "norm2.bias": r(DIM),
                   b + "mlp.fc1.weight": r(4 * DIM, DIM), b + "mlp.fc1.bias": r(4 * DIM),
                   b + "mlp.fc2.weight": r(DIM, 4 * DIM), b + "mlp.fc2.bias": r(DIM)})
    if pos == "cosine":  # CroCo stores its fixed code as a buffer; RoPE models have none
        sd["enc_pos_embed"] = torch.from_numpy(_mae_sincos_reference(DIM, IMG // 16, IMG // 16)).float()
        sd["dec_pos_embed"] = torch.zeros((IMG // 16) ** 2, 32)
    sd.update({"decoder_embed.weight": r(32, DIM), "decoder_embed.bias": r(32), "mask_token": r(1, 1, 32),
               "dec_blocks.0.attn.qkv.weight": r(96, 32), "dec_norm.weight": r(32, mean=1.0),
               "prediction_head.weight": r(768, 32), "prediction_head.bias": r(768)})
    return sd


def _rope_1d(t: torch.Tensor, pos: torch.Tensor, base: float) -> torch.Tensor:
    """RoPE (Su et al.) on the last dim, rotate-half form: pairs (i, i + D/2), angle pos * base^(-2i/D)."""
    d = t.shape[-1]
    inv = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    ang = pos[:, None].double() * inv[None]
    cos, sin = torch.cat([ang.cos(), ang.cos()], -1), torch.cat([ang.sin(), ang.sin()], -1)
    rot = torch.cat([-t[..., d // 2:], t[..., : d // 2]], -1)
    return t * cos + rot * sin


def croco_reference(sd: dict[str, torch.Tensor], img: torch.Tensor, rope_base: float | None) -> torch.Tensor:
    """CroCo's encoder (Weinzaepfel et al. 2022/2023) in float64 from its own state dict: 16 x 16 patch projection,
    + the fixed cosine code (or 2D RoPE on q and k: first half of each head by the row, second by the column),
    pre-norm blocks x + MHSA(LN(x)), x + MLP(LN(x)) with exact GELU, final LayerNorm; eps 1e-6, no class token."""
    w = {k: v.double() for k, v in sd.items()}
    x = F.conv2d(img.double(), w["patch_embed.proj.weight"], w["patch_embed.proj.bias"], stride=16)
    b, c, gh, gw = x.shape
    x = x.flatten(2).transpose(1, 2)
    if "enc_pos_embed" in w:
        x = x + w["enc_pos_embed"]
    rows = torch.arange(gh).repeat_interleave(gw)
    cols = torch.arange(gw).repeat(gh)
    hd = c // HEADS

    def ln(t: torch.Tensor, p: str) -> torch.Tensor:
        return F.layer_norm(t, (c,), w[p + ".weight"], w[p + ".bias"], eps=1e-6)

    for i in range(DEPTH):
        p = f"enc_blocks.{i}."
        qkv = F.linear(ln(x, p + "norm1"), w[p + "attn.qkv.weight"], w[p + "attn.qkv.bias"])
        q, k, v = qkv.reshape(b, -1, 3, HEADS, hd).permute(2, 0, 3, 1, 4)
        if rope_base is not None:
            q, k = (torch.cat([_rope_1d(t[..., : hd // 2], rows, rope_base),
                               _rope_1d(t[..., hd // 2:], cols, rope_base)], -1) for t in (q, k))
        a = torch.softmax(q @ k.transpose(-1, -2) / hd ** 0.5, -1) @ v
        x = x + F.linear(a.transpose(1, 2).reshape(b, -1, c), w[p + "attn.proj.weight"], w[p + "attn.proj.bias"])
        h = F.gelu(F.linear(ln(x, p + "norm2"), w[p + "mlp.fc1.weight"], w[p + "mlp.fc1.bias"]))
        x = x + F.linear(h, w[p + "mlp.fc2.weight"], w[p + "mlp.fc2.bias"])
    return ln(x, "enc_norm")


def _assert_matches_reference(bb: torch.nn.Module, sd: dict[str, torch.Tensor], pos: str) -> None:
    x = torch.randn(2, 3, IMG, IMG, generator=torch.Generator().manual_seed(1))
    ref = croco_reference(sd, x, None if pos == "cosine" else 100.0)
    with torch.no_grad():
        ours = bb.eval().forward_features(x).double()
    assert ours.shape == ref.shape == (2, (IMG // 16) ** 2, DIM)
    assert (ours - ref).abs().max().item() < 1e-5


def _croco_model_string(pos: str) -> str:
    return (f"CroCoNet(img_size={IMG}, enc_embed_dim={DIM}, enc_depth={DEPTH}, enc_num_heads={HEADS}, "
            f"dec_embed_dim=32, dec_depth=1, dec_num_heads=2, pos_embed='{pos}')")


def _pretrain_checkpoint(sd: dict[str, torch.Tensor], pos: str, **args_extra: object) -> dict:
    """What naver/croco ``pretrain.py`` (misc.save_model) writes: model, optimizer, scaler, args, epoch."""
    params = [torch.nn.Parameter(torch.zeros(4)), torch.nn.Parameter(torch.zeros(2, 2))]
    opt = torch.optim.AdamW(params, lr=1.5e-4, betas=(0.9, 0.95))
    sum(p.sum() for p in params).backward()
    opt.step()
    args = argparse.Namespace(model=_croco_model_string(pos), batch_size=64, epochs=400, blr=1.5e-4,
                              weight_decay=0.05, output_dir="./output/", norm_pix_loss=True, seed=0, **args_extra)
    scaler = {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
              "_growth_tracker": 17}
    return {"model": sd, "optimizer": opt.state_dict(), "scaler": scaler, "args": args, "epoch": 41}


@pytest.mark.parametrize("pos", ["cosine", "RoPE100"])
def test_croco_release_checkpoint_matches_reference(tmp_path, pos: str) -> None:
    sd = _croco_state(pos)
    kwargs = {"img_size": IMG, "enc_embed_dim": DIM, "enc_depth": DEPTH, "enc_num_heads": HEADS, "pos_embed": pos}
    torch.save({"model": sd, "croco_kwargs": kwargs}, tmp_path / "CroCo_V2.pth")
    bb, info = resolve_backbone(str(tmp_path / "CroCo_V2.pth"))
    assert info["method"] == "croco" and info["arch"] == "vit_tiny" and info["load"]["missing"] == []
    assert info["input_norm"] == {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    _assert_matches_reference(bb, sd, pos)


@pytest.mark.parametrize("pos", ["cosine", "RoPE100"])
def test_croco_pretrain_checkpoint_loads_its_architecture(tmp_path, pos: str) -> None:
    """``pretrain.py`` checkpoints: the Namespace is allowed, the architecture read from ``args.model``."""
    sd = _croco_state(pos)
    path = tmp_path / "checkpoint-last.pth"
    torch.save(_pretrain_checkpoint(sd, pos), path)
    bb, info = resolve_backbone(str(path))
    assert info["method"] == "croco" and info["arch"] == "vit_tiny" and bb.embed_dim == DIM
    assert bb.pos_embed_kind == ("sincos" if pos == "cosine" else "rope") and bb.num_prefix_tokens == 0
    assert info["load"]["missing"] == [] and info["load"]["unexpected"] == []
    assert info["pretrain"]["epoch"] == 41 and info["pretrain"]["args"]["model"] == _croco_model_string(pos)
    assert info["pretrain"]["croco_kwargs"]["enc_embed_dim"] == DIM
    assert info["weights_sha256"] == sha256_file(path)
    _assert_matches_reference(bb, sd, pos)


def test_croco_model_string_is_parsed_not_run() -> None:
    from pretraining.load import parse_croco_model

    assert parse_croco_model("CroCoNet(enc_embed_dim=384, enc_depth=12, enc_num_heads=6, dec_embed_dim=256, "
                             "pos_embed='RoPE100')") == {"enc_embed_dim": 384, "enc_depth": 12, "enc_num_heads": 6,
                                                         "dec_embed_dim": 256, "pos_embed": "RoPE100"}
    assert parse_croco_model("CroCoNet()") == {}
    assert parse_croco_model("CroCoNet(224, 16, 0.9, 384)")["enc_embed_dim"] == 384
    for bad in ("__import__('os').system('touch x')", "CroCoNet(norm_layer=partial(nn.LayerNorm, eps=1e-6))",
                "CroCoNet(**kw)", "CroCoDownstreamBinocular(enc_embed_dim=384)", "CroCoNet(enc_embed_dim=3*128)"):
        with pytest.raises(CheckpointError, match="args.model"):
            parse_croco_model(bad)


class Carrier:
    """Anything beyond argparse.Namespace + tensors/containers."""

    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.parametrize(("extra", "name"), [({"output_dir_path": pathlib.PurePosixPath("out")}, "PurePosixPath"),
                                              ({"hook": Carrier()}, "system")], ids=["path-in-args", "code"])
def test_pickle_beyond_namespace_is_refused(tmp_path, extra, name: str) -> None:
    path = tmp_path / "checkpoint-last.pth"
    torch.save(_pretrain_checkpoint(_croco_state("RoPE100"), "RoPE100", **extra), path)
    with pytest.raises(CheckpointError, match=f"refusing .*carries .*{name}") as e:
        resolve_backbone(str(path))
    assert "\n" not in str(e.value).strip()
    # the allowance is scoped to our load: torch's global list is untouched afterwards
    assert argparse.Namespace not in torch.serialization.get_safe_globals()


# --- plain weights + explicit architecture -------------------------------------------------------------------
@pytest.mark.parametrize("pos", ["cosine", "RoPE100"])
def test_plain_safetensors_with_arch_croco_layout(tmp_path, pos: str) -> None:
    sd = _croco_state(pos)
    path = tmp_path / "croco_encoder.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    bb, info = resolve_backbone(f"vit_tiny,img={IMG}:{path}")
    assert info["arch"] == "vit_tiny" and info["weights"] == str(path) and len(info["weights_sha256"]) == 64
    assert bb.pos_embed_kind == ("sincos" if pos == "cosine" else "rope")
    _assert_matches_reference(bb, sd, pos)


def test_plain_safetensors_with_arch_timm_layout(tmp_path) -> None:
    import timm

    ref = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=IMG).eval()
    torch.nn.init.normal_(ref.pos_embed, std=0.5)
    path = tmp_path / "vit_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    bb, info = resolve_backbone(f"vit_tiny,norm=inception:{path}")
    assert info["img_size"] == IMG and bb.pos_embed_kind == "learned" and bb.num_prefix_tokens == 1
    assert info["load"]["allowed_unexpected"] == ["head.bias", "head.weight"]
    assert info["input_norm"] == {"mean": [0.5] * 3, "std": [0.5] * 3}
    x = torch.randn(1, 3, IMG, IMG)
    with torch.no_grad():
        assert torch.allclose(bb.eval().forward_features(x), ref.forward_features(x), atol=1e-5)
    # ours without a sidecar (RoPE stores no position tensor): the code must be named
    rope = tmp_path / "rope.safetensors"
    save_file(build_vit("vit_tiny", img_size=IMG).state_dict(), str(rope))
    with pytest.raises(CpcbenchError, match="pos=rope"):
        resolve_backbone(f"vit_tiny:{rope}")
    assert resolve_backbone(f"vit_tiny,pos=rope:{rope}")[0].pos_embed_kind == "rope"
    for bad, msg in ((f"vit_tiny,depth=3:{rope}", "not one of pos="), (f"vit_tiny,norm=x:{rope}", "norm=x"),
                     (f"vit_small:{path}", "another architecture"), ("vit_tiny:", "names no weights file"),
                     (f"vit_tiny:{tmp_path / 'none.safetensors'}", "checkpoint not found")):
        with pytest.raises(CpcbenchError, match=msg):
            resolve_backbone(bad)


# --- timm tags ----------------------------------------------------------------------------------------------
def test_unknown_timm_tag_names_close_matches(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CPCBENCH_WEIGHTS", str(tmp_path))
    with pytest.raises(CpcbenchError, match=r"no pretrained tag 'augreg_in21'.*timm:vit_small_patch16_224\."
                                            r"augreg_in21k"):
        resolve_backbone("timm:vit_small_patch16_224.augreg_in21")
    r = CliRunner().invoke(app, ["eval", "--backbone", "timm:vit_small_patch16_224.bogus", "--task", "synth-body-2d",
                                 "--data-root", str(tmp_path), "--device", "cpu"])
    assert r.exit_code == 2, r.output
    err = r.stderr.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "bogus" in err and "Traceback" not in err


def _fake_timm_weights(tmp_path: Path, name: str) -> Path:
    import timm

    ref = timm.create_model(name.split(".")[0], pretrained=False)
    path = tmp_path / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    return path


def test_timm_weights_bring_their_normalisation(tmp_path, monkeypatch) -> None:
    """augreg weights expect mean/std 0.5 (timm's pretrained_cfg), not ImageNet's; the cfg's values are used."""
    import timm

    monkeypatch.setenv("CPCBENCH_WEIGHTS", str(tmp_path))
    _fake_timm_weights(tmp_path, "vit_tiny_patch16_224.augreg_in21k")
    _, info = resolve_backbone("timm:vit_tiny_patch16_224.augreg_in21k")
    assert info["input_norm"] == {"mean": [0.5] * 3, "std": [0.5] * 3}
    real = timm.models.get_pretrained_cfg

    def fake(name: str, *a, **k):
        cfg = real(name, *a, **k)
        return cfg.__class__(**{**cfg.to_dict(), "mean": (0.1, 0.2, 0.3), "std": (0.4, 0.5, 0.6)})

    monkeypatch.setattr(timm.models, "get_pretrained_cfg", fake)
    _, info = resolve_backbone("timm:vit_tiny_patch16_224.augreg_in21k")
    assert info["input_norm"] == {"mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6]}


def test_task_model_feeds_the_backbone_its_normalisation() -> None:
    from harness.evaluate import TaskModel

    seen = {}

    class Probe(torch.nn.Module):
        def forward_features(self, x: torch.Tensor) -> torch.Tensor:
            seen["x"] = x
            return x

    raw = torch.rand(2, 3, 4, 4)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    image = (raw - mean) / std  # what every dataset yields
    half = {"mean": [0.5] * 3, "std": [0.5] * 3}
    TaskModel(Probe(), torch.nn.Identity(), None, frozen=True, input_norm=half).predict(image)
    assert torch.allclose(seen["x"], (raw - 0.5) / 0.5, atol=1e-5)
    TaskModel(Probe(), torch.nn.Identity(), None, frozen=True,
              input_norm={"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}).predict(image)
    assert torch.equal(seen["x"], image)


# --- one weights file for every seed ------------------------------------------------------------------------
def _export(runs: Path, name: str, seed: int, mtime: float) -> Path:
    torch.manual_seed(seed)
    bb = build_vit("vit_tiny", img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)
    p = runs / "pretrain" / name / "backbone.safetensors"
    p.parent.mkdir(parents=True, exist_ok=True)
    save_weights(p, bb.state_dict(), {"method": "cpc", "domain": "body", "backbone": bb.config_dict()})
    os.utime(p, (mtime, mtime))
    return p


@pytest.fixture(scope="module")
def body_frames(tmp_path_factory) -> Path:
    from synth_frames import make_frames

    return make_frames(tmp_path_factory.mktemp("pin-frames") / "body", "body", size=32, seqs=4, frames_per_seq=2)


def _eval_cfg(frames: Path):
    from harness.evaluate import EvalConfig

    return EvalConfig(backbone="cpc", task="synth-body-2d", seeds=2, limit=3, steps=1, batch_size=2,
                      data_root=str(frames), device="cpu")


def test_every_seed_uses_the_weights_resolved_once(tmp_path, monkeypatch, body_frames) -> None:
    import harness.evaluate as ev

    runs = tmp_path / "runs"
    monkeypatch.setenv("CPCBENCH_RUNS", str(runs))
    first = _export(runs, "body-cpc-vit_tiny-a", 0, 1000)
    real, used = ev._resolve_backbone, []

    def resolve(spec, domain="body", img_size=None):
        bb, info = real(spec, domain, img_size)
        used.append(info["weights"])
        if len(used) == 1:  # a pretraining run finishes while the eval runs
            _export(runs, "body-cpc-vit_tiny-b", 1, 2000)
        return bb, info

    monkeypatch.setattr(ev, "_resolve_backbone", resolve)
    rec = ev.evaluate(_eval_cfg(body_frames), tmp_path / "results", runs)
    assert used == [str(first)] * 3  # the probe and both seeds
    from harness.results import portable_path

    assert rec["backbone"]["weights"] == portable_path(str(first))
    assert rec["backbone"]["weights"] == "$CPCBENCH_RUNS/pretrain/body-cpc-vit_tiny-a/backbone.safetensors"
    assert rec["backbone"]["weights_sha256"] == sha256_file(first)
    assert rec["backbone"]["name"] == "cpc" and rec["method"] == "cpc"
    assert rec["backbone"]["input_norm"] == {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}


def test_weights_replaced_between_seeds_is_an_error(tmp_path, monkeypatch, body_frames) -> None:
    import harness.evaluate as ev

    runs = tmp_path / "runs"
    monkeypatch.setenv("CPCBENCH_RUNS", str(runs))
    _export(runs, "body-cpc-vit_tiny-a", 0, 1000)
    real, calls = ev._resolve_backbone, []

    def resolve(spec, domain="body", img_size=None):
        out = real(spec, domain, img_size)
        calls.append(spec)
        if len(calls) == 2:  # after seed 0 built: the same file is overwritten with other weights
            _export(runs, "body-cpc-vit_tiny-a", 1, 1000)
        return out

    monkeypatch.setattr(ev, "_resolve_backbone", resolve)
    with pytest.raises(CpcbenchError, match="changed during the run"):
        ev.evaluate(_eval_cfg(body_frames), tmp_path / "results", runs)
