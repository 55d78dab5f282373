"""Facing probe: can a backbone learn which way a body faces, from the images of a body frame set?

The diagnosis behind "synth-body-mesh is not solved at CPU scale" (README, issue #6). MPJPE and PVE subtract the
root joint but not the root orientation, so they need the body's yaw relative to the camera; PA-MPJPE does not.
This probe isolates that one quantity: the yaw of the body's facing direction (the normal of the plane through
the hips and the neck, in camera coordinates) in 8 bins of 45 degrees, learned by the backbone plus a linear
classifier on its mean-pooled tokens with cross-entropy, AdamW and a one-cycle schedule. It reports top-1
accuracy on the test subjects and, for comparison, on the training frames (chance: 12.5 %).

    .venv/bin/python docs/diagnostics/facing_probe.py FRAMESET --backbone cpc --steps 600 --lr 3e-4 --size 64

FRAMESET: a body frame set (``cpcbench data synth body ...`` or ``humans.world.generate``). ``--augment`` adds
horizontal flips (yaw mirrored), colour-channel permutation, saturation and brightness/contrast jitter.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

BINS = 8


def yaw_bins(joints3d: np.ndarray) -> np.ndarray:
    """[N, 24, 3] camera-frame SMPL joints -> [N] facing-yaw bin (0..7; bin b covers [-180 + 45 b, -135 + 45 b))."""
    f = np.cross(joints3d[:, 1] - joints3d[:, 2], joints3d[:, 12] - joints3d[:, 0])
    yaw = np.arctan2(f[:, 0], f[:, 2])
    return ((yaw + np.pi) / (2 * np.pi) * BINS).astype(int) % BINS


def batch(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator | None) -> tuple[torch.Tensor, np.ndarray]:
    """uint8 [B, S, S, 3] -> normalised [B, 3, S, S]; with ``rng``, augmented (labels mirrored on flips)."""
    from humans.frames import IMAGENET_MEAN, IMAGENET_STD

    x = images.astype(np.float32) / 255
    y = labels.copy()
    if rng is not None:
        for b in range(len(x)):
            im = x[b]
            if rng.random() < 0.5:
                im, y[b] = im[:, ::-1], BINS - 1 - y[b]  # a mirrored image shows the mirrored yaw
            im = im[..., rng.permutation(3)]
            g = im.mean(-1, keepdims=True)
            im = g + (im - g) * rng.uniform(0.4, 1.6)
            im = (im - im.mean()) * rng.uniform(0.6, 1.4) + im.mean() * rng.uniform(0.6, 1.4)
            x[b] = np.clip(im, 0, 1)
    t = torch.from_numpy(x).permute(0, 3, 1, 2)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (t - mean) / std, y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("frames", help="a body frame set directory")
    ap.add_argument("--backbone", default="scratch", help="what `cpcbench eval --backbone` accepts")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--augment", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.steps < 10:
        ap.error("--steps must be >= 10")

    from harness.backbones import resolve_backbone
    from harness.evaluate import backbone_info
    from harness.runtime import seed_everything
    from tasks.synth_data import load_frames

    root = Path(args.frames)
    tr, te = (load_frames(root, s, args.size, ("joints3d",)) for s in ("train", "test"))
    ytr, yte = yaw_bins(tr["joints3d"]), yaw_bins(te["joints3d"])
    seed_everything(args.seed)
    bb, binfo = resolve_backbone(args.backbone, "body", args.size)
    info = backbone_info(bb, binfo)
    head = torch.nn.Sequential(torch.nn.LayerNorm(info["embed_dim"]), torch.nn.Linear(info["embed_dim"], BINS))
    prefix = int(info["num_prefix_tokens"])
    opt = torch.optim.AdamW([*bb.parameters(), *head.parameters()], lr=args.lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps,
                                                pct_start=max(0.05, 3 / args.steps))
    rng = np.random.default_rng(args.seed)
    t0 = time.time()

    def logits(x: torch.Tensor) -> torch.Tensor:
        return head(bb.forward_features(x)[:, prefix:].mean(1))

    for step in range(args.steps):
        idx = rng.integers(0, len(ytr), args.batch_size)
        x, y = batch(tr["image"][idx], ytr[idx], rng if args.augment else None)
        loss = torch.nn.functional.cross_entropy(logits(x), torch.from_numpy(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step}: loss {loss.item():.3f} (chance {np.log(BINS):.3f})", flush=True)
    bb.eval()
    head.eval()

    def accuracy(images: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        with torch.no_grad():
            p = np.concatenate([logits(batch(images[i:i + 128], y[i:i + 128], None)[0]).argmax(1).numpy()
                                for i in range(0, len(y), 128)])
        d = np.minimum((p - y) % BINS, (y - p) % BINS)
        return float((d == 0).mean()), float((d <= 1).mean())

    (te1, te3), (tr1, tr3) = accuracy(te["image"], yte), accuracy(tr["image"], ytr)
    print(f"{args.backbone} on {root} ({args.size} px, {args.steps} steps, augment={args.augment}): facing yaw "
          f"top-1 test {te1:.1%} (within one bin {te3:.1%}), train {tr1:.1%} ({tr3:.1%}); chance 12.5 % (37.5 %); "
          f"{len(ytr)} train / {len(yte)} test frames; {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
