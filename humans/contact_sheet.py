"""A contact sheet of a frame set: frames with their joints drawn, part segmentations, and a few
cross-view and cross-pose pairs side by side, so that a person can look at the data (``cpcbench data show``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from core.errors import DataError
from humans.frames import FrameStore, PairSampler

# FreiHAND keypoint order: wrist, then thumb/index/middle/ring/pinky from base to tip.
FREIHAND_PARENTS = [-1, 0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19]
_BG = (24, 24, 28)


def _part_colours(n: int) -> np.ndarray:
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    cols = np.array([cmap(i % 20)[:3] for i in range(n)]) * 255
    return np.concatenate([np.zeros((1, 3)), cols]).astype(np.uint8)


def _tile(frame: dict[str, np.ndarray], thumb: int, parents: list[int] | None, what: str = "rgb") -> Any:
    """One thumbnail: ``what`` = "rgb" (the image), "joints" (image + 2D joints and skeleton) or "parts"."""
    from PIL import Image, ImageDraw

    if what == "parts" and "parts" in frame:
        pal = _part_colours(int(frame["parts"].max()) + 1)
        img = (0.45 * frame["rgb"] + 0.55 * pal[frame["parts"]]).astype(np.uint8)
    else:
        img = frame["rgb"]
    h, w = img.shape[:2]
    im = Image.fromarray(img).resize((thumb, int(round(thumb * h / w))), Image.BILINEAR)
    s = thumb / w
    if what == "joints" and "joints2d" in frame:
        overlay = Image.new("RGBA", im.size, (0, 0, 0, 0))
        d = ImageDraw.Draw(overlay)
        j = (frame["joints2d"].astype(np.float64) + 0.5) * s  # pixel centres at integers -> PIL's corner origin
        if parents is not None and len(parents) == len(j):
            for c, p in enumerate(parents):
                if p >= 0:
                    d.line([tuple(j[p]), tuple(j[c])], fill=(255, 255, 255, 150), width=1)
        r = max(1.0, thumb / 110)
        for k, (x, y) in enumerate(j):
            col = (255, 60, 60, 230) if k % 2 else (60, 200, 255, 230)
            d.ellipse([x - r, y - r, x + r, y + r], fill=col)
        im = Image.alpha_composite(im.convert("RGBA"), overlay).convert("RGB")
    return im


def make_contact_sheet(root: str | Path, out: str | Path | None = None, n_frames: int = 16, n_pairs: int = 4,
                       thumb: int = 128, cols: int = 8, seed: int = 0, colors: int = 0) -> Path:
    """Write a PNG contact sheet of the frame set at ``root`` (default ``root/contact_sheet.png``).

    Rows: ``n_frames`` frames from distinct sequences with joints (and skeleton) drawn; their part
    segmentations (when stored); then ``n_pairs`` cross-view and ``n_pairs`` cross-pose pairs side by side,
    as the model sees them. ``colors`` > 0 quantises the PNG to that many colours (small files for docs).
    """
    from PIL import Image, ImageDraw

    store = FrameStore(root)
    if len(store) == 0:
        raise DataError(f"frame set {root} is empty")
    meta = store.meta
    parents = meta.get("parents")
    if parents is None and meta.get("domain") == "hand":
        parents = FREIHAND_PARENTS
    rng = np.random.default_rng(seed)
    df = store.manifest
    seqs = df["sequence"].unique()
    picked_seqs = rng.permutation(seqs)[:n_frames]
    picks = [int(rng.choice(np.flatnonzero((df["sequence"] == s).to_numpy()))) for s in picked_seqs]
    while len(picks) < min(n_frames, len(df)):
        picks.append(int(rng.integers(len(df))))
    frames = [store.load(i) for i in picks]
    title = "frames (joints drawn)" if any("joints2d" in f for f in frames) else "frames"
    if meta.get("labels"):
        title += " - classes: " + ", ".join(str(x) for x in meta["labels"])
    tiles = [(title, [_tile(f, thumb, parents, "joints") for f in frames])]
    if any("parts" in f for f in frames):
        tiles.append(("part segmentation", [_tile(f, thumb, parents, "parts") for f in frames[:cols]]))
    for kind, mix in (("cross-view pairs (same instant, two cameras)", 1.0),
                      ("cross-pose pairs (same camera, two instants)", 0.0)):
        try:
            sampler = PairSampler(df, mix=mix, min_gap=1, max_gap=max(1, int(df["frame"].max())), seed=seed)
        except DataError:
            continue
        pair_tiles = []
        for _ in range(n_pairs):
            i, j, _k = sampler.sample(rng)
            pair_tiles += [_tile(store.load(i), thumb, parents), _tile(store.load(j), thumb, parents)]
        tiles.append((kind, pair_tiles))
    label_h = 14
    th = max(t.size[1] for _, ts in tiles for t in ts)
    n_rows = sum(-(-len(ts) // cols) for _, ts in tiles)
    pair_gap = 6
    width = cols * (thumb + 2) + (cols // 2) * pair_gap
    sheet = Image.new("RGB", (width, n_rows * (th + 2) + len(tiles) * label_h), _BG)
    draw = ImageDraw.Draw(sheet)
    y = 0
    for title, ts in tiles:
        draw.text((2, y + 1), title, fill=(230, 230, 230))
        y += label_h
        for k, t in enumerate(ts):
            r, c = divmod(k, cols)
            x = c * (thumb + 2) + ((c // 2) * pair_gap if "pairs" in title else 0)
            sheet.paste(t, (x, y + r * (th + 2)))
        y += -(-len(ts) // cols) * (th + 2)
    out = Path(out) if out is not None else Path(root) / "contact_sheet.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    if colors:
        sheet = sheet.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    sheet.save(out, optimize=True)
    return out
