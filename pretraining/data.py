"""Pretraining data sets over a frame set (``humans.frames``): pairs for CPC, single images for MAE,
multi-crop views for DINO, labelled images for supervised classification (frame set or ImageFolder).

Every item is deterministic given (seed, epoch, index): all its randomness comes from
``np.random.default_rng([seed, epoch, index])`` (the loop's contract for exact resume with any number of
workers). Images are float32 [3, S, S], ImageNet-normalised (``humans.frames.IMAGENET_MEAN/STD``).

Masked objectives (cpc, mae) get ``mask_noise``: [N] uniform draws (one per patch of the backbone's
``patch_size``) from which the objective builds the item's patch mask, so that masks are part of this
deterministic data too.

Crops (CroCo-Man: person-centred crops of both images of a pair): a square of side
``crop_scale * max(bbox_w, bbox_h) * U(1 - jitter_scale, 1 + jitter_scale)`` centred on the person's box
centre shifted by ``U(-jitter_shift, jitter_shift) * side`` on each axis, resized (antialiased) to S;
outside the frame is black. Each image of a pair gets its own jitter and colour jitter (CroCo's asymmetric
``acolor``: brightness, contrast, saturation factors in [1 - color_jitter, 1 + color_jitter], hue 0);
pairs are never flipped (a flip would break the geometry between the views). Frames without a box use the
whole image.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from core.errors import DataError
from humans.frames import IMAGENET_MEAN, IMAGENET_STD, PAIR_KINDS, FrameStore, PairSampler

log = logging.getLogger("cpcbench.data")


@dataclass(frozen=True)
class DataConfig:
    """Where pretraining data comes from and how it is augmented."""

    source: str = "synth"  # synth | a frame-set directory | (supervised) an ImageFolder root
    synth_frames: int = 2048  # frames of the generated synthetic set (train + test)
    synth_seed: int = 0
    synth_workers: int = 2  # rendering processes when the synthetic set must be generated
    pair_mix: float = 0.5  # fraction of cross-view pairs (the rest cross-pose)
    min_gap: int = 2  # cross-pose gap range, in steps along a sequence's sorted frames
    max_gap: int = 12
    crop_scale: float = 1.2  # crop side / longest side of the person box
    jitter_scale: float = 0.15
    jitter_shift: float = 0.1
    color_jitter: float = 0.4  # CroCo: (0.6, 1.4)
    flip: bool = True  # single images only; pairs are never flipped
    eval_items: int = 64  # held-out items (test split) for the held-out loss


class _Epoch(Dataset):
    seed: int
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(index)])


def _normalize(img: torch.Tensor) -> torch.Tensor:
    """[3, S, S] float in [0, 1] -> ImageNet-normalised."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (img - mean) / std


def _color_jitter(img: torch.Tensor, rng: np.random.Generator, strength: float) -> torch.Tensor:
    """Brightness, contrast, saturation with factors in [1 - s, 1 + s] (img [3, S, S] in [0, 1])."""
    if strength <= 0:
        return img
    b, c, s = rng.uniform(1 - strength, 1 + strength, size=3)
    img = (img * b).clamp(0, 1)
    gray = (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2])
    img = ((img - gray.mean()) * c + gray.mean()).clamp(0, 1)
    gray = (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2])[None]
    return ((img - gray) * s + gray).clamp(0, 1)


