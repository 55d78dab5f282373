"""Backbones: the contract, position codes against reference formulas, timm parity, CroCo remapping,
checkpoint loading reports and ``resolve_backbone``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import pretraining  # noqa: F401  (registration)
from core.checkpoints import CheckpointError, save_weights
from core.errors import CpcbenchError
from harness.backbones import resolve_backbone
from harness.registries import BACKBONES
from pretraining.layers import RoPE2D, apply_rope, sincos_2d
from pretraining.load import load_into
from pretraining.vit import ARCHS, build_vit

TINY = {"embed_dim": 48, "depth": 2, "num_heads": 3, "img_size": 32}


@pytest.mark.parametrize("name", ["vit_tiny", "vit_small", "vit_base", "vit_large"])
def test_registered_sizes_match_timm(name: str) -> None:
    """Each size has timm's parameter names and count (built on the meta device: no memory, no time)."""
    import timm

    with torch.device("meta"):
        ours = BACKBONES.get(name)(img_size=224, pos_embed="learned")
        ref = timm.create_model(f"{name}_patch16_224", pretrained=False, num_classes=0)
    ref_keys = {k for k in ref.state_dict()}
    assert set(ours.state_dict()) == ref_keys
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    assert ours.depth == ARCHS[name]["depth"] == len(ours.blocks)


def test_one_table_of_architectures() -> None:
    """``ARCHS`` is the one list of sizes: the registry, ``cpcbench ls backbones``, ``build_vit``, the ARCH:FILE
    spec and ``resolve_backbone`` all read it."""
    from harness.commands.ls import list_kind
    from pretraining.arch_file import parse_arch_spec

    assert BACKBONES.names() == sorted(ARCHS) == [row["name"] for row in list_kind("backbones")]
    for name, dims in ARCHS.items():
        variant = BACKBONES.get(name)
        assert variant.arch == name and str(dims["embed_dim"]) in variant.__doc__
        with torch.device("meta"):
            bb = variant(img_size=32)
        assert (bb.arch, bb.embed_dim, bb.depth, bb.num_heads) == (name, dims["embed_dim"], dims["depth"],
                                                                  dims["num_heads"])
        assert parse_arch_spec(f"{name}:w.safetensors") == (name, {}, "w.safetensors")
        with pytest.raises(CpcbenchError, match="is an architecture, not a backbone spec"):
            resolve_backbone(name)
    with pytest.raises(ValueError, match="unknown ViT size"):
        build_vit("vit_huge")


@pytest.mark.parametrize("pos_embed", ["rope", "sincos", "learned"])
@pytest.mark.parametrize("class_token", [True, False])
def test_backbone_contract(pos_embed: str, class_token: bool) -> None:
    bb = build_vit("vit_tiny", **TINY, pos_embed=pos_embed, class_token=class_token).eval()
    p = bb.num_prefix_tokens
    assert p == int(class_token)
    assert (bb.embed_dim, bb.patch_size, bb.img_size, bb.grid_size, bb.depth) == (48, 16, 32, (2, 2), 2)
    assert isinstance(bb.blocks, torch.nn.ModuleList)
    x = torch.randn(2, 3, 32, 32)
    assert bb.forward_features(x).shape == (2, p + 4, 48)
    # any size that is a multiple of the patch, not only the built one (learned positions are resampled)
    assert bb.forward_features(torch.randn(1, 3, 48, 64)).shape == (1, p + 12, 48)
    inter = bb.forward_intermediates(x, 2)
    assert len(inter) == 2 and inter[-1].shape == (2, p + 4, 48)
    assert torch.allclose(bb.norm(inter[-1]), bb.forward_features(x), atol=1e-5)
    with pytest.raises(ValueError, match="multiple of the patch"):
        bb.forward_features(torch.randn(1, 3, 40, 32))


def test_masked_encoding_keeps_visible_tokens_only() -> None:
    bb = build_vit("vit_tiny", **{**TINY, "img_size": 64}, pos_embed="sincos").eval()
    x = torch.randn(2, 3, 64, 64)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0, :12] = True
    mask[1, 4:] = True
    out = bb.forward_encoder(x, mask)
    assert out.shape == (2, 1 + 4, 48)
    # hiding nothing equals the plain forward
    assert torch.allclose(bb.forward_encoder(x, torch.zeros(2, 16, dtype=torch.bool)), bb.forward_features(x),
                          atol=1e-5)


