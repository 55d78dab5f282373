"""The fast path of the loop (issue 14) trains the same model as the eager path.

Fast = the transformer blocks compiled (``harness.fast``, ``LoopConfig(compile=True)``) + torch's fused AdamW kernel;
eager = no compile + the for-each AdamW. Both run 20 steps of ``harness.train.train`` on one fixed batch from the
same initial weights; every logged loss must agree within 1e-5 and the final weights within float tolerance. CPC
runs in ``make test`` (its first compile costs tens of seconds on 2 cores, the inductor cache makes later runs
fast); MAE, DINO and supervised in ``make test-slow``.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

import pretraining  # noqa: F401  (registration)
from harness import fast
from harness.registries import METHODS
from harness.train import LoopConfig, OptimConfig, train
from pretraining.layers import RoPE2D, apply_rope
from pretraining.vit import build_vit

IMG, BATCH, STEPS = 32, 4, 20
pytestmark = pytest.mark.skipif(fast.compiler_problem() is not None, reason="no C++ compiler for torch.compile")


def fixed_item(kind: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    n = (IMG // 16) ** 2
    if kind == "pairs":
        return {"img1": torch.randn(3, IMG, IMG, generator=g), "img2": torch.randn(3, IMG, IMG, generator=g),
                "kind": torch.tensor(1), "person1": torch.ones(IMG, IMG), "mask_noise": torch.rand(n, generator=g)}
    if kind in ("images", "labelled"):
        return {"image": torch.randn(3, IMG, IMG, generator=g), "person": torch.ones(IMG, IMG),
                "mask_noise": torch.rand(n, generator=g), "label": torch.tensor(2)}
    return {"global": torch.randn(2, 3, IMG, IMG, generator=g), "local": torch.randn(4, 3, 16, 16, generator=g)}


class FixedBatch(torch.utils.data.Dataset):
    """BATCH copies of one item: every step sees the same batch."""

    def __init__(self, item: dict[str, torch.Tensor]) -> None:
        self.item = item

    def __len__(self) -> int:
        return BATCH

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.item


class UnfusedAdamW(torch.optim.AdamW):
    """The for-each AdamW whatever the loop asks for (the eager reference)."""

    def __init__(self, *args, fused=None, **kwargs) -> None:  # noqa: ANN001, ANN002, ANN003
        super().__init__(*args, **kwargs)


def run(name: str, compiled: bool, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[float], dict]:
    cls = METHODS.get(name)
    torch.manual_seed(0)
    model = cls(build_vit("vit_tiny", img_size=IMG, depth=2), cls.config_cls(), data_info={"num_classes": 4})
    with monkeypatch.context() as m:
        if not compiled:
            m.setattr(torch.optim, "AdamW", UnfusedAdamW)
        res = train(model, FixedBatch(fixed_item(cls.data_kind)),
                    LoopConfig(steps=STEPS, batch_size=BATCH, log_every=1, count_flops=compiled, compile=compiled),
                    OptimConfig(base_lr=1e-3, warmup_steps=2), tmp / f"{name}-{compiled}")
    if compiled:
        assert res.compile["blocks"] > 0 and res.compile["seconds"] > 0
        assert res.flops_per_step > 0  # counted on an eager copy of the compiled model
    else:
        assert res.compile == {}
    return [h["loss"] for h in res.history], copy.deepcopy(fast.uncompile(model).state_dict())


def check_same(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    eager, w_eager = run(name, False, tmp_path, monkeypatch)
    fast_losses, w_fast = run(name, True, tmp_path, monkeypatch)
    assert len(eager) == len(fast_losses) == STEPS
    diffs = [abs(a - b) for a, b in zip(eager, fast_losses, strict=True)]
    assert max(diffs) < 1e-5, f"{name}: fast-path losses differ from eager by up to {max(diffs):.2e}"
    assert eager[-1] != eager[0]  # the model trained: equal losses are not equal constants
    for k, v in w_eager.items():
        torch.testing.assert_close(w_fast[k], v, rtol=1e-4, atol=1e-5, msg=lambda m, k=k: f"{name} {k}: {m}")


def test_cpc_fast_path_equals_eager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    check_same("cpc", tmp_path, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mae", "dino", "supervised"])
def test_fast_path_equals_eager(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    check_same(name, tmp_path, monkeypatch)


def test_compile_blocks_is_in_place_and_copies_stay_separate() -> None:
    """Compiling keeps the state_dict keys (no ``_orig_mod.``); an uncompiled deep copy runs its own weights."""
    vit = build_vit("vit_tiny", img_size=IMG, depth=2)
    keys = list(vit.state_dict())
    assert fast.compile_blocks(vit) == 2 and fast.compile_blocks(vit) == 0  # idempotent
    assert list(vit.state_dict()) == keys
    clone = fast.uncompile(copy.deepcopy(vit))
    assert all(getattr(m, "_compiled_call_impl", None) is None for m in clone.modules())
    with torch.no_grad():
        for p in clone.parameters():
            p.zero_()
    x = torch.randn(1, 3, IMG, IMG)
    assert not torch.allclose(clone(x), vit.eval()(x))


def test_no_compiler_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(fast.shutil, "which", lambda name: None)
    assert "C++ compiler" in fast.compiler_problem("cpu")
    model = METHODS.get("mae")(build_vit("vit_tiny", img_size=IMG, depth=2), METHODS.get("mae").config_cls())
    batch = {k: v[None].expand(BATCH, *v.shape) for k, v in fixed_item("images").items()}
    with caplog.at_level("WARNING", logger="cpcbench.train"):
        assert fast.warm_compiled(model, batch, None, "cpu") == (0, 0.0)
    assert "training eagerly" in caplog.text
    assert all(getattr(m, "_compiled_call_impl", None) is None for m in model.modules())


def test_rope_fast_form_equals_rotate_half() -> None:
    """``apply_rope`` (one quarter swap, sign folded into sin) equals the textbook t*cos + rotate_half(t)*sin,
    for q and k rotated together."""
    d, rope = 16, RoPE2D(100.0)
    g = torch.Generator().manual_seed(1)
    pos = torch.randint(0, 8, (2, 5, 2), generator=g).float()
    cos, sin_signed = rope.cos_sin(pos, d, num_prefix=1)
    half = d // 2
    inv = 1.0 / 100.0 ** (torch.arange(0, half, 2).float() / half)
    ang = torch.cat([pos[..., :1] * inv, pos[..., :1] * inv, pos[..., 1:] * inv, pos[..., 1:] * inv], -1)
    ang = torch.cat([torch.zeros(2, 1, d), ang], 1)[:, None]  # the prefix token is not rotated
    t = torch.randn(2, 2, 3, 6, d, generator=g)  # [q/k, B, heads, N, d]
    a, b, c, e = t.chunk(4, -1)
    ref = t * ang.cos() + torch.cat([-b, a, -e, c], -1) * ang.sin()
    torch.testing.assert_close(apply_rope(t, (cos, sin_signed)), ref)