def _mask_noise(rng: np.random.Generator, size: int, patch: int) -> torch.Tensor:
    """[N] uniform draws from which the objective builds this item's patch mask (``mask_for``): the mask is
    then part of the deterministic data, the same with any number of workers or DDP ranks."""
    return torch.from_numpy(rng.random((size // patch) ** 2).astype(np.float32))


def _box(frame: dict[str, np.ndarray]) -> tuple[float, float, float]:
    """(centre x, centre y, longest side) of the person box, or of the whole image without one."""
    h, w = frame["rgb"].shape[:2]
    bbox = frame.get("bbox")
    if bbox is None or not np.all(np.isfinite(bbox)) or bbox[2] <= 0 or bbox[3] <= 0:
        return w / 2, h / 2, float(max(h, w))
    x, y, bw, bh = (float(v) for v in bbox)
    return x + bw / 2, y + bh / 2, max(bw, bh)


def crop(frame: dict[str, np.ndarray], cx: float, cy: float, side: float, size: int,
         want_person: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Square crop (centre, side in pixels) resized to ``size``: (rgb [3, S, S] in [0, 1], person [S, S] or None).

    The person map is the frame's ``mask`` (1 = person) or, without one, its bbox as a filled box.
    """
    from torchvision.transforms.v2 import functional as F

    rgb = frame.get("rgb")
    if rgb is None or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise DataError(f"frame has no RGB image of shape [H, W, 3] (got keys {sorted(frame)})")
    top, left, s = int(round(cy - side / 2)), int(round(cx - side / 2)), max(int(round(side)), 1)
    img = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)
    out = F.resized_crop(img, top, left, s, s, [size, size], antialias=True).float() / 255.0
    person = None
    if want_person:
        if "mask" in frame:
            m = torch.from_numpy(np.ascontiguousarray(frame["mask"]).astype(np.uint8))[None]
        else:
            x, y, bw, bh = _box_xywh(frame)
            m = torch.zeros(1, *rgb.shape[:2], dtype=torch.uint8)
            m[:, max(int(y), 0):max(int(y + bh), 0), max(int(x), 0):max(int(x + bw), 0)] = 1
        person = F.resized_crop(m, top, left, s, s, [size, size],
                                interpolation=F.InterpolationMode.NEAREST)[0].float().clamp(0, 1)
    return out, person


def _box_xywh(frame: dict[str, np.ndarray]) -> tuple[float, float, float, float]:
    bbox = frame.get("bbox")
    if bbox is None or not np.all(np.isfinite(bbox)):
        h, w = frame["rgb"].shape[:2]
        return 0.0, 0.0, float(w), float(h)
    return tuple(float(v) for v in bbox)  # type: ignore[return-value]


def jittered_crop(frame: dict[str, np.ndarray], cfg: DataConfig, size: int, rng: np.random.Generator,
                  want_person: bool = False, context: float = 1.0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Person-centred square crop with scale/shift jitter (see module docstring)."""
    cx, cy, longest = _box(frame)
    side = cfg.crop_scale * context * longest * rng.uniform(1 - cfg.jitter_scale, 1 + cfg.jitter_scale)
    dx, dy = rng.uniform(-cfg.jitter_shift, cfg.jitter_shift, size=2) * side
    return crop(frame, cx + dx, cy + dy, side, size, want_person)


class PairDataset(_Epoch):
    """CPC pairs: {img1, img2: [3, S, S], kind: long (index in PAIR_KINDS), person1: [S, S]}.

    Item ``index`` draws one pair from the ``PairSampler`` with its own rng; ``len`` = number of frames.
    """

    def __init__(self, store: FrameStore, cfg: DataConfig, img_size: int, seed: int = 0, patch_size: int = 16) -> None:
        if len(store) == 0:
            raise DataError(f"no frames for pretraining pairs in {store.root}")
        self.store, self.cfg, self.size, self.seed, self.patch = store, cfg, img_size, seed, patch_size
        self.sampler = PairSampler(store.manifest, mix=cfg.pair_mix, min_gap=cfg.min_gap, max_gap=cfg.max_gap,
                                   seed=seed)

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = self.rng(index)
        i, j, kind = self.sampler.sample(rng)
        img1, person1 = jittered_crop(self.store.load(i), self.cfg, self.size, rng, want_person=True)
        img2, _ = jittered_crop(self.store.load(j), self.cfg, self.size, rng)
        img1 = _color_jitter(img1, rng, self.cfg.color_jitter)
        img2 = _color_jitter(img2, rng, self.cfg.color_jitter)
        return {"img1": _normalize(img1), "img2": _normalize(img2), "kind": PAIR_KINDS.index(kind),
                "person1": person1, "mask_noise": _mask_noise(rng, self.size, self.patch)}


class ImageDataset(_Epoch):
    """Single person-centred images for MAE: {image: [3, S, S], person: [S, S]}; random horizontal flip."""

    def __init__(self, store: FrameStore, cfg: DataConfig, img_size: int, seed: int = 0, patch_size: int = 16) -> None:
        if len(store) == 0:
            raise DataError(f"no frames for pretraining in {store.root}")
        self.store, self.cfg, self.size, self.seed, self.patch = store, cfg, img_size, seed, patch_size

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = self.rng(index)
        img, person = jittered_crop(self.store.load(index), self.cfg, self.size, rng, want_person=True)
        if self.cfg.flip and rng.random() < 0.5:
            img, person = img.flip(-1), person.flip(-1)
        return {"image": _normalize(_color_jitter(img, rng, self.cfg.color_jitter)), "person": person,
                "mask_noise": _mask_noise(rng, self.size, self.patch)}


def random_resized_box(rng: np.random.Generator, scale: tuple[float, float],
                       ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[float, float, float, float]:
    """A box (x0, y0, w, h) in unit coordinates with area fraction in ``scale`` and log-uniform aspect ``ratio``
    (torchvision's RandomResizedCrop, falling back to the full square after 10 tries)."""
    for _ in range(10):
        area = rng.uniform(*scale)
        r = float(np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]))))
        w, h = np.sqrt(area * r), np.sqrt(area / r)
        if w <= 1 and h <= 1:
            return float(rng.uniform(0, 1 - w)), float(rng.uniform(0, 1 - h)), float(w), float(h)
    return 0.0, 0.0, 1.0, 1.0


class MultiCropDataset(_Epoch):
    """DINO views of one person-centred region: {global: [2, 3, G, G], local: [L, 3, l, l]} (DINO multi-crop:
    RandomResizedCrop with ``global_scale`` / ``local_scale``, flip, colour jitter per view)."""

    def __init__(self, store: FrameStore, cfg: DataConfig, img_size: int, local_size: int, local_crops: int,
                 global_scale: tuple[float, float], local_scale: tuple[float, float], seed: int = 0) -> None:
        if len(store) == 0:
            raise DataError(f"no frames for pretraining in {store.root}")
        self.store, self.cfg, self.size, self.seed = store, cfg, img_size, seed
        self.local_size, self.local_crops = local_size, local_crops
        self.global_scale, self.local_scale = tuple(global_scale), tuple(local_scale)

    def __len__(self) -> int:
        return len(self.store)

    def _view(self, region: torch.Tensor, rng: np.random.Generator, scale: tuple[float, float],
              size: int) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as F

        n = region.shape[-1]
        x0, y0, w, h = random_resized_box(rng, scale)
        v = F.resized_crop(region, int(y0 * n), int(x0 * n), max(int(h * n), 1), max(int(w * n), 1), [size, size],
                           antialias=True)
        if self.cfg.flip and rng.random() < 0.5:
            v = v.flip(-1)
        return _normalize(_color_jitter(v, rng, self.cfg.color_jitter))

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = self.rng(index)
        frame = self.store.load(index)
        region, _ = jittered_crop(frame, self.cfg, 2 * self.size, rng)  # supersampled so crops stay sharp
        out = {"global": torch.stack([self._view(region, rng, self.global_scale, self.size) for _ in range(2)])}
        if self.local_crops:
            out["local"] = torch.stack([self._view(region, rng, self.local_scale, self.local_size)
                                        for _ in range(self.local_crops)])
        return out


class LabelledFrames(_Epoch):
    """Supervised classification over a frame set with ``label`` >= 0: {image: [3, S, S], label: long}."""

    def __init__(self, store: FrameStore, cfg: DataConfig, img_size: int, seed: int = 0,
                 num_classes: int | None = None) -> None:
        labels = store.manifest["label"].to_numpy()
        keep = np.flatnonzero(labels >= 0)
        if len(keep) == 0:
            raise DataError(f"frame set {store.root} has no labelled frames (label >= 0) for supervised pretraining; "
                            "use the synth-objects frames or an ImageFolder root (--data DIR)")
        self.store, self.cfg, self.size, self.seed = store, cfg, img_size, seed
        self.rows, self.labels = keep, labels[keep]
        self.num_classes = num_classes or int(labels.max()) + 1

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = self.rng(index)
        img, _ = jittered_crop(self.store.load(int(self.rows[index])), self.cfg, self.size, rng)
        if self.cfg.flip and rng.random() < 0.5:
            img = img.flip(-1)
        return {"image": _normalize(_color_jitter(img, rng, self.cfg.color_jitter)),
                "label": int(self.labels[index])}


class ImageFolderData(_Epoch):
    """Supervised classification over an ImageFolder root (``root/<class>/<image>``), e.g. ImageNet's train set:
    RandomResizedCrop(scale 0.08-1) + flip + colour jitter, {image, label}."""

    def __init__(self, root: str | Path, img_size: int, cfg: DataConfig, seed: int = 0) -> None:
        from torchvision.datasets import ImageFolder

        root = Path(root)
        if not root.is_dir():
            raise DataError(f"ImageFolder root {root} does not exist")
        try:
            self.folder = ImageFolder(str(root))
        except (FileNotFoundError, RuntimeError) as e:
            raise DataError(f"{root} is not an ImageFolder (root/<class>/<image>): {e}") from None
        self.cfg, self.size, self.seed = cfg, img_size, seed
        self.num_classes = len(self.folder.classes)

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int) -> dict[str, Any]:
        from torchvision.transforms.v2 import functional as F

        rng = self.rng(index)
        path, label = self.folder.samples[index]
        img = torch.from_numpy(np.asarray(self.folder.loader(path).convert("RGB")).copy()).permute(2, 0, 1)
        h, w = img.shape[1:]
        x0, y0, bw, bh = random_resized_box(rng, (0.08, 1.0))
        img = F.resized_crop(img, int(y0 * h), int(x0 * w), max(int(bh * h), 1), max(int(bw * w), 1),
                             [self.size, self.size], antialias=True).float() / 255.0
        if self.cfg.flip and rng.random() < 0.5:
            img = img.flip(-1)
        return {"image": _normalize(_color_jitter(img, rng, self.cfg.color_jitter)), "label": int(label)}