def _mae_sincos_reference(dim: int, gh: int, gw: int) -> np.ndarray:
    """MAE's published layout, written independently: first half encodes the column, second half the row."""
    def one_d(d: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    rows, cols = np.meshgrid(np.arange(gh, dtype=np.float64), np.arange(gw, dtype=np.float64), indexing="ij")
    return np.concatenate([one_d(dim // 2, cols), one_d(dim // 2, rows)], axis=1)


def test_sincos_matches_reference_layout() -> None:
    ours = sincos_2d(64, 3, 5).numpy()
    assert np.allclose(ours, _mae_sincos_reference(64, 3, 5), atol=1e-6)


def _rope_reference(t: np.ndarray, y: float, x: float, base: float) -> np.ndarray:
    """2D RoPE as complex rotations: half 1 by the row, half 2 by the column; pair (i, i + h/2) in each half."""
    d = t.shape[-1]
    h = d // 2
    out = np.empty_like(t)
    for half, pos in ((0, y), (1, x)):
        seg = t[half * h:(half + 1) * h]
        z = seg[: h // 2] + 1j * seg[h // 2:]
        theta = pos * base ** (-np.arange(0, h, 2) / h)
        r = z * np.exp(1j * theta)
        out[half * h: half * h + h // 2], out[half * h + h // 2:(half + 1) * h] = r.real, r.imag
    return out


def test_rope_matches_reference_and_is_relative() -> None:
    rope = RoPE2D(100.0)
    d = 16
    g = torch.Generator().manual_seed(0)
    t = torch.randn(1, 1, 3, d, generator=g)
    pos = torch.tensor([[[0.0, 0.0], [2.0, 5.0], [7.0, 1.0]]])
    rot = apply_rope(t, rope.cos_sin(pos, d))
    for n in range(3):
        ref = _rope_reference(t[0, 0, n].double().numpy(), float(pos[0, n, 0]), float(pos[0, n, 1]), 100.0)
        assert np.allclose(rot[0, 0, n].double().numpy(), ref, atol=1e-5)
    # q.k depends on the relative position only
    q, k = torch.randn(d, generator=g), torch.randn(d, generator=g)

    def score(pq: list[float], pk: list[float]) -> float:
        cq = rope.cos_sin(torch.tensor([[pq]]), d)
        ck = rope.cos_sin(torch.tensor([[pk]]), d)
        return float((apply_rope(q.view(1, 1, 1, d), cq) * apply_rope(k.view(1, 1, 1, d), ck)).sum())

    assert math.isclose(score([1, 2], [3, 7]), score([4, 0], [6, 5]), rel_tol=1e-4, abs_tol=1e-5)
    assert not math.isclose(score([1, 2], [3, 7]), score([1, 2], [3, 8]), rel_tol=1e-3)
    # prefix tokens are not rotated
    cos, sin = rope.cos_sin(pos, d, num_prefix=1)
    assert torch.equal(cos[0, 0, 0], torch.ones(d)) and torch.equal(sin[0, 0, 0], torch.zeros(d))


# --- loading --------------------------------------------------------------------------------------------
def test_load_reports_and_refuses_surprises() -> None:
    bb = build_vit("vit_tiny", **TINY)
    sd = dict(bb.state_dict())
    extra = {**sd, "foo.weight": torch.zeros(1), "decoder.x": torch.zeros(1)}
    with pytest.raises(CheckpointError, match="unexpected keys foo.weight"):
        load_into(build_vit("vit_tiny", **TINY), extra, allowed_prefixes=("decoder.",))
    rep = load_into(build_vit("vit_tiny", **TINY), extra, allowed_prefixes=("decoder.",), strict=False)
    assert rep.unexpected == ["foo.weight"] and rep.allowed_unexpected == ["decoder.x"] and rep.missing == []
    partial = {k: v for k, v in sd.items() if k != "norm.weight"}
    with pytest.raises(CheckpointError, match="missing keys norm.weight"):
        load_into(build_vit("vit_tiny", **TINY), partial)
    wrong = {**sd, "blocks.0.mlp.fc1.weight": torch.zeros(3, 3)}
    with pytest.raises(CheckpointError, match="another architecture"):
        load_into(build_vit("vit_tiny", **TINY), wrong, strict=False)


def test_timm_weights_parity(tmp_path, monkeypatch) -> None:
    """A locally saved timm state dict loads with exactly the head as allowed-unexpected and gives timm's
    features bit for bit, also at another resolution (positions resampled as timm does)."""
    import timm
    from safetensors.torch import save_file

    monkeypatch.setenv("CPCBENCH_WEIGHTS", str(tmp_path))
    ref = timm.create_model("vit_tiny_patch16_224", pretrained=False).eval()
    torch.nn.init.normal_(ref.pos_embed, std=0.5)
    path = tmp_path / "vit_tiny_patch16_224.augreg_in21k.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    bb, info = resolve_backbone("timm:vit_tiny_patch16_224.augreg_in21k")
    assert info["load"]["missing"] == [] and info["load"]["unexpected"] == []
    assert info["load"]["allowed_unexpected"] == ["head.bias", "head.weight"]
    assert info["weights"] == str(path) and info["arch"] == "vit_tiny" and len(info["weights_sha256"]) == 64
    x = torch.randn(1, 3, 224, 224)
    assert torch.allclose(bb.eval().forward_features(x), ref.forward_features(x), atol=1e-5)
    bb128, info128 = resolve_backbone("timm:vit_tiny_patch16_224.augreg_in21k", img_size=128)
    ref128 = timm.create_model("vit_tiny_patch16_224", pretrained=True, img_size=128,
                               pretrained_cfg_overlay={"file": str(path)}).eval()
    x = torch.randn(1, 3, 128, 128)
    assert info128["load"]["resampled"] == ["pos_embed"]
    assert torch.allclose(bb128.eval().forward_features(x), ref128.forward_features(x), atol=1e-5)


def test_timm_weights_missing_says_how_to_get_them(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CPCBENCH_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(CpcbenchError, match="timm.create_model"):
        resolve_backbone("timm:vit_small_patch16_224.dino")
    with pytest.raises(CpcbenchError, match="weights tag"):
        resolve_backbone("timm:vit_small_patch16_224")
    with pytest.raises(CpcbenchError, match="plain ViT/16"):
        resolve_backbone("timm:resnet50.a1_in1k")


def _croco_fixture(bb: torch.nn.Module, pos: str) -> dict:
    """A state dict in naver/croco's CroCoNet key layout, built from our encoder plus a fake decoder."""
    sd = {}
    for k, v in bb.state_dict().items():
        if k.startswith("blocks."):
            sd["enc_blocks." + k[len("blocks."):]] = v.clone()
        elif k.startswith("norm."):
            sd["enc_norm." + k[len("norm."):]] = v.clone()
        else:
            sd[k] = v.clone()
    if pos == "cosine":
        sd["enc_pos_embed"] = torch.from_numpy(_mae_sincos_reference(bb.embed_dim, *bb.grid_size)).float()
        sd["dec_pos_embed"] = torch.zeros(bb.grid_size[0] * bb.grid_size[1], 32)
    sd.update({"decoder_embed.weight": torch.zeros(32, bb.embed_dim), "decoder_embed.bias": torch.zeros(32),
               "mask_token": torch.zeros(1, 1, 32), "dec_blocks.0.attn.qkv.weight": torch.zeros(96, 32),
               "dec_blocks.0.cross_attn.projq.weight": torch.zeros(32, 32), "dec_norm.weight": torch.ones(32),
               "prediction_head.weight": torch.zeros(768, 32), "prediction_head.bias": torch.zeros(768)})
    return sd


@pytest.mark.parametrize("pos", ["cosine", "RoPE100"])
def test_croco_checkpoint_remapping(tmp_path, pos: str) -> None:
    kw = {"embed_dim": 192, "depth": 12, "num_heads": 3, "img_size": 64}
    bb = build_vit("vit_tiny", **{**kw, "img_size": 64}, class_token=False,
                   pos_embed="sincos" if pos == "cosine" else "rope").eval()
    sd = _croco_fixture(bb, pos)
    croco_kwargs = {"img_size": 64, "patch_size": 16, "enc_embed_dim": 192, "enc_depth": 12, "enc_num_heads": 3,
                    "dec_embed_dim": 32, "dec_depth": 1, "dec_num_heads": 2, "pos_embed": pos}
    path = tmp_path / "CroCo_fixture.pth"
    torch.save({"model": sd, "croco_kwargs": croco_kwargs}, path)
    loaded, info = resolve_backbone(str(path))
    assert info["method"] == "croco" and info["arch"] == "vit_tiny"
    assert loaded.num_prefix_tokens == 0 and loaded.pos_embed_kind == bb.pos_embed_kind
    rep = info["load"]
    assert rep["missing"] == [] and rep["unexpected"] == []
    assert rep["renamed"] == 12 * 12 + 2  # 12 tensors per block, enc_norm weight + bias
    assert set(rep["allowed_unexpected"]) == {k for k in sd if k.startswith(
        ("decoder_embed", "mask_token", "dec_", "prediction_head"))}
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(loaded.eval().forward_features(x), bb.forward_features(x), atol=1e-5)
    if pos == "cosine":  # a foreign position layout is refused, not silently loaded
        sd["enc_pos_embed"] = sd["enc_pos_embed"].flip(1)
        torch.save({"model": sd, "croco_kwargs": croco_kwargs}, path)
        with pytest.raises(CheckpointError, match="enc_pos_embed differs"):
            resolve_backbone(str(path))


# --- resolve_backbone ---------------------------------------------------------------------------------------
def test_resolve_scratch_and_errors(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CPCBENCH_RUNS", str(tmp_path))
    bb, info = resolve_backbone("scratch", img_size=64)
    assert info["name"] == "scratch" and info["method"] == "scratch" and info["weights"] == ""
    assert bb.img_size == 64 and info["arch"] == "vit_tiny" and info["pretrain"] == {}
    with pytest.raises(CpcbenchError, match=r"cpcbench pretrain hand --method mae"):
        resolve_backbone("mae", "hand")
    with pytest.raises(CpcbenchError, match="unknown backbone 'nonsense'"):
        resolve_backbone("nonsense")
    with pytest.raises(CpcbenchError, match="architecture, not a backbone spec"):
        resolve_backbone("vit_base")
    with pytest.raises(CpcbenchError, match="checkpoint not found"):
        resolve_backbone(str(tmp_path / "missing.safetensors"))
    foreign = tmp_path / "plain.safetensors"
    save_weights(foreign, build_vit("vit_tiny", **TINY).state_dict())
    with pytest.raises(CpcbenchError, match="no backbone config"):
        resolve_backbone(str(foreign))


def test_resolve_finds_newest_local_export(tmp_path, monkeypatch) -> None:
    import os

    monkeypatch.setenv("CPCBENCH_RUNS", str(tmp_path))
    paths = []
    for i, name in enumerate(["body-cpc-vit_tiny-a", "body-cpc-vit_tiny-b", "hand-cpc-vit_tiny-c"]):
        bb = build_vit("vit_tiny", **TINY)
        p = tmp_path / "pretrain" / name / "backbone.safetensors"
        p.parent.mkdir(parents=True)
        save_weights(p, bb.state_dict(), {"method": "cpc", "domain": name.split("-")[0], "backbone": bb.config_dict()})
        os.utime(p, (1000 + i, 1000 + i))
        paths.append((p, bb))
    bb, info = resolve_backbone("cpc", "body")
    assert info["weights"] == str(paths[1][0]) and info["method"] == "cpc" and info["pretrain"]["domain"] == "body"
    assert all(torch.equal(a, b) for a, b in zip(bb.state_dict().values(), paths[1][1].state_dict().values(),
                                                   strict=True))
    _, info = resolve_backbone("cpc", "hand")
    assert info["weights"] == str(paths[2][0])


@pytest.mark.parametrize("patch", [8, 16])
def test_conv_stem_is_a_patch_embedding_with_the_same_contract(tmp_path, patch: int) -> None:
    """stem=conv: the same token grid and parameter names under patch_embed.proj, masked encoding as the linear stem,
    its output independent of the batch (GroupNorm), and it survives an export + rebuild through its config."""
    from pretraining.layers import ConvStem

    bb = build_vit("vit_tiny", **{**TINY, "patch_size": patch, "stem": "conv"}).eval()
    assert isinstance(bb.patch_embed.proj, ConvStem) and bb.grid_size == (32 // patch,) * 2
    x = torch.randn(3, 3, 32, 32)
    tok = bb.forward_features(x)
    assert tok.shape == (3, 1 + (32 // patch) ** 2, 48)
    torch.testing.assert_close(bb.forward_features(x[:1]), tok[:1], atol=1e-5, rtol=1e-5)  # batch-independent
    assert all(k.startswith(("patch_embed.proj.net.", "cls_token", "blocks.", "norm.")) for k in bb.state_dict())
    path = tmp_path / "stem.safetensors"
    save_weights(path, bb.state_dict(), config={"method": "mae", "backbone": bb.config_dict()})
    back, info = resolve_backbone(str(path))
    assert info["backbone"]["stem"] == "conv"
    torch.testing.assert_close(back.eval().forward_features(x), tok)


def test_scratch_spec_takes_the_architecture_options() -> None:
    bb, info = resolve_backbone("scratch,patch=8,stem=conv", img_size=64)
    assert bb.grid_size == (8, 8) and info["backbone"]["stem"] == "conv" and info["backbone"]["patch_size"] == 8
    assert resolve_backbone("scratch", img_size=64)[1]["backbone"]["stem"] == "patch"
    for bad, msg in (("scratch,stem=cnn", "unknown stem 'cnn'"), ("scratch,foo=1", "is not one of arch="),
                     ("scratch,patch=x", "not a valid int"), ("scratch,patch=6,stem=conv", "power-of-two patch")):
        with pytest.raises(CpcbenchError, match=msg):
            resolve_backbone(bad, img_size=48)
    with pytest.raises(ValueError, match="unknown stem"):
        build_vit("vit_tiny", **TINY, stem="cnn")
