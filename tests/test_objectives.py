"""Pretraining objectives over every registered method with a tiny ViT: finite loss, gradients everywhere
they should flow, masks of the asked ratio, patchify round trip, checkpoint -> backbone round trip."""

from __future__ import annotations

import math

import pytest
import torch

import pretraining  # noqa: F401  (registration)
from core.checkpoints import save_weights
from harness.registries import METHODS
from pretraining.load import backbone_from_file
from pretraining.masking import fill_hidden, human_mask, num_hidden, uniform_mask
from pretraining.patches import EPS, masked_mse_per_sample, normalize_patches, patchify, unpatchify
from pretraining.vit import build_vit

S = 32  # image side: a 2x2 grid of 16 px patches
B = 4


def tiny_backbone(img_size: int = S, **kw) -> torch.nn.Module:
    return build_vit("vit_tiny", embed_dim=48, depth=2, num_heads=3, img_size=img_size, **kw)


def make_batch(data_kind: str, img_size: int = S) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    img = lambda n, s=img_size: torch.randn(n, 3, s, s, generator=g)  # noqa: E731
    if data_kind == "pairs":
        person = torch.zeros(B, img_size, img_size)
        person[:, : img_size // 2] = 1
        return {"img1": img(B), "img2": img(B), "kind": torch.tensor([0, 1, 0, 1]), "person1": person}
    if data_kind == "images":
        return {"image": img(B)}
    if data_kind == "multicrop":
        return {"global": img(B).unsqueeze(1).repeat(1, 2, 1, 1, 1) + 0.1 * torch.randn(B, 2, 3, img_size, img_size),
                "local": torch.randn(B, 3, 3, 16, 16, generator=g)}
    if data_kind == "labelled":
        return {"image": img(B), "label": torch.tensor([0, 1, 2, 1])}
    raise ValueError(data_kind)


def make_objective(name: str, backbone: torch.nn.Module | None = None) -> torch.nn.Module:
    cls = METHODS.get(name)
    return cls(backbone or tiny_backbone(), cls.config_cls(), data_info={"num_classes": 3})


@pytest.mark.parametrize("name", METHODS.names())
def test_every_trainable_parameter_gets_a_gradient(name: str) -> None:
    torch.manual_seed(0)
    model = make_objective(name)
    out = model(make_batch(model.data_kind))
    for k, v in out.items():
        assert v.ndim == 0 and math.isfinite(float(v.detach())), k
    out["loss"].backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert no_grad == []
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    # documented: only DINO's EMA teacher is frozen
    assert all(n.startswith(("teacher_backbone.", "teacher_head.")) for n in frozen)
    assert bool(frozen) == (name == "dino")
    assert model.backbone.embed_dim == 48


@pytest.mark.parametrize("name", METHODS.names())
def test_checkpoint_round_trips_into_a_backbone(tmp_path, name: str) -> None:
    """The whole objective's state loads into a fresh backbone: no missing key, exactly the non-encoder keys
    (decoder, heads, teacher, buffers) reported as allowed-unexpected, identical features."""
    model = make_objective(name).eval()
    path = tmp_path / "model.safetensors"
    save_weights(path, model.state_dict(), {"method": name, "backbone": model.backbone.config_dict()})
    bb, info = backbone_from_file(path)
    rep = info["load"]
    assert rep["missing"] == [] and rep["unexpected"] == []
    assert set(rep["allowed_unexpected"]) == {k for k in model.state_dict() if not k.startswith("backbone.")}
    x = torch.randn(2, 3, S, S)
    assert torch.allclose(bb.eval().forward_features(x), model.backbone.forward_features(x))


# --- masks ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "ratio"), [(4, 0.75), (64, 0.9), (196, 0.9), (196, 0.75), (10, 0.25), (49, 0.5)])
def test_uniform_mask_ratio_is_exact(n: int, ratio: float) -> None:
    mask = uniform_mask(16, n, ratio, generator=torch.Generator().manual_seed(1))
    assert mask.dtype == torch.bool and mask.shape == (16, n)
    assert (mask.sum(1) == round(ratio * n)).all()
    assert len({tuple(r.tolist()) for r in mask}) > 1  # differs between samples


def test_num_hidden_keeps_one_visible_and_rejects_bad_ratios() -> None:
    assert num_hidden(4, 0.9) == 3 and num_hidden(196, 0.9) == 176
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError):
            num_hidden(10, bad)


