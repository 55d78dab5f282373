"""``imagefolder``: image classification for gesture / grasp data in the torchvision ImageFolder layout::

    <data root>/imagefolder/{train,test}/<class name>/*.jpg|*.jpeg|*.png

(or ``--data-root`` pointing at the folder that holds ``train/`` and ``test/`` directly). Classes are the sorted
sub-folder names of ``train/``; ``test/`` may only use those classes. Each image is resized whole (no person box)
to the input size. Metric: top-1 accuracy (%), per sample 100 or 0. Version 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from core.errors import DataError
from core.registry import TASKS
from tasks.base import FinetuneDefaults, MetricSpec, Task
from tasks.heads import ClassHead, check_backbone_info
from tasks.real.common import ArrayTargets, CropDataset, data_status, limit_indices

IMAGE_EXTS = (".jpg", ".jpeg", ".png")
IF_SPLITS = {"train": ("train",), "test": ("test", "val")}


@dataclass
class FolderSplit:
    """images: N paths; labels: [N] int64 class ids; classes: class names (index = id)."""

    images: list[Path]
    labels: np.ndarray
    classes: list[str]


def read_image_folder(root: Path, split: str, classes: list[str] | None = None) -> FolderSplit:
    """Parse ``root/<split>/<class>/*``; ``classes`` (from the train split) fixes the id of each class name."""
    if split not in IF_SPLITS:
        raise DataError(f"unknown ImageFolder split {split!r}; one of {', '.join(IF_SPLITS)}")
    split_dir = next((root / s for s in IF_SPLITS[split] if (root / s).is_dir()), None)
    if split_dir is None:
        raise DataError(f"no {'/'.join(IF_SPLITS[split])} folder in {root}; expected {root}/{split}/<class>/*.jpg")
    found = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise DataError(f"{split_dir} has no class folders; expected {split_dir}/<class>/*.jpg")
    if classes is None:
        classes = found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(f"{split_dir}: classes {unknown} do not exist in the train split ({', '.join(classes)})")
    images: list[Path] = []
    labels: list[int] = []
    for name in found:
        files = sorted(p for p in (split_dir / name).iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())
        if not files:
            raise DataError(f"class folder {split_dir / name} holds no .jpg/.jpeg/.png images")
        images += files
        labels += [classes.index(name)] * len(files)
    return FolderSplit(images=images, labels=np.asarray(labels, np.int64), classes=list(classes))


@TASKS.register("imagefolder")
class ImageFolderTask(Task):
    """Gesture/grasp classification from an ImageFolder tree (top-1 accuracy)."""

    name: ClassVar[str] = "imagefolder"
    version: ClassVar[str] = "1"
    domain: ClassVar[str] = "hand"
    citation: ClassVar[str] = "torchvision ImageFolder layout; any gesture/grasp data set arranged that way"
    metrics: ClassVar[tuple[MetricSpec, ...]] = (MetricSpec("top1", "%", True, "top-1 accuracy"),)
    defaults: ClassVar[FinetuneDefaults] = FinetuneDefaults(
        steps=1000, batch_size=32, base_lr=1e-3, weight_decay=0.05, layer_decay=0.75, warmup_steps=50, img_size=128)
    data_hint: ClassVar[str] = ("Arrange your gesture/grasp images as $CPCBENCH_DATA/imagefolder/{train,test}/"
                                "<class>/*.jpg (or point --data-root at the folder holding train/ and test/).")

    def _dir(self) -> Path:
        if self.root is None:
            raise DataError(f"task {self.name!r} needs its data: pass --data-root DIR or set $CPCBENCH_DATA. "
                            f"{self.data_hint}")
        for cand in (self.root / "imagefolder", self.root):
            if (cand / "train").is_dir():
                return cand
        raise DataError(f"task {self.name!r}: no train/ folder in {self.root / 'imagefolder'} or {self.root}. "
                        f"{self.data_hint}")

    def data_status(self) -> dict[str, str]:
        return data_status(self.root, "imagefolder", "train", "your images as imagefolder/{train,test}/<class>/*.jpg")

    def classes(self) -> list[str]:
        return read_image_folder(self._dir(), "train").classes

    def build_dataset(self, split: str, img_size: int, limit: int | None = None) -> CropDataset:
        root = self._dir()
        train = read_image_folder(root, "train")
        data = train if split == "train" else read_image_folder(root, split, train.classes)
        idx = limit_indices(len(data.images), limit)
        labels = data.labels[idx]
        return CropDataset([data.images[i] for i in idx], None, img_size,
                           ArrayTargets({"label": labels}), bbox_scale=1.0, frame_ids=idx)

    def build_head(self, backbone_info: Mapping[str, Any]):
        embed_dim, num_prefix, _, _ = check_backbone_info(backbone_info)
        return ClassHead(embed_dim, num_prefix, len(self.classes()))

    def loss(self, pred, batch):
        import torch.nn.functional as F

        return {"loss": F.cross_entropy(pred["logits"].float(), batch["label"].long())}

    def ground_truth(self, batch) -> dict[str, np.ndarray]:
        return {"gt/label": batch["label"].detach().cpu().numpy().astype(np.int64)}

    def predictions(self, pred, batch) -> dict[str, np.ndarray]:
        return {"pred/label": pred["logits"].argmax(-1).detach().cpu().numpy().astype(np.int64),
                **self.ground_truth(batch)}

    def score_arrays(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"top1": 100.0 * (np.asarray(arrays["pred/label"]) == np.asarray(arrays["gt/label"]))}

