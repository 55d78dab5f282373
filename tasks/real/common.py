"""Shared helpers of the real-benchmark adapters: locating a data set, validating parsed arrays, reading json/npz,
and the crop dataset that turns (image path, bbox, targets) into task items.

Every reader raises ``DataError`` with one line naming the file and what is wrong; nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import json
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import DataError
from humans.models import real_model_file
from tasks.base import crop_image, to_tensor_image

GENDER_CODE = {"neutral": 0, "male": 1, "female": 2}
_GENDER_ALIASES = {"m": "male", "male": "male", "f": "female", "female": "female", "n": "neutral", "neutral": "neutral"}


def gender_name(g: Any, source: str) -> str:
    """'m'/'f'/'male'/'female'/'neutral' (str or bytes) -> 'male'|'female'|'neutral'."""
    if isinstance(g, bytes):
        g = g.decode("latin1")
    key = str(g).strip().lower()
    if key not in _GENDER_ALIASES:
        raise DataError(f"{source}: unknown gender {g!r}; expected 'm'/'f' or 'male'/'female'/'neutral'")
    return _GENDER_ALIASES[key]


def dataset_dir(root: Path | None, sub: str, marker: str, hint: str, task: str) -> Path:
    """The directory of one data set: ``root/sub`` (the layout of ``$CPCBENCH_DATA``), or ``root`` itself when it
    already is that data set (it contains ``marker``). Missing -> ``DataError`` with ``hint`` (what/where)."""
    if root is None:
        raise DataError(f"task {task!r} needs its data: pass --data-root DIR or set $CPCBENCH_DATA. {hint}")
    for cand in (root / sub, root):
        if (cand / marker).exists():
            return cand
    raise DataError(f"task {task!r}: no {sub} data under {root} (looked for {root / sub / marker}). {hint}")


def data_status(root: Path | None, sub: str, marker: str, hint: str,
                models: Sequence[tuple[str, str]] = ()) -> dict[str, str]:
    """``cpcbench ls tasks`` status of one data set (cheap: existence checks only); ``hint``: a short "what to get"
    (the full instructions are in the ``DataError`` of ``build_dataset``). ``models``: the (kind, gender)
    real model files the task needs from ``$CPCBENCH_MODELS``; reported as ``models: found|missing``."""
    if root is None:
        return {"data": "missing", "where": f"$CPCBENCH_DATA/{sub} (set --data-root or $CPCBENCH_DATA)", "get": hint}
    for cand in (root / sub, root):
        if (cand / marker).exists():
            status = {"data": "found", "where": str(cand)}
            if models:
                missing = [f"{k} {g}" for k, g in models if real_model_file(k, g) is None]
                status["models"] = f"missing real {', '.join(missing)} in $CPCBENCH_MODELS" if missing else "found"
            return status
    return {"data": "missing", "where": str(root / sub), "get": hint}


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run a small per-item torch computation (one SMPL/MANO forward) on one thread: on a busy machine the default
    thread pool makes it ~10x slower. The previous thread count is restored."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


# ---------------------------------------------------------------------------------------------- validation
def as_array(value: Any, name: str, source: str, shape: Sequence[int | None], dtype: Any = np.float32,
             finite: bool = True) -> np.ndarray:
    """``value`` as an array of ``dtype`` whose shape matches ``shape`` (None = any size), else ``DataError``."""
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise DataError(f"{source}: {name} is not a numeric array ({err})") from err
    if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape, strict=True)):
        want = "x".join("N" if s is None else str(s) for s in shape) or "scalar"
        raise DataError(f"{source}: {name} has shape {arr.shape}, expected {want}")
    if finite and arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise DataError(f"{source}: {name} contains NaN or inf")
    return arr


def require_keys(d: Any, keys: Sequence[str], source: str, what: str) -> None:
    if not isinstance(d, Mapping):
        raise DataError(f"{source}: expected {what} as a dict, got {type(d).__name__}")
    missing = [k for k in keys if k not in d]
    if missing:
        raise DataError(f"{source}: {what} lacks keys {missing} (has {sorted(map(str, d))[:20]}); "
                        "is this the published file?")


def read_json(path: Path) -> Any:
    if not path.is_file():
        raise DataError(f"missing {path}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"cannot parse {path}: not valid JSON ({err}); re-download this file") from err


def read_json_list(path: Path, shape: Sequence[int | None], name: str, n: int | None = None) -> np.ndarray:
    """A FreiHAND-style json list of per-frame arrays -> [N, *shape] float32 (validated)."""
    data = read_json(path)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list with one entry per frame, got {type(data).__name__}")
    arr = as_array(data, name, str(path), (None, *shape))
    if n is not None and arr.shape[0] != n:
        raise DataError(f"{path}: {arr.shape[0]} entries, but the split has {n} frames; files of different "
                        "versions mixed?")
    return arr


def load_npz(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """All arrays of an npz (object arrays refused), checking ``keys`` are present."""
    if not path.is_file():
        raise DataError(f"missing {path}")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):  # np.load would try a .npy or a pickle next
        raise DataError(f"cannot read {path}: not a valid npz (no zip archive); re-download this file")
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    except ValueError as err:
        if "allow_pickle" in str(err) or "pickled" in str(err):  # object arrays need pickle: refuse
            raise DataError(f"refusing {path}: it holds object arrays, which need unpickling ({err})") from err
        raise DataError(f"cannot read {path}: not a valid npz ({err}); re-download this file") from err
    except (OSError, zipfile.BadZipFile, EOFError, zlib.error) as err:
        raise DataError(f"cannot read {path}: not a valid npz ({err}); re-download this file") from err
    missing = [k for k in keys if k not in out]
    if missing:
        raise DataError(f"{path}: missing keys {missing} (has {sorted(out)}); is this the published file?")
    return out


def bbox_from_points(pts: np.ndarray) -> np.ndarray:
    """pts: [K, 2] -> [4] (x, y, w, h) tight box."""
    lo, hi = pts.min(0), pts.max(0)
    return np.array([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]], dtype=np.float32)


def center_scale_to_bbox(center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """SPIN's (center [N, 2], scale [N] = side / 200) -> square boxes [N, 4] (x, y, w, h)."""
    side = np.asarray(scale, np.float32).reshape(-1) * 200.0
    c = np.asarray(center, np.float32).reshape(-1, 2)
    return np.stack([c[:, 0] - side / 2, c[:, 1] - side / 2, side, side], 1).astype(np.float32)


