"""Pretrain a tiny objective for a few steps through ``harness.train.train``; run alone or under
``torchrun --nproc_per_node=2`` (DDP versus one process, every method). Not collected by pytest."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

N_ITEMS, S = 8, 32


class Items(torch.utils.data.Dataset):
    """Fixed random items of the layout each objective's data set produces (seeded, index-keyed)."""

    def __init__(self, data_kind: str) -> None:
        g = torch.Generator().manual_seed(0)
        img = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
        n, grid = N_ITEMS, (S // 16) ** 2
        if data_kind == "pairs":
            person = torch.zeros(n, S, S)
            person[:, : S // 2] = 1
            self.items = {"img1": img(n, 3, S, S), "img2": img(n, 3, S, S), "kind": torch.arange(n) % 2,
                          "person1": person, "mask_noise": torch.rand(n, grid, generator=g)}
        elif data_kind == "images":
            self.items = {"image": img(n, 3, S, S), "mask_noise": torch.rand(n, grid, generator=g)}
        elif data_kind == "multicrop":
            self.items = {"global": img(n, 2, 3, S, S), "local": img(n, 3, 3, 16, 16)}
        elif data_kind == "labelled":
            self.items = {"image": img(n, 3, S, S), "label": torch.arange(n) % 3}
        else:
            raise ValueError(f"unknown data kind {data_kind!r}")

    def __len__(self) -> int:
        return N_ITEMS

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.items.items()}


def main() -> None:
    import pretraining  # noqa: F401  (registration)
    from harness.distributed import destroy
    from harness.registries import METHODS
    from harness.train import LoopConfig, OptimConfig, train
    from pretraining.vit import build_vit

    ap = argparse.ArgumentParser()
    ap.add_argument("--method", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    backbone = build_vit("vit_tiny", embed_dim=48, depth=2, num_heads=3, img_size=S)
    cls = METHODS.get(a.method)
    model = cls(backbone, cls.config_cls(), data_info={"num_classes": 3})
    loop = LoopConfig(steps=a.steps, batch_size=4, log_every=1, seed=1, device="cpu", count_flops=False)
    optim = OptimConfig(base_lr=1e-2, warmup_steps=1, clip_grad=1.0)
    res = train(model, Items(model.data_kind), loop, optim, Path(a.out), config={"method": a.method})
    if int(os.environ.get("RANK", 0)) == 0:
        Path(a.out, "result.json").write_text(json.dumps([h["loss"] for h in res.history]))
    destroy()


if __name__ == "__main__":
    main()
