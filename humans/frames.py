"""Frame sets: one manifest format for every source (the synthetic world, converted real captures).

A frame set is a directory::

    manifest.csv          one row per frame (MANIFEST_COLUMNS)
    meta.json             domain (body|hand|objects), size, joint names, model kind, generator config, seed
    shards/shard-00000.npz  frames stored as stacked arrays (key -> [n, ...]); or images referenced by path

Manifest columns: ``sequence, camera, frame, subject, motion, split, shard, index, image, bbox_x, bbox_y,
bbox_w, bbox_h, label``. ``shard``/``index`` locate a frame in a shard; ``image`` is a path relative to the
root for real captures (empty for shard frames). ``label`` is a class id (gesture, object) or -1.

Cross-view pairs share (sequence, frame) and differ in camera; cross-pose pairs share (sequence, camera)
with a frame gap in [min_gap, max_gap] (CroCo-Man, CVPR 2024: "stereoscopic" and "temporal" pairs). Gaps count
steps along the sequence's sorted frame indices, not raw index differences: a capture released at a frame
stride (InterHand2.6M's 5 fps release: frame_idx 2140, 2146, ...) pairs like one numbered 0, 1, 2, ...
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import DataError
from core.io import atomic_write, atomic_write_json, atomic_write_text, usable_cpus

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

MANIFEST_COLUMNS = ["sequence", "camera", "frame", "subject", "motion", "split", "shard", "index", "image",
                    "bbox_x", "bbox_y", "bbox_w", "bbox_h", "label"]
_DEFAULTS: dict[str, Any] = {"subject": "", "motion": "", "split": "train", "shard": "", "index": -1, "image": "",
                             "bbox_x": np.nan, "bbox_y": np.nan, "bbox_w": np.nan, "bbox_h": np.nan, "label": -1}
PAIR_KINDS = ("cross_view", "cross_pose")


def read_manifest(root: str | Path):
    """The manifest of a frame set as a DataFrame, validated; a clear ``DataError`` otherwise."""
    import pandas as pd

    path = Path(root) / "manifest.csv"
    if not path.is_file():
        raise DataError(f"no frame manifest at {path}: generate frames with `cpcbench data synth ...` or "
                        "convert a capture with `cpcbench data convert ...`")
    try:
        df = pd.read_csv(path, dtype={"sequence": str, "camera": str, "subject": str, "motion": str, "split": str,
                                      "shard": str, "image": str}, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"frame manifest {path} is not a readable CSV ({e})") from None
    missing = [c for c in ("sequence", "camera", "frame") if c not in df.columns]
    if missing:
        raise DataError(f"frame manifest {path} lacks columns {missing}; expected {MANIFEST_COLUMNS}")
    for col, default in _DEFAULTS.items():
        if col not in df.columns:
            df[col] = default
    for col in ("bbox_x", "bbox_y", "bbox_w", "bbox_h"):
        df[col] = pd.to_numeric(df[col].replace("", np.nan), errors="coerce")
    df["frame"] = df["frame"].astype(int)
    df["index"] = pd.to_numeric(df["index"], errors="coerce").fillna(-1).astype(int)
    df["label"] = pd.to_numeric(df["label"], errors="coerce").fillna(-1).astype(int)
    return df[MANIFEST_COLUMNS + [c for c in df.columns if c not in MANIFEST_COLUMNS]]


def _load_shard(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataError(f"shard {path} is missing: re-run the command that generated this frame set to complete it")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"shard {path} is corrupt ({type(e).__name__}: {e}); delete it and re-run the "
                        "generating command to re-create it") from None


class FrameStore:
    """Read access to a frame set. ``load(i)`` returns the frame of manifest row ``i`` as numpy arrays."""

    def __init__(self, root: str | Path, manifest=None, cache_shards: int = 4) -> None:
        self.root = Path(root)
        self.manifest = read_manifest(self.root) if manifest is None else manifest.reset_index(drop=True)
        meta_path = self.root / "meta.json"
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        except json.JSONDecodeError as e:
            raise DataError(f"{meta_path} is not valid JSON ({e})") from None
        self._cache: dict[str, dict[str, np.ndarray]] = {}
        self._cache_size = cache_shards

    def __len__(self) -> int:
        return len(self.manifest)

    def __getstate__(self) -> dict[str, Any]:  # for DataLoader workers: do not ship cached shards
        return {**self.__dict__, "_cache": {}}

    def select(self, **equals: Any) -> FrameStore:
        """A view on the rows whose columns equal the given values, e.g. ``select(split="train")``."""
        df = self.manifest
        mask = np.ones(len(df), dtype=bool)
        for col, value in equals.items():
            if col not in df.columns:
                raise DataError(f"frame manifest has no column {col!r}")
            mask &= (df[col] == value).to_numpy()
        view = FrameStore.__new__(FrameStore)
        view.root, view.meta, view._cache, view._cache_size = self.root, self.meta, {}, self._cache_size
        view.manifest = df[mask].reset_index(drop=True)
        return view

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero((self.manifest["split"] == split).to_numpy())

    def _shard(self, name: str) -> dict[str, np.ndarray]:
        if name not in self._cache:
            if len(self._cache) >= self._cache_size:
                self._cache.pop(next(iter(self._cache)))
            self._cache[name] = _load_shard(self.root / "shards" / name)
        return self._cache[name]

    def load(self, i: int) -> dict[str, np.ndarray]:
        row = self.manifest.iloc[int(i)]
        if row["shard"]:
            shard = self._shard(row["shard"])
            idx = int(row["index"])
            n = len(next(iter(shard.values()))) if shard else 0
            if not 0 <= idx < n:
                raise DataError(f"shard {self.root / 'shards' / row['shard']} has {n} frames, manifest asks for "
                                f"#{idx}: the frame set is inconsistent; re-generate it")
            frame = {k: v[idx] for k, v in shard.items()}
        elif row["image"]:
            frame = {"rgb": _read_image(self.root / row["image"])}
        else:
            raise DataError(f"manifest row {i} of {self.root} names neither a shard nor an image")
        if "bbox" not in frame and not np.isnan(row["bbox_w"]):
            frame["bbox"] = np.array([row["bbox_x"], row["bbox_y"], row["bbox_w"], row["bbox_h"]], np.float32)
        return frame


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError) as e:
        raise DataError(f"cannot read image {path} ({e})") from None


@dataclass
class FrameWriter:
    """Append frames, write npz shards atomically, then the manifest and meta (``close``).

    Resumable: shards already on disk are kept; ``done(shard_id)`` tells a generator which to skip. Rows
    must be added in shard order: frame ``k`` goes to shard ``k // shard_size``.
    """

    root: Path
    meta: Mapping[str, Any] = field(default_factory=dict)
    shard_size: int = 256
    compress: bool = True

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        (self.root / "shards").mkdir(parents=True, exist_ok=True)
        self._rows: list[dict[str, Any]] = []
        self._buffer: list[dict[str, np.ndarray]] = []

    @staticmethod
    def shard_name(shard_id: int) -> str:
        return f"shard-{shard_id:05d}.npz"

    def done(self, shard_id: int) -> bool:
        return (self.root / "shards" / self.shard_name(shard_id)).is_file()

    def add(self, frame: Mapping[str, np.ndarray], row: Mapping[str, Any]) -> None:
        """Add one frame (arrays) and its manifest row (sequence, camera, frame, ... without shard/index)."""
        k = len(self._rows)
        shard_id, index = divmod(k, self.shard_size)
        full = {**_DEFAULTS, **row, "shard": self.shard_name(shard_id), "index": index}
        if "bbox" in frame:
            full.update(zip(("bbox_x", "bbox_y", "bbox_w", "bbox_h"), map(float, frame["bbox"]), strict=True))
        self._rows.append(full)
        self._buffer.append({k_: np.asarray(v) for k_, v in frame.items()})
        if len(self._buffer) == self.shard_size:
            self._flush(shard_id)

    def add_row(self, row: Mapping[str, Any]) -> None:
        """Add a manifest row whose frame lives in an already written shard (when resuming) or an image file."""
        k = len(self._rows)
        shard_id, index = divmod(k, self.shard_size)
        full = {**_DEFAULTS, **row}
        if not full.get("image"):
            full.update(shard=self.shard_name(shard_id), index=index)
        self._rows.append(full)

    def _flush(self, shard_id: int) -> None:
        if not self._buffer:
            return
        keys = self._buffer[0].keys()
        for f in self._buffer:
            if f.keys() != keys:
                raise DataError(f"frames of one shard must have the same keys: {sorted(keys)} vs {sorted(f.keys())}")
        arrays = {k: np.stack([f[k] for f in self._buffer]) for k in keys}
        save = np.savez_compressed if self.compress else np.savez

        def write(p: Path) -> None:
            with open(p, "wb") as fh:
                save(fh, **arrays)

        atomic_write(self.root / "shards" / self.shard_name(shard_id), write)
        self._buffer = []

    def close(self) -> Path:
        import pandas as pd

        if self._buffer:
            self._flush((len(self._rows) - 1) // self.shard_size)
        df = pd.DataFrame(self._rows, columns=MANIFEST_COLUMNS + sorted(
            {k for r in self._rows for k in r} - set(MANIFEST_COLUMNS)))
        atomic_write_json(self.root / "meta.json", dict(self.meta))
        atomic_write_text(self.root / "manifest.csv", df.to_csv(index=False))
        return self.root


class PairSampler:
    """Sample cross-view and cross-pose pairs from a manifest, mixed by ``mix`` (fraction of cross-view).

    ``mix=1`` gives only cross-view pairs, ``mix=0`` only cross-pose pairs. Pairs never cross splits,
    since both frames share a sequence. ``min_gap``/``max_gap`` count steps along the sequence's sorted frame
    indices (module docstring).
    """

    def __init__(self, manifest, mix: float = 0.5, min_gap: int = 2, max_gap: int = 12, seed: int = 0) -> None:
        if not 0.0 <= mix <= 1.0:
            raise DataError(f"pair mix must be in [0, 1] (fraction of cross-view pairs), got {mix}")
        if not 1 <= min_gap <= max_gap:
            raise DataError(f"need 1 <= min_gap <= max_gap, got {min_gap}, {max_gap}")
        self.mix, self.min_gap, self.max_gap, self.seed = mix, min_gap, max_gap, seed
        df = manifest.reset_index(drop=True)
        self.n = len(df)
        seq, cam, frame = df["sequence"].to_numpy(), df["camera"].to_numpy(), df["frame"].to_numpy()
        # cross-view partners: same (sequence, frame), other camera
        by_instant: dict[tuple, list[int]] = {}
        seq_frames: dict[Any, set[int]] = {}
        for i in range(self.n):
            by_instant.setdefault((seq[i], frame[i]), []).append(i)
            seq_frames.setdefault(seq[i], set()).add(int(frame[i]))
        # a frame's step along its sequence's sorted frame indices (all cameras together)
        rank = {s: {f: r for r, f in enumerate(sorted(fs))} for s, fs in seq_frames.items()}
        step = [rank[seq[i]][int(frame[i])] for i in range(self.n)]
        by_track: dict[tuple, dict[int, int]] = {}
        for i in range(self.n):
            by_track.setdefault((seq[i], cam[i]), {})[step[i]] = i
        self.view_partners = [[j for j in by_instant[(seq[i], frame[i])] if j != i] for i in range(self.n)]
        self.pose_partners = []
        for i in range(self.n):
            track, r = by_track[(seq[i], cam[i])], step[i]
            self.pose_partners.append([track[g] for g in sorted(track) if min_gap <= abs(g - r) <= max_gap])
        self.view_anchors = np.array([i for i in range(self.n) if self.view_partners[i]], dtype=np.int64)
        self.pose_anchors = np.array([i for i in range(self.n) if self.pose_partners[i]], dtype=np.int64)
        if mix > 0 and len(self.view_anchors) == 0:
            raise DataError("no cross-view pairs in this frame set (needs >= 2 cameras per sequence and frame); "
                            "use mix=0 (cross-pose only) or more cameras")
        if mix < 1 and len(self.pose_anchors) == 0:
            raise DataError(f"no cross-pose pairs with a frame gap in [{min_gap}, {max_gap}] steps; "
                            "use mix=1 (cross-view only), longer sequences or other gaps")

    def sample(self, rng: np.random.Generator) -> tuple[int, int, str]:
        """One pair ``(i, j, kind)``: ``i`` is the image to complete, ``j`` the reference."""
        kind = "cross_view" if rng.random() < self.mix else "cross_pose"
        anchors, partners = ((self.view_anchors, self.view_partners) if kind == "cross_view"
                             else (self.pose_anchors, self.pose_partners))
        i = int(anchors[rng.integers(len(anchors))])
        cands = partners[i]
        return i, int(cands[rng.integers(len(cands))]), kind


# --- what a synthetic render costs --------------------------------------------------------------------------
# Per frame: a fixed part (SMPL vertices, 6890 x 3 float32, dominate the body's) plus a part per pixel (rgb, mask,
# parts; compressed npz). Measured on the world's shards and, for time, on a 2-core CPU rendering in software
# (llvmpipe) with one process: 128 px body frames take ~33 ms and ~134 KB each, 224 px ones ~42 ms and ~240 KB.
_RENDER_COST = {"body": (86_000, 0.028), "hand": (11_000, 0.013), "objects": (500, 0.014)}  # bytes, seconds
_BYTES_PER_PIXEL, _SECONDS_PER_PIXEL = 3.2, 3e-7
LARGE_RENDER_FRAMES = 20_000  # a render above either limit must be asked for with an explicit frame count
LARGE_RENDER_BYTES = 5e9


@dataclass(frozen=True)
class RenderEstimate:
    """Rough disk size and CPU time of rendering a synthetic frame set (``estimate_render``)."""

    domain: str
    frames: int
    size: int
    bytes: float
    seconds: float
    workers: int

    @property
    def large(self) -> bool:
        return self.frames > LARGE_RENDER_FRAMES or self.bytes > LARGE_RENDER_BYTES

    def describe(self) -> str:
        """``"200,000 body frames at 224 px: ~48 GB on disk, ~2.3 h on 2 CPU cores"``."""
        h = self.seconds / 3600
        when = f"~{h:.1f} h" if h >= 1 else f"~{max(1, round(self.seconds / 60))} min"
        return (f"{self.frames:,} {self.domain} frames at {self.size} px: ~{_gb(self.bytes)} on disk, {when} on "
                f"{self.workers} CPU core{'s' if self.workers > 1 else ''}")


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n < 10e9 else f"{n / 1e9:.0f} GB"


def estimate_render(domain: str, frames: int, size: int, workers: int = 1) -> RenderEstimate:
    """Disk bytes and seconds to render ``frames`` synthetic ``domain`` frames of ``size`` px with ``workers``
    processes (at most the cores this process may use). Within a factor of ~2 on a CPU; a GPU renders faster."""
    if domain not in _RENDER_COST:
        raise DataError(f"unknown synthetic domain {domain!r}; choose one of {', '.join(_RENDER_COST)}")
    fixed_bytes, fixed_s = _RENDER_COST[domain]
    px = size * size
    cores = max(1, min(workers, usable_cpus()))
    return RenderEstimate(domain, int(frames), int(size), frames * (fixed_bytes + _BYTES_PER_PIXEL * px),
                          frames * (fixed_s + _SECONDS_PER_PIXEL * px) / cores, cores)


def check_disk(estimate: RenderEstimate, root: str | Path) -> None:
    """A ``DataError`` when the file system that would hold ``root`` has less free space than the render needs."""
    import shutil

    where = Path(root).absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    if estimate.bytes > free:
        raise DataError(f"rendering {estimate.describe()}, but only {_gb(free)} is free under {where}: free "
                        "space, choose another --out, or render fewer frames")