def load_rgb(path: Path) -> np.ndarray:
    """An image file -> uint8 [H, W, 3]; a missing or unreadable file -> ``DataError``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError as err:
        raise DataError(f"missing image {path}; is the image folder of this data set extracted there?") from err
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"cannot read image {path} ({err}); re-extract it") from err


def crop_K(K: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Intrinsics of the crop: the 2x3 image->crop ``affine`` (scale + shift) applied to ``K`` [3, 3]."""
    a = np.vstack([affine, [0.0, 0.0, 1.0]]).astype(np.float32)
    return (a @ K).astype(np.float32)


@dataclass
class BodyFrames:
    """Per-frame SMPL ground truth of a body benchmark (N frames), global orientation in the camera frame.

    images: N paths; bbox: [N, 4] (x, y, w, h) pixels; global_orient: [N, 3]; body_pose: [N, 69];
    betas: [N, 10]; gender: N of 'male'|'female'|'neutral'; K: [N, 3, 3]; sequence: N names; frame: [N] image
    frame index; actor: [N].
    """

    images: list[Path]
    bbox: np.ndarray
    global_orient: np.ndarray
    body_pose: np.ndarray
    betas: np.ndarray
    gender: list[str]
    K: np.ndarray
    sequence: list[str]
    frame: np.ndarray
    actor: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, idx: np.ndarray) -> BodyFrames:
        idx = np.asarray(idx, dtype=np.int64)
        return BodyFrames(images=[self.images[i] for i in idx], bbox=self.bbox[idx],
                          global_orient=self.global_orient[idx], body_pose=self.body_pose[idx],
                          betas=self.betas[idx], gender=[self.gender[i] for i in idx], K=self.K[idx],
                          sequence=[self.sequence[i] for i in idx], frame=self.frame[idx], actor=self.actor[idx])

    @staticmethod
    def empty() -> BodyFrames:
        z = np.zeros
        return BodyFrames([], z((0, 4), np.float32), z((0, 3), np.float32), z((0, 69), np.float32),
                          z((0, 10), np.float32), [], z((0, 3, 3), np.float32), [], z(0, np.int64), z(0, np.int64))

    @staticmethod
    def concat(parts: list[BodyFrames]) -> BodyFrames:
        if not parts:
            raise DataError("no frames")
        return BodyFrames(
            images=[p for f in parts for p in f.images], bbox=np.concatenate([f.bbox for f in parts]),
            global_orient=np.concatenate([f.global_orient for f in parts]),
            body_pose=np.concatenate([f.body_pose for f in parts]), betas=np.concatenate([f.betas for f in parts]),
            gender=[g for f in parts for g in f.gender], K=np.concatenate([f.K for f in parts]),
            sequence=[s for f in parts for s in f.sequence], frame=np.concatenate([f.frame for f in parts]),
            actor=np.concatenate([f.actor for f in parts]))