def open_frames(source: str, domain: str, cfg: DataConfig, img_size: int) -> FrameStore:
    """The frame set to pretrain on: the generated synthetic world (``synth``) or a frame-set directory."""
    if source == "synth":
        from humans.world import ensure_frames

        root = ensure_frames(domain, cfg.synth_frames, img_size, cfg.synth_seed, workers=cfg.synth_workers)
    else:
        root = Path(source)
        if not (root / "manifest.csv").is_file():
            raise DataError(f"{root} is not a frame set (no manifest.csv): pass --data synth or a directory written "
                            "by `cpcbench data synth ...` / a converter")
    store = FrameStore(root)
    have = store.meta.get("domain")
    if have and have != domain:
        log.warning("pretraining for the %s domain on %s, a %s frame set (meta.json domain): the weights will be "
                    "registered and tabled as %s weights", domain, root, have, domain)
    return store


class CachedFrames:
    """Read-through, in-memory cache of a few keys of every frame (``rgb``, ``mask``, ``bbox`` by default).

    Pretraining samples frames at random, across shards; a shard is decompressed once, when one of its
    frames is first asked for, and all of its frames are kept (only the listed keys: ~65 KB per 128 px frame).
    """

    def __init__(self, store: FrameStore, keys: tuple[str, ...] = ("rgb", "mask", "bbox")) -> None:
        self.store, self.keys = store, keys
        self.root, self.manifest = store.root, store.manifest
        self._frames: dict[int, dict[str, np.ndarray]] = {}
        shards = store.manifest["shard"].to_numpy()
        self._by_shard: dict[str, list[int]] = {}
        for i, s in enumerate(shards):
            self._by_shard.setdefault(str(s), []).append(i)
        self._shard_of = shards

    def __len__(self) -> int:
        return len(self.store)

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers start with an empty cache
        return {**self.__dict__, "_frames": {}}

    def load(self, i: int) -> dict[str, np.ndarray]:
        i = int(i)
        if i not in self._frames:
            shard = str(self._shard_of[i])
            group = self._by_shard[shard] if shard else [i]
            for k in group:
                f = self.store.load(k)
                self._frames[k] = {key: f[key] for key in self.keys if key in f}
        return self._frames[i]
