"""Shared pieces of the task tests (test_tasks.py, test_task_eval.py, test_task_heads.py): a tiny ViT, a fake
backbone resolver, lazily built tiny frame sets and the real-format fixture of each real task. The fixtures built on
them (``frame_sets``, ``models_dir``, ``real_roots``, ``root_of``, ``task_of``) are in conftest.py."""

from __future__ import annotations

from pathlib import Path

import torch

from harness.registries import TASKS

SIZE = 32
REAL = [n for n in TASKS.names() if not TASKS.get(n).synthetic]
#: the tasks scored through a trained head (the correspondence probes score feature similarity: ``match_scores``)
TRAINED = [n for n in TASKS.names() if not hasattr(TASKS.get(n), "match_scores")]


def tiny_backbone(img_size: int = SIZE) -> torch.nn.Module:
    from pretraining.vit import build_vit

    return build_vit("vit_tiny", img_size=img_size, patch_size=8, embed_dim=32, depth=2, num_heads=2)


def fake_resolve(spec: str, domain: str = "body", img_size: int | None = None):
    torch.manual_seed(1234)  # the same "pretrained" weights for every seed
    bb = tiny_backbone(img_size or SIZE)
    return bb, {"name": spec, "arch": "vit_tiny-test", "method": "scratch", "weights": "", "weights_sha256": "",
                "img_size": bb.img_size, "pretrain": {}}


def info_of(bb: torch.nn.Module) -> dict:
    from harness.evaluate import backbone_info

    return backbone_info(bb, {})


class LazyFrames(dict):
    """domain -> tiny frame set directory, built on first access."""

    def __init__(self, base: Path) -> None:
        super().__init__()
        self.base = base

    def __missing__(self, domain: str) -> Path:
        from synth_frames import make_frames

        self[domain] = make_frames(self.base / domain, domain, size=SIZE)
        return self[domain]


def make_real_fixture(name: str, root: Path) -> None:
    """The published-format fixture(s) a real task reads, train split included where the task has one."""
    import fixtures_real as fx

    if name == "3dpw":
        fx.make_pw3d(root, "test")
        fx.make_pw3d(root, "train")
    elif name == "emdb":  # EMDB has no training split: it fine-tunes on 3DPW train
        fx.make_emdb(root)
        fx.make_pw3d(root, "train")
    elif name in ("h36m-p1", "h36m-p2"):
        fx.make_h36m(root, int(name[-1]))
        fx.make_h36m(root, int(name[-1]), train=True)
    elif name == "freihand":
        fx.make_freihand(root)
    elif name == "ho3d":
        fx.make_ho3d(root)
    elif name == "imagefolder":
        fx.make_imagefolder(root)
    else:
        raise AssertionError(f"no format fixture for real task {name!r}: add it to make_real_fixture")


def first_batch(ds, n: int = 2) -> dict[str, torch.Tensor]:
    from torch.utils.data import DataLoader

    return next(iter(DataLoader(ds, batch_size=n, shuffle=False)))
