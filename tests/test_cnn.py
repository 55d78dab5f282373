"""Reference CNN backbones (``--backbone cnn:NAME``, issue 16): the backbone contract at 64 px (a 2x2 map), every
synthetic task's head on that grid, one-line refusals, layer-wise LR decay, ``cpcbench eval`` end to end (fine-tuning
and a frozen protocol) and the table row."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from task_kit import TRAINED, first_batch
from typer.testing import CliRunner

from core.errors import CpcbenchError
from harness.backbones import resolve_backbone
from harness.cli import app
from harness.eval_parts import backbone_info
from harness.registries import TASKS

IMG = 64
SYNTH_TRAINED = [n for n in TRAINED if TASKS.get(n).synthetic]
runner = CliRunner()


@pytest.fixture(scope="module")
def resnet18() -> tuple[torch.nn.Module, dict]:
    torch.manual_seed(0)
    return resolve_backbone("cnn:resnet18", img_size=IMG)


@pytest.fixture(scope="module")
def frames64(tmp_path_factory) -> dict[str, Path]:
    from synth_frames import make_frames

    base = tmp_path_factory.mktemp("cnn-frames")
    return {d: make_frames(base / d, d, size=IMG, seqs=4, frames_per_seq=2) for d in ("body", "hand")}


def test_contract_resnet18_at_64px(resnet18) -> None:
    from tasks.heads import patch_grid

    bb, info = resnet18
    assert backbone_info(bb, info) == {"embed_dim": 512, "num_prefix_tokens": 0, "grid_size": (2, 2),
                                       "patch_size": 32, "img_size": IMG}
    assert not hasattr(bb, "blocks")  # no layers for a layer-wise LR decay
    assert info["method"] == "reference-cnn" and info["arch"] == "resnet18" and info["name"] == "cnn:resnet18"
    assert info["weights"] == "" and info["weights_sha256"] == "" and info["backbone"]["kind"] == "cnn"
    bb.eval()
    x = torch.randn(3, 3, IMG, IMG)
    with torch.no_grad():
        tokens, fmap = bb.forward_features(x), bb.forward_map(x)
    assert tokens.shape == (3, 4, 512) and fmap.shape == (3, 512, 2, 2)
    assert torch.equal(tokens[:, 1], fmap[:, :, 0, 1])  # row-major: token i*w + j is map cell (i, j)
    assert torch.equal(patch_grid(tokens, 0, (2, 2)), fmap)  # the grid heads get the map back
    bb.train()
    # random init only, from the torch RNG: the same seed gives the same weights, another seed others
    torch.manual_seed(0)
    again, _ = resolve_backbone("cnn:resnet18", img_size=IMG)
    torch.manual_seed(1)
    other, _ = resolve_backbone("cnn:resnet18", img_size=IMG)
    w = "net.conv1.weight"
    assert torch.equal(again.state_dict()[w], bb.state_dict()[w])
    assert not torch.equal(other.state_dict()[w], bb.state_dict()[w])


def test_default_size_is_the_scratch_vit_one() -> None:
    """Without --img-size a reference CNN runs at the default ViT's input size, so it shares its table columns."""
    from harness.backbones import SCRATCH

    bb, info = resolve_backbone("cnn:resnet18")
    assert info["img_size"] == SCRATCH["img_size"] and bb.grid_size == (SCRATCH["img_size"] // 32,) * 2


def test_parameters_outside_forward_features_are_frozen() -> None:
    """MobileNetV3's conv_head sits in forward_head: it would never get a gradient, so it is not trained."""
    bb, _ = resolve_backbone("cnn:mobilenetv3_small_100", img_size=IMG)
    frozen = sorted(n for n, p in bb.named_parameters() if not p.requires_grad)
    assert frozen and all(n.startswith("net.conv_head.") for n in frozen)
    bb.forward_features(torch.randn(2, 3, IMG, IMG)).sum().backward()
    assert all(p.grad is not None for p in bb.parameters() if p.requires_grad)


@pytest.mark.parametrize("spec, img, needle", [
    ("cnn:resnt18", IMG, "did you mean cnn:resnet18"),
    ("cnn:resnet18.a1_in1k", IMG, "random init only"),
    ("cnn:", IMG, "name a timm CNN"),
    ("cnn:vit_tiny_patch16_224", IMG, "not a CNN"),
    ("cnn:resnet18", 72, "multiple of 32"),  # a 3x3 map of stride 32 does not tile 72 px: no honest patch size
])
def test_bad_specs_are_one_line(spec: str, img: int, needle: str) -> None:
    with pytest.raises(CpcbenchError) as e:
        resolve_backbone(spec, img_size=img)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_a_vit_at_its_own_size_is_not_a_cnn() -> None:
    with pytest.raises(CpcbenchError, match=r"gives \[1, 197, 192\], not a \[B, C, h, w\] feature map"):
        resolve_backbone("cnn:vit_tiny_patch16_224", img_size=224)


@pytest.mark.parametrize("name", SYNTH_TRAINED)
def test_synth_task_heads_on_a_2x2_grid(name, frames64, resnet18) -> None:
    """Every synthetic task's head trains on the 2x2 map of a ResNet-18 at 64 px: finite loss, gradients down to the
    CNN's first convolution, predictions that score."""
    from harness.evaluate import TaskModel

    bb, info = resnet18
    task = TASKS.get(name)(frames64[TASKS.get(name).domain])
    ds = task.build_dataset("train", IMG, limit=2)
    model = TaskModel(bb, task.build_head(backbone_info(bb, info)), task, frozen=False)
    model.zero_grad(set_to_none=True)
    batch = first_batch(ds)
    pred = model.predict(batch["image"])
    out = task.loss(pred, batch)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    g = bb.net.conv1.weight.grad
    assert g is not None and g.abs().sum() > 0
    arrays = task.predictions({k: v.detach() for k, v in pred.items()}, batch)
    scores = task.score_arrays(arrays)
    assert sorted(scores) == sorted(m.name for m in task.metrics)
    assert all(np.isfinite(v).all() for v in scores.values())


def test_layer_decay_does_not_apply(resnet18) -> None:
    """Fine-tuning a CNN: the task's default decay becomes none (recorded as null), 1 is none, any other is refused;
    a ViT keeps the task's default."""
    from harness.evaluate import EvalConfig, TaskModel, layer_decay
    from harness.optim import param_groups
    from pretraining.vit import build_vit

    bb, _ = resnet18
    d = TASKS.get("synth-body-mesh").defaults
    cfg = EvalConfig(backbone="cnn:resnet18", task="synth-body-mesh")
    assert d.layer_decay is not None and layer_decay(cfg, d, bb) is None
    assert layer_decay(EvalConfig(backbone="cnn:resnet18", task="synth-body-mesh", layer_decay=1.0), d, bb) is None
    with pytest.raises(CpcbenchError, match="no transformer blocks"):
        layer_decay(EvalConfig(backbone="cnn:resnet18", task="synth-body-mesh", layer_decay=0.65), d, bb)
    vit = build_vit("vit_tiny", img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)
    assert layer_decay(cfg, d, vit) == d.layer_decay
    model = TaskModel(bb, torch.nn.Linear(512, 2), None, frozen=False)
    assert {g["lr_scale"] for g in param_groups(model, 0.05, layer_decay(cfg, d, bb))} == {1.0}


def _eval(tmp_path: Path, root: Path, task: str, *extra: str) -> object:
    return runner.invoke(app, ["eval", "--backbone", "cnn:resnet18", "--task", task, "--data-root", str(root),
                               "--limit", "3", "--steps", "2", "--batch-size", "2", "--img-size", str(IMG),
                               "--device", "cpu", "--results", str(tmp_path / "results"), "--runs",
                               str(tmp_path / "runs"), "--json", *extra])


def test_eval_cli_end_to_end(tmp_path, frames64) -> None:
    r = _eval(tmp_path, frames64["body"], "synth-body-mesh")
    assert r.exit_code == 0, r.output
    (rec,) = json.loads(r.stdout)
    saved = json.loads(Path(rec["_path"]).read_text())
    assert saved["method"] == "reference-cnn" and saved["smoke"]
    bb = saved["backbone"]
    assert bb["name"] == bb["spec"] == "cnn:resnet18" and bb["arch"] == "resnet18" and bb["weights"] == ""
    assert bb["backbone"] == {"kind": "cnn", "arch": "resnet18", "img_size": IMG}
    cfg = saved["config"]
    assert cfg["layer_decay"] is None and cfg["defaults"]["layer_decay"] is not None and cfg["img_size"] == IMG
    assert set(saved["metrics"]) == {m.name for m in TASKS.get("synth-body-mesh").metrics}
    assert all(np.isfinite(m["mean"]) for m in saved["metrics"].values())


def test_eval_cli_refuses_a_layer_decay(tmp_path, frames64) -> None:
    r = _eval(tmp_path, frames64["body"], "synth-body-mesh", "--layer-decay", "0.65")
    assert r.exit_code == 2 and "no transformer blocks" in r.stderr and r.stderr.strip().count("\n") == 0
    assert not list(tmp_path.rglob("*.json"))


def test_frozen_protocol_on_cached_features(tmp_path, frames64) -> None:
    r = _eval(tmp_path, frames64["hand"], "synth-hand-gesture", "--protocol", "knn")
    assert r.exit_code == 0, r.output
    (rec,) = json.loads(r.stdout)
    assert rec["method"] == "reference-cnn" and rec["config"]["layer_decay"] is None
    assert rec["config"]["feature_cache"] == "on" and rec["config"]["features"]


def test_eval_help_names_the_spec() -> None:
    r = runner.invoke(app, ["eval", "--help"], terminal_width=200)
    assert r.exit_code == 0 and "cnn:NAME" in r.stdout


def test_table_has_a_reference_cnn_row() -> None:
    """A reference CNN is its own row, labelled as a diagnostic, after the methods, in the same cell as the ViTs
    (its null layer decay is no other setting); the table renders."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "golden"))
    from make_records import record

    from harness.leaderboard import to_markdown
    from harness.tables import main_tables

    d = {"steps": 10, "batch_size": 32, "base_lr": 1e-3, "img_size": 64, "layer_decay": 0.75}
    recs = []
    for name, method, v in (("cnn:resnet18", "reference-cnn", 198.0), ("scratch", "scratch", 244.0),
                            ("cpc", "cpc", 230.0)):
        rec = record("synth-body-mesh", name, [0, 1, 2], {"mpjpe": [v, v + 1, v + 2]}, method=method,
                     sha="" if name != "cpc" else "c" * 64)
        rec["config"] = {**rec["config"], "defaults": d, "layer_decay": None if method == "reference-cnn" else 0.75}
        recs.append(rec)
    (table,) = main_tables(recs)
    assert [r.label for r in table.rows] == ["cpc", "scratch", "ResNet-18, random init (reference CNN)"]
    assert len(table.columns) == 1 and table.rows[-1].cells[0].mean == pytest.approx(199.0)
    assert "ResNet-18, random init (reference CNN)" in to_markdown(table)
