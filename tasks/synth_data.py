"""Frame sets read for the embedded synthetic tasks (``tasks.synthetic``): one split of a frame set
(``humans.frames``) resized into in-memory arrays, and the dataset that serves them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from core.errors import DataError
from humans.frames import FrameStore
from tasks.base import Split, to_tensor_image


class FrameArrays(Dataset):
    """A preprocessed split held in memory: ``image`` uint8 [N, S, S, 3] and per-frame targets [N, ...].

    Items: ``{"image": [3, S, S] float32 (ImageNet-normalised), "index": int64, <target>: tensor}``.
    """

    def __init__(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.arrays = dict(arrays)
        self.n = len(self.arrays["image"])

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = {"image": to_tensor_image(self.arrays["image"][i]), "index": torch.tensor(i)}
        for k, v in self.arrays.items():
            if k != "image":
                item[k] = torch.from_numpy(np.asarray(v[i]))
        return item


def dataset_arrays(ds: Dataset, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """``keys`` of every sample of ``ds`` as arrays [N, ...]: a ``FrameArrays`` or a (nested) ``Subset`` of one is
    sliced without decoding images; any other dataset is read item by item."""
    idx: np.ndarray | None = None
    while isinstance(ds, Subset):
        sub = np.asarray(ds.indices, dtype=np.int64)
        idx = sub if idx is None else sub[idx]
        ds = ds.dataset
    if isinstance(ds, FrameArrays):
        missing = [k for k in keys if k not in ds.arrays]
        if missing:
            raise DataError(f"the training data lack {missing}: cannot compute the head's starting statistics")
        return {k: ds.arrays[k] if idx is None else ds.arrays[k][idx] for k in keys}
    items = [ds[int(i)] for i in (range(len(ds)) if idx is None else idx)]
    if not items:
        raise DataError("the training data are empty: no statistics for the head's start")
    return {k: np.stack([np.asarray(it[k]) for it in items]) for k in keys}


def _resize(img: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    if img.shape[0] == size and img.shape[1] == size:
        return img
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((size, size), Image.NEAREST if nearest else Image.BILINEAR))


def load_frames(root: Path, split: Split, img_size: int, fields: tuple[str, ...],
                limit: int | None = None) -> dict[str, np.ndarray]:
    """Read one split of a frame set into arrays, resizing the (square, person-centred) crops to ``img_size``.

    fields: any of ``joints3d`` / ``verts`` (root-relative to joint 0, metres), ``root`` [3], ``K`` (of the resized
    crop), ``joints2d`` (pixels of the resized crop), ``norm`` (bbox size max(w, h) in those pixels), ``parts``,
    ``label``, ``rotmat`` (camera-frame joint rotations [J, 3, 3]), ``betas``, ``mask`` (person mask [S, S] uint8,
    nearest resize), ``depth`` (per-pixel camera z in metres of the nearest vertex projecting into the pixel, on the
    resized crop; 0 where no vertex projects or the mask is off; ``depth_map``).
    """
    store = FrameStore(root)
    idx = store.indices(split)
    if limit is not None:
        idx = idx[:limit]
    if len(idx) == 0:
        raise DataError(f"frame set {root} has no {split!r} frames; a task needs train and test subjects "
                        "(regenerate it with `cpcbench data synth`)")
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("image", *fields)}
    for i in idx:
        fr = store.load(int(i))
        rgb = fr.get("rgb")
        if rgb is None:
            raise DataError(f"frame set {root}: frame {i} has no 'rgb'")
        s = img_size / rgb.shape[1]
        out["image"].append(_resize(rgb, img_size))
        need = {"joints3d", "verts", "root"} & set(fields)
        if need and "joints3d" not in fr:
            raise DataError(f"frame set {root}: frame {i} lacks 'joints3d' needed by this task")
        root_j = fr["joints3d"][0] if need else None
        for f in fields:
            if f == "joints3d":
                out[f].append(fr["joints3d"] - root_j)
            elif f == "verts":
                out[f].append(_need(fr, "verts", root, i) - root_j)
            elif f == "root":
                out[f].append(root_j)
            elif f == "K":
                k = _need(fr, "K", root, i).astype(np.float32).copy()
                k[:2, :2] *= s  # pixel centres at integer coordinates (OpenCV) before and after resizing
                k[:2, 2] = (k[:2, 2] + 0.5) * s - 0.5
                out[f].append(k)
            elif f == "joints2d":
                out[f].append((_need(fr, "joints2d", root, i) + 0.5) * s - 0.5)
            elif f == "norm":
                bbox = _need(fr, "bbox", root, i)
                out[f].append(np.float32(max(bbox[2], bbox[3]) * s))
            elif f == "parts":
                out[f].append(_resize(_need(fr, "parts", root, i), img_size, nearest=True).astype(np.int64))
            elif f == "label":
                out[f].append(np.int64(store.manifest.iloc[int(i)]["label"]))
            elif f == "rotmat":
                out[f].append(_camera_rotmats(fr, root, i))
            elif f == "betas":
                out[f].append(_need(fr, "betas", root, i)[:10])
            elif f == "mask":
                out[f].append((_resize(_need(fr, "mask", root, i), img_size, nearest=True) > 0).astype(np.uint8))
            elif f == "depth":
                mask = _resize(_need(fr, "mask", root, i), img_size, nearest=True) > 0
                k = _need(fr, "K", root, i).astype(np.float64).copy()
                k[:2, :2] *= s
                k[:2, 2] = (k[:2, 2] + 0.5) * s - 0.5
                out[f].append(depth_map(_need(fr, "verts", root, i), k, img_size) * mask)
            else:
                raise ValueError(f"unknown field {f!r}")
    arrays = {k: np.stack(v) for k, v in out.items()}
    for k, v in arrays.items():
        if v.dtype.kind == "f":
            arrays[k] = v.astype(np.float32)
            if not np.isfinite(arrays[k]).all():
                raise DataError(f"frame set {root}: non-finite values in {k!r}; regenerate it")
    return arrays


def depth_map(verts_cam: np.ndarray, K: np.ndarray, size: int) -> np.ndarray:
    """Z-buffered vertex splat: [V, 3] camera-frame vertices (z forward, metres), [3, 3] intrinsics of a ``size`` px
    crop -> [size, size] float32, the smallest z of the vertices whose projection rounds to each pixel (pixel
    centres at integers), 0 where none does."""
    v = np.asarray(verts_cam, np.float64)
    v = v[v[:, 2] > 1e-6]
    uv = v @ np.asarray(K, np.float64).T
    px = np.round(uv[:, :2] / uv[:, 2:3]).astype(np.int64)
    ok = ((px >= 0) & (px < size)).all(1)
    z = np.full(size * size, np.inf)
    np.minimum.at(z, px[ok, 1] * size + px[ok, 0], v[ok, 2])
    z[~np.isfinite(z)] = 0.0
    return z.reshape(size, size).astype(np.float32)


def _need(fr: Mapping[str, np.ndarray], key: str, root: Path, i: int) -> np.ndarray:
    if key not in fr:
        raise DataError(f"frame set {root}: frame {i} lacks {key!r} (has {sorted(fr)}); regenerate it with "
                        "`cpcbench data synth`")
    return np.asarray(fr[key])


def _camera_rotmats(fr: Mapping[str, np.ndarray], root: Path, i: int) -> np.ndarray:
    """Joint rotations [J, 3, 3] with the root orientation in camera coordinates (world->camera applied)."""
    from scipy.spatial.transform import Rotation

    go = _need(fr, "global_orient", root, i).reshape(3)
    pose = fr["body_pose"] if "body_pose" in fr else _need(fr, "hand_pose", root, i)
    aa = np.concatenate([go[None], np.asarray(pose).reshape(-1, 3)])
    mats = Rotation.from_rotvec(aa).as_matrix()
    if "extrinsics" in fr:
        mats[0] = np.asarray(fr["extrinsics"])[:3, :3] @ mats[0]
    return mats.astype(np.float32)
