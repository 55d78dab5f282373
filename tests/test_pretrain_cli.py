"""``cpcbench pretrain``: end to end on a tiny multi-camera frame set (random pixels), every method, resume,
the exported backbone found by ``resolve_backbone``, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from harness.cli import app

runner = CliRunner()
TINY = ["--img-size", "32", "--batch-size", "4", "--set", "data.eval_items=8", "--set", "loop.log_every=1",
        "--set", "loop.count_flops=false"]


def make_pair_frames(root: Path, seqs: int = 3, cams: int = 2, frames: int = 6, size: int = 48) -> Path:
    """``seqs`` sequences x ``cams`` cameras x ``frames`` instants; the last sequence is the test split.
    Labels cycle over 3 classes so the same set serves supervised pretraining."""
    from humans.frames import FrameWriter

    rng = np.random.default_rng(0)
    w = FrameWriter(root, {"domain": "body", "size": size}, shard_size=cams * frames)
    for s in range(seqs):
        for c in range(cams):
            for t in range(frames):
                mask = np.zeros((size, size), np.uint8)
                mask[8:40, 14:34] = 1
                w.add({"rgb": rng.integers(0, 255, (size, size, 3), dtype=np.uint8), "mask": mask,
                       "bbox": np.array([14, 8, 20, 32], np.float32)},
                      {"sequence": f"s{s}", "camera": f"c{c}", "frame": t, "subject": str(s),
                       "split": "test" if s == seqs - 1 else "train", "label": (s + c + t) % 3})
    return w.close()


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    return make_pair_frames(tmp_path_factory.mktemp("frames"))


def invoke(args: list[str], runs: Path):
    # the data cache points into tmp too: no test may reach (or render) the repo's synthetic frames
    return runner.invoke(app, args, env={"CPCBENCH_RUNS": str(runs), "CPCBENCH_DATA_CACHE": str(runs / "data")})


def test_pretrain_cpc_exports_a_backbone_that_resolve_finds(tmp_path, frames, monkeypatch) -> None:
    from harness.backbones import resolve_backbone

    res = invoke(["pretrain", "body", "--data", str(frames), "--steps", "3", *TINY, "--set", "eval_every=3",
                  "--json"], tmp_path)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout[res.stdout.index("{"):])
    run = Path(summary["run_dir"])
    assert run.parent == tmp_path / "pretrain" and run.name.startswith("body-cpc-vit_tiny-")
    assert summary["steps"] == 3 and np.isfinite(summary["final_loss"])
    # held-out loss and the predict-the-patch-mean baseline on test pairs, both kinds
    assert {"heldout_loss", "heldout_baseline", "heldout_loss_cross_view", "heldout_loss_cross_pose"} <= set(summary)
    assert summary["heldout_baseline"] == pytest.approx(767 / 768, abs=2e-3)  # random pixels: no flat patch
    side = json.loads((run / "backbone.json").read_text())
    cfg = side["config"]
    assert {k: cfg[k] for k in ("method", "domain", "arch", "img_size", "pos_embed", "steps")} == {
        "method": "cpc", "domain": "body", "arch": "vit_tiny", "img_size": 32, "pos_embed": "rope", "steps": 3}
    assert cfg["data"]["source"] == str(frames)
    for name in ("reconstruction.png", "curve.png"):
        assert (run / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [1, 2, 3] and "eval" in log[-1]
    monkeypatch.setenv("CPCBENCH_RUNS", str(tmp_path))
    bb, info = resolve_backbone("cpc", "body")
    assert info["weights"] == str(run / "backbone.safetensors") and info["weights_sha256"] == side["sha256"]
    assert info["load"]["missing"] == [] and info["load"]["allowed_unexpected"] == []
    assert info["pretrain"]["method"] == "cpc" and bb.img_size == 32


@pytest.mark.parametrize("method", ["mae", "dino", "supervised"])
def test_pretrain_baselines_run(tmp_path, frames, method: str) -> None:
    out = tmp_path / method
    res = invoke(["pretrain", "body", "--method", method, "--data", str(frames), "--steps", "2", *TINY,
                  "--set", "dino.local_crops=2", "--out", str(out), "--json"], tmp_path)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout[res.stdout.index("{"):])
    assert summary["steps"] == 2 and np.isfinite(summary["heldout_loss"])
    assert (out / "backbone.safetensors").is_file()
    assert (out / "reconstruction.png").is_file() == (method == "mae")
    side = json.loads((out / "backbone.json").read_text())
    assert side["config"]["method"] == method
    if method == "supervised":
        assert side["config"]["data"]["num_classes"] == 3


def test_pretrain_resume_continues_the_run(tmp_path, frames) -> None:
    out = tmp_path / "run"
    args = ["pretrain", "body", "--data", str(frames), *TINY, "--out", str(out), "--set", "eval_every=0"]
    assert invoke([*args, "--steps", "2"], tmp_path).exit_code == 0
    again = invoke([*args, "--steps", "4"], tmp_path)
    assert again.exit_code == 2 and "--resume" in again.output
    res = invoke([*args, "--steps", "4", "--resume", "--json"], tmp_path)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout[res.stdout.index("{"):])["steps"] == 4
    assert [json.loads(x)["step"] for x in (out / "log.jsonl").read_text().splitlines()] == [1, 2, 3, 4]


def test_epochs_set_the_steps(tmp_path, frames) -> None:
    res = invoke(["pretrain", "body", "--data", str(frames), *TINY, "--epochs", "0.5", "--set", "eval_every=0",
                  "--out", str(tmp_path / "e"), "--json"], tmp_path)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout[res.stdout.index("{"):])["steps"] == 3  # ceil(0.5 * 24 train frames / 4)


@pytest.mark.parametrize(("args", "message"), [
    (["pretrain", "legs"], "unknown pretraining domain 'legs'"),
    (["pretrain", "body", "--method", "byol"], "unknown pretraining method 'byol'"),
    (["pretrain", "body", "--set", "cpc.mask_ration=0.5"], "mask_ration"),
    (["pretrain", "body", "--preset", "huge"], "unknown preset 'huge'"),
    (["pretrain", "body", "--data", "/nonexistent/frames"], "not a frame set"),
    (["pretrain", "body", "--set", "cpc.mask_ratio=1.0"], "mask ratio must be in [0, 1)"),
    (["pretrain", "body", "--img-size", "100"], "not a multiple of the patch size"),
    (["pretrain", "body", "--set", "pos_embed=alibi"], "unknown pos_embed 'alibi'"),
])
def test_pretrain_errors_are_one_line(tmp_path, args: list[str], message: str) -> None:
    res = invoke(args, tmp_path)
    assert res.exit_code == 2, res.output
    err = res.output.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]


def test_presets() -> None:
    from harness.pretrain import build_config

    cfg = build_config("hand", ["paper"], ["cpc.mask_strategy=human"], method="mae")
    assert (cfg.domain, cfg.arch, cfg.img_size, cfg.method) == ("hand", "vit_base", 224, "mae")
    assert cfg.loop.batch_size == 512
    assert cfg.optim.base_lr == 1.5e-4 and cfg.epochs == 400 and cfg.cpc.mask_strategy == "human"
    default = build_config("body")
    assert (default.arch, default.img_size, default.loop.steps, default.loop.batch_size) == ("vit_tiny", 128, 300, 32)


# --- data sets --------------------------------------------------------------------------------------------------
def test_pair_dataset_is_deterministic_per_seed_epoch_index(frames) -> None:
    import torch

    from humans.frames import FrameStore
    from pretraining.data import CachedFrames, DataConfig, PairDataset

    store = CachedFrames(FrameStore(frames).select(split="train"))
    ds = PairDataset(store, DataConfig(), 32, seed=0)
    a, b = ds[3], ds[3]
    assert all(torch.equal(a[k], b[k]) for k in ("img1", "img2", "person1", "mask_noise")) and a["kind"] == b["kind"]
    assert a["img1"].shape == (3, 32, 32) and a["person1"].shape == (32, 32) and a["mask_noise"].shape == (4,)
    assert 0 < float(a["person1"].mean()) < 1  # the person map follows the crop
    ds.set_epoch(1)
    assert not torch.equal(ds[3]["img1"], a["img1"])
    kinds = {ds[i]["kind"] for i in range(len(ds))}
    assert kinds == {0, 1}  # both pair kinds are drawn at mix 0.5
    only_view = PairDataset(store, DataConfig(pair_mix=1.0), 32)
    assert {only_view[i]["kind"] for i in range(8)} == {0}


def test_masks_come_from_the_data(frames) -> None:
    """The objective's mask is a function of the item's mask draws: the same items give the same masks."""
    import torch
    from torch.utils.data import default_collate

    import pretraining  # noqa: F401
    from harness.registries import METHODS
    from humans.frames import FrameStore
    from pretraining.data import CachedFrames, DataConfig, ImageDataset, PairDataset
    from pretraining.vit import build_vit

    store = CachedFrames(FrameStore(frames).select(split="train"))
    for name, ds in (("cpc", PairDataset(store, DataConfig(), 64)), ("mae", ImageDataset(store, DataConfig(), 64))):
        model = METHODS.get(name)(build_vit("vit_tiny", embed_dim=48, depth=1, num_heads=3, img_size=64))
        batch = default_collate([ds[i] for i in range(4)])
        m1, m2 = model.mask_for(batch), model.mask_for(default_collate([ds[i] for i in range(4)]))
        assert torch.equal(m1, m2) and (m1.sum(1) == round(model.cfg.mask_ratio * 16)).all()


def test_multicrop_views(frames) -> None:
    from humans.frames import FrameStore
    from pretraining.data import CachedFrames, DataConfig, MultiCropDataset

    ds = MultiCropDataset(CachedFrames(FrameStore(frames)), DataConfig(), 32, 16, 3, (0.4, 1.0), (0.05, 0.4))
    item = ds[0]
    assert item["global"].shape == (2, 3, 32, 32) and item["local"].shape == (3, 3, 16, 16)


def test_supervised_on_an_image_folder(tmp_path) -> None:
    from PIL import Image

    from harness.pretrain import build_config, build_datasets

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(3):
            img = Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8))
            img.save(tmp_path / "imgs" / cls / f"{i}.png")
    cfg = build_config("body", (), [f"data.source={tmp_path / 'imgs'}"], method="supervised", img_size=32)
    train, held, info = build_datasets(cfg, 16)
    assert info["num_classes"] == 2 and held is None and len(train) == 6
    item = train[4]
    assert item["image"].shape == (3, 32, 32) and item["label"] == 1