def rotate_orient(orient: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Axis-angle [N, 3] rotated by R [N, 3, 3] on the left (``R @ Rodrigues(orient)``) -> [N, 3]."""
    from scipy.spatial.transform import Rotation

    return (Rotation.from_matrix(R) * Rotation.from_rotvec(orient)).as_rotvec().astype(np.float32)


# ---------------------------------------------------------------------------------------------- dataset
class ArrayTargets:
    """Per-item targets from arrays indexed by dataset position: ``{name: arrays[name][i]}`` (picklable, so
    DataLoader workers work under any start method)."""

    def __init__(self, arrays: Mapping[str, np.ndarray]) -> None:
        n = {len(v) for v in arrays.values()}
        if len(n) > 1:
            raise ValueError(f"target arrays differ in length: {sorted(n)}")
        self.arrays = dict(arrays)

    def __call__(self, i: int) -> dict[str, Any]:
        return {k: v[i] for k, v in self.arrays.items()}


class CropDataset:
    """A map-style dataset (torch ``Dataset`` protocol) of square person/hand crops with targets.

    images: N image paths; bboxes: [N, 4] (x, y, w, h) or None (whole image); targets(i) -> dict of arrays
    for item i (called lazily, e.g. to run SMPL for the GT mesh). Items: ``image`` [3, S, S] float32
    (ImageNet-normalised), ``bbox`` [4], ``index`` (int64, position in this dataset), ``frame_id`` (int64,
    position in the full split: differs from ``index`` under ``--limit``), ``K`` [3, 3] of the crop when the
    target has ``K``, plus the targets as tensors.
    """

    def __init__(self, images: Sequence[Path], bboxes: np.ndarray | None, img_size: int,
                 targets: Callable[[int], dict[str, Any]], bbox_scale: float = 1.2,
                 frame_ids: np.ndarray | None = None) -> None:
        self.images = list(images)
        self.frame_ids = np.arange(len(self.images)) if frame_ids is None else np.asarray(frame_ids, np.int64)
        if len(self.frame_ids) != len(self.images):
            raise ValueError("frame_ids must have one entry per image")
        self.bboxes = bboxes
        self.img_size = int(img_size)
        self.targets = targets
        self.bbox_scale = bbox_scale

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        if not 0 <= i < len(self.images):
            raise IndexError(i)
        rgb = load_rgb(self.images[i])
        bbox = None if self.bboxes is None else self.bboxes[i]
        crop, affine = crop_image(rgb, bbox, self.img_size, scale=self.bbox_scale)
        item: dict[str, Any] = {"image": to_tensor_image(crop), "index": torch.tensor(i, dtype=torch.int64),
                                "frame_id": torch.tensor(int(self.frame_ids[i]), dtype=torch.int64)}
        h, w = rgb.shape[:2]
        item["bbox"] = torch.as_tensor(np.asarray(bbox if bbox is not None else (0, 0, w, h), np.float32))
        for k, v in self.targets(i).items():
            if k == "K":
                v = crop_K(np.asarray(v, np.float32), affine)
            item[k] = torch.as_tensor(np.asarray(v)) if not isinstance(v, torch.Tensor) else v
        return item


def limit_indices(n: int, limit: int | None) -> np.ndarray:
    """Indices kept by ``--limit``: all, or ``limit`` evenly spread over the split (so that a smoke run still
    sees every sequence / class), always the same ones."""
    if limit is None or limit >= n:
        return np.arange(n)
    if limit <= 0:
        raise DataError(f"--limit must be positive, got {limit}")
    return np.unique(np.linspace(0, n - 1, int(limit)).round().astype(np.int64))