def test_human_mask_spends_the_mask_on_the_person() -> None:
    person = torch.zeros(8, 64, 64)
    person[:, 16:48, 16:32] = 1  # covers 2 x 1 patches of 16 px... plus partial ones below
    person[:, 20:30, 40:41] = 1  # a sliver overlapping one more patch
    on = torch.nn.functional.avg_pool2d(person[:, None], 16).flatten(1) > 0
    n_on = int(on[0].sum())
    for ratio in (0.25, 0.9):
        k = round(ratio * 16)
        mask = human_mask(person, 16, ratio, generator=torch.Generator().manual_seed(0))
        assert (mask.sum(1) == k).all()
        if k <= n_on:
            assert not (mask & ~on).any()  # only person patches hidden
        else:
            assert (mask | ~on).all()  # every person patch hidden, the rest from the background
    # a finite weight biases without excluding the background
    mask = human_mask(person.repeat(64, 1, 1), 16, 0.25, weight=4.0, generator=torch.Generator().manual_seed(0))
    frac_on = float((mask & on.repeat(64, 1)).sum()) / float(mask.sum())
    assert n_on / 16 < frac_on < 1.0


@pytest.mark.parametrize("strategy", ["uniform", "human"])
def test_cpc_masks_the_asked_ratio(strategy: str) -> None:
    from pretraining.cpc import CPCConfig

    model = METHODS.get("cpc")(tiny_backbone(64), CPCConfig(mask_ratio=0.75, mask_strategy=strategy))
    batch = make_batch("pairs", 64)
    mask = model.mask_for(batch)
    assert mask.shape == (B, 16) and (mask.sum(1) == 12).all()
    assert model.backbone.forward_encoder(batch["img1"], mask).shape == (B, 1 + 4, 48)  # CLS + visible only
    with pytest.raises(ValueError, match="person map"):
        METHODS.get("cpc")(tiny_backbone(64), CPCConfig(mask_strategy="human")).mask_for({"img1": batch["img1"]})
    with pytest.raises(ValueError, match="mask_strategy"):
        METHODS.get("cpc")(tiny_backbone(64), CPCConfig(mask_strategy="checkerboard"))


def test_fill_hidden_puts_visible_tokens_back_in_place() -> None:
    mask = torch.tensor([[True, False, True, False], [False, False, True, True]])
    vis = torch.tensor([[[1.0], [2.0]], [[3.0], [4.0]]])
    full = fill_hidden(vis, mask, torch.full((1, 1, 1), -1.0))
    assert full.squeeze(-1).tolist() == [[-1, 1, -1, 2], [3, 4, -1, -1]]


# --- patches and loss ---------------------------------------------------------------------------------------
def test_patchify_round_trip_and_layout() -> None:
    x = torch.randn(2, 3, 48, 32)
    p = patchify(x, 16)
    assert p.shape == (2, 6, 768)
    assert torch.equal(unpatchify(p, 16, (3, 2)), x)
    # patch 1 is the top-right block, flattened (row, column, channel)
    assert torch.equal(p[0, 1], x[0, :, :16, 16:32].permute(1, 2, 0).reshape(-1))
    with pytest.raises(ValueError):
        patchify(torch.randn(1, 3, 40, 32), 16)


def test_normalised_targets_and_patch_mean_baseline() -> None:
    t = torch.randn(2, 5, 768) * 3 + 1
    t[0, 0] = 0.5  # a flat patch
    z = normalize_patches(t)
    assert torch.allclose(z[:, 1:].mean(-1), torch.zeros(2, 4), atol=1e-5)
    assert torch.allclose(z[:, 1:].std(-1), torch.ones(2, 4), atol=1e-3)
    mask = torch.ones(2, 5, dtype=torch.bool)
    base = masked_mse_per_sample(torch.zeros_like(z), z, mask)
    var = t.var(-1)
    expected = ((767 / 768) * var / (var + EPS)).mean(1)
    assert torch.allclose(base, expected, atol=1e-6)
    assert float(base[1]) == pytest.approx(767 / 768, abs=1e-4) and float(base[0]) < float(base[1])


def test_loss_counts_hidden_patches_only() -> None:
    pred, target = torch.zeros(1, 4, 3), torch.ones(1, 4, 3)
    pred2 = pred.clone()
    pred2[0, 1] = 100.0  # a visible patch: must not matter
    mask = torch.tensor([[True, False, True, False]])
    assert float(masked_mse_per_sample(pred, target, mask)) == float(masked_mse_per_sample(pred2, target, mask)) == 1.0


# --- CPC specifics -------------------------------------------------------------------------------------------
def test_cpc_uses_the_reference_view_and_logs_both_kinds() -> None:
    torch.manual_seed(0)
    model = make_objective("cpc")
    batch = make_batch("pairs")
    batch["img2"].requires_grad_(True)
    out = model(batch)
    assert {"loss_cross_view", "loss_cross_pose"} <= set(out)
    # the batch loss is the mean of per-sample losses; the parts are the per-kind means (2 + 2 samples here)
    parts = (float(out["loss_cross_view"]) + float(out["loss_cross_pose"])) / 2
    assert float(out["loss"].detach()) == pytest.approx(parts, rel=1e-5)
    out["loss"].backward()
    assert batch["img2"].grad.abs().sum() > 0  # cross-attention really reads image 2
    only_view = {**make_batch("pairs"), "kind": torch.zeros(B, dtype=torch.long)}
    out = model(only_view)
    assert "loss_cross_pose" not in out
    assert float(out["loss_cross_view"]) == pytest.approx(float(out["loss"].detach()))


@pytest.mark.parametrize("name", ["cpc", "mae"])
def test_reconstruction_pictures(name: str) -> None:
    model = make_objective(name).eval()
    batch = make_batch(model.data_kind)
    pics = model.reconstruct(batch)
    expected = ["masked input", "reference", "reconstruction", "target"] if name == "cpc" else [
        "masked input", "reconstruction", "target"]
    assert list(pics) == expected
    assert all(v.shape == (B, 3, S, S) for v in pics.values())
    assert float(model.baseline_loss(batch).mean()) == pytest.approx(767 / 768, abs=1e-3)


# --- DINO specifics ------------------------------------------------------------------------------------------
def test_dino_teacher_ema_and_centre() -> None:
    torch.manual_seed(0)
    model = make_objective("dino")
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.add_(0.1)
    t0 = [p.clone() for p in model.teacher_backbone.parameters()]
    s = list(model.backbone.parameters())
    model.after_optimizer_step(0, 10)  # momentum = momentum_teacher at step 0
    m = model.cfg.momentum_teacher
    assert all(torch.allclose(pt, m * a + (1 - m) * ps) for pt, a, ps in
               zip(model.teacher_backbone.parameters(), t0, s, strict=True))
    t1 = [p.clone() for p in model.teacher_backbone.parameters()]
    model.after_optimizer_step(10, 10)  # momentum 1 at the end: teacher frozen
    assert all(torch.equal(a, b) for a, b in zip(t1, model.teacher_backbone.parameters(), strict=True))
    assert float(model.progress) == 1.0
    batch = make_batch("multicrop")
    c0 = model.center.clone()
    model.eval()
    model(batch)
    assert torch.equal(model.center, c0)  # evaluation does not move the centre
    model.train()
    model(batch)
    assert not torch.equal(model.center, c0)
    assert model.export_backbone() is model.teacher_backbone


@pytest.mark.parametrize("name", METHODS.names())
def test_loss_and_gradients_split_over_ranks_like_ddp(name: str) -> None:
    """What DDP computes on 2 ranks (mean of the two half-batch losses and gradients) equals the single-process
    full-batch step: the losses are per-sample means and masks come from the batch (``mask_noise``), not
    from a per-process RNG. Eval mode keeps DINO's centre fixed between the calls."""
    torch.manual_seed(0)
    model = make_objective(name).eval()
    batch = make_batch(model.data_kind)
    if model.data_kind in ("pairs", "images"):
        batch["mask_noise"] = torch.rand(B, 4, generator=torch.Generator().manual_seed(3))
    params = [p for p in model.parameters() if p.requires_grad]

    def loss_and_grads(b: dict) -> tuple[float, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        loss = model(b)["loss"]
        loss.backward()
        return float(loss.detach()), [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in params]

    full, g_full = loss_and_grads(batch)
    halves = [loss_and_grads({k: v[i * B // 2:(i + 1) * B // 2] for k, v in batch.items()}) for i in range(2)]
    assert full == pytest.approx((halves[0][0] + halves[1][0]) / 2, rel=1e-5)
    for gf, g0, g1 in zip(g_full, halves[0][1], halves[1][1], strict=True):
        assert torch.allclose(gf, (g0 + g1) / 2, atol=1e-6, rtol=1e-4)
