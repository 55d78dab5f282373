"""The task contract every benchmark module implements, and the image helpers tasks share.

A task is one benchmark with a fixed protocol (lm-evaluation-harness task metadata; VTAB's fixed
fine-tuning protocol): name, version (bumped whenever preprocessing or metric semantics change),
citation, metric specs (unit, direction), the ``tasks.protocols.Protocol`` that defines its numbers,
default fine-tuning hyperparameters, and five methods:

    task = TASKS.get("synth-body-mesh")(root=None)      # no I/O in __init__
    ds = task.build_dataset("train", img_size=64)        # items: {"image": [3,H,W] float32, ...targets}
    head = task.build_head(backbone_info)                # tokens [B, N, C] -> pred dict
    head = task.build_head(backbone_info, train=train_ds)  # tasks with ``head_from_data``: statistics of train_ds
    task.loss(pred, batch)["loss"]                       # scalar
    task.score(pred, batch)                              # {metric: [B]} per sample, in the metric's unit

``score`` is ``score_arrays(predictions(pred, batch))``: what is saved per sample (``pred/<name>``,
``gt/<name>`` numpy arrays) is exactly what is scored, so ``cpcbench score --task NAME --predictions
FILE.npz`` re-scores a run without a model and gets the same numbers.

Real-benchmark tasks read their data from ``root`` (``--data-root`` or ``$CPCBENCH_DATA``); when it is
missing, ``build_dataset`` raises a ``DataError`` that says what to download and where to put it
(``data_hint``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from core.errors import CpcbenchError, DataError
from humans.frames import IMAGENET_MEAN, IMAGENET_STD

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn
    from torch.utils.data import Dataset

    from tasks.protocols import Protocol

Split = Literal["train", "test"]
DATA_ENV = "CPCBENCH_DATA"


@dataclass(frozen=True)
class MetricSpec:
    """A metric a task reports: ``name`` (key of ``score``), ``unit`` ("mm", "%", "", ...), direction.

    ``subset``: the metric is defined on a subset of the samples only; its per-sample array holds NaN for the
    samples outside the subset, which ``harness.results.summarize`` leaves out (and counts: ``n_per_seed``). Any
    other metric's NaN is an error.

    ``aligned``: the metric is scored after aligning each prediction to its ground truth by a similarity transform
    (PA-MPJPE, PA-PVE, FreiHAND's F-scores and AUC). The rotation no longer counts, so the trivial baseline of such a
    metric is the Procrustes mean pose of the training ground truth (``Task.aligned_baseline_predictions``), not
    the camera-frame mean, which averages bodies facing every way into a shrunken blur."""

    name: str
    unit: str
    higher_is_better: bool
    description: str = ""
    subset: bool = False
    aligned: bool = False


@dataclass(frozen=True)
class FinetuneDefaults:
    """The fine-tuning schedule every backbone gets on a task (``--steps`` etc. override per run).

    base_lr is per 256 samples (the loop scales it by batch_size / 256); layer_decay is the layer-wise LR
    decay of the ``finetune`` protocol (BEiT/MAE fine-tuning); img_size is the benchmark's nominal square input
    resolution (``cpcbench eval`` feeds a backbone at its own input size unless ``--img-size`` says otherwise).
    """

    steps: int
    batch_size: int
    base_lr: float
    weight_decay: float
    layer_decay: float
    warmup_steps: int
    img_size: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Task:
    """Base class of every benchmark. Subclasses set the ClassVars and implement the five methods.

    ``synthetic`` tasks read the embedded synthetic world (no data root needed) and make up the
    ``--task body`` / ``--task hand`` groups of ``cpcbench eval``.
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    domain: ClassVar[Literal["body", "hand"]] = "body"
    citation: ClassVar[str] = ""
    metrics: ClassVar[tuple[MetricSpec, ...]] = ()
    protocol: ClassVar[Protocol | None] = None
    defaults: ClassVar[FinetuneDefaults] = FinetuneDefaults(
        steps=300, batch_size=32, base_lr=1e-3, weight_decay=0.05, layer_decay=0.75, warmup_steps=20, img_size=64)
    data_hint: ClassVar[str] = ""
    synthetic: ClassVar[bool] = False
    #: ``build_head(info, train=...)`` starts the head from statistics of ``train`` (see ``build_head``)
    head_from_data: ClassVar[bool] = False
    #: the metric a sweep or table sorts by (default: the first one)
    primary_metric: ClassVar[str] = ""
    #: display names of the metrics in ``cpcbench score``'s table of a scored submission (default: the names)
    submission_labels: ClassVar[Mapping[str, str]] = {}
    #: the evaluation protocols the task supports (``harness.probe``): ``attentive`` needs ``vector_head(dim)``,
    #: ``knn`` a class label ``knn_target`` (+ ``n_classes``), ``match`` ``match_scores`` and ``match_baseline``
    protocols: ClassVar[tuple[str, ...]] = ("finetune", "linear")
    #: the joints (``pred/<name>``) that the ``aligned`` metrics estimate their similarity transform on
    aligned_on: ClassVar[str] = "joints3d"

    def __init__(self, root: str | Path | None = None) -> None:
        self.root: Path | None = resolve_data_root(root)

    # ------------------------------------------------------------------ metadata
    @classmethod
    def metric(cls, name: str) -> MetricSpec:
        for m in cls.metrics:
            if m.name == name:
                return m
        raise CpcbenchError(f"task {cls.name!r} has no metric {name!r}; it reports "
                            f"{', '.join(m.name for m in cls.metrics)}")

    @classmethod
    def info(cls) -> dict[str, Any]:
        """The ``task`` block of a result record."""
        proto = cls.protocol
        return {
            "name": cls.name, "version": str(cls.version), "domain": cls.domain, "citation": cls.citation,
            "protocol": proto.name if proto is not None else "",
            "protocol_spec": proto.to_dict() if proto is not None else {},
            "defaults": cls.defaults.to_dict(), "synthetic": cls.synthetic,
            "primary_metric": cls.primary_metric or (cls.metrics[0].name if cls.metrics else ""),
        }

    def data_status(self) -> dict[str, str]:
        """``{"data": "found"|"missing", "where": ...}`` for ``cpcbench ls tasks``. Must be cheap: no parsing."""
        if self.synthetic:
            return {"data": "synthetic", "where": "rendered on first use (cpcbench data synth)"}
        if self.root is None:
            return {"data": "missing", "where": f"set --data-root or ${DATA_ENV}; {self.data_hint}"}
        return {"data": "found" if self.root.exists() else "missing", "where": str(self.root)}

    def data_info(self) -> dict[str, Any]:
        """Where the data of a run came from, for the result record (default: ``data_status``)."""
        return dict(self.data_status())

    # ------------------------------------------------------------------ the contract
    def build_dataset(self, split: Split, img_size: int, limit: int | None = None) -> Dataset:
        """A map-style dataset of dict items: ``image`` [3, H, W] float32 (ImageNet-normalised) + targets.

        ``limit`` keeps the first ``limit`` items (smoke runs). Missing data -> ``DataError``.
        """
        raise NotImplementedError

    def build_head(self, backbone_info: Mapping[str, Any]) -> nn.Module:
        """The task head: tokens [B, prefix + N, C] -> pred dict. ``backbone_info`` has embed_dim,
        num_prefix_tokens, grid_size, patch_size, img_size.

        A task whose head starts from statistics of the training data (a mean pose, a mean mesh) sets
        ``head_from_data = True`` and takes ``train``: the very samples the head is trained on (the ``--fraction``
        subset), so no statistic ever comes from samples the run does not train on."""
        raise NotImplementedError

    def loss(self, pred: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"loss": scalar, <parts>: scalar}`` (parts are logged)."""
        raise NotImplementedError

    def predictions(self, pred: Mapping[str, torch.Tensor],
                    batch: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        """Per-sample arrays to save, keys ``pred/<name>`` and ``gt/<name>`` (first axis = sample)."""
        raise NotImplementedError

    def score_arrays(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per-sample metric values ``{metric: [B]}`` (in the metric's unit) from ``predictions`` arrays."""
        raise NotImplementedError

    def score(self, pred: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-sample metric values ``{metric: [B]}``; by construction equal to re-scoring saved predictions."""
        import numpy as np
        import torch

        out = self.score_arrays(self.predictions(pred, batch))
        return {k: torch.as_tensor(np.asarray(v, dtype=np.float64)) for k, v in out.items()}

    def knn_pred(self, scores: torch.Tensor) -> dict[str, torch.Tensor]:
        """The pred dict of the ``knn`` protocol from class vote scores [B, n_classes] (default: as logits)."""
        return {"logits": scores}

    def write_submission(self, preds: Mapping[str, np.ndarray], out_dir: Path) -> Path | None:
        """Write the benchmark's official submission file from saved predictions (None: the task has none)."""
        return None

    def score_submission(self, path: Path) -> dict[str, float | None]:
        """Score a file in the benchmark's official submission format (``cpcbench score``): ``{metric: mean}``
        (None where a metric is undefined for that file). Tasks with such a format override this."""
        raise CpcbenchError(f"task {self.name!r} has no submission format to score; pass the .predictions.npz "
                            "that `cpcbench eval` wrote")

    def ground_truth(self, batch: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray] | None:
        """The ``gt/<name>`` arrays of ``predictions`` alone (used for the trivial baseline), or None."""
        return None

    def baseline_predictions(self, train_gt: Mapping[str, np.ndarray],
                             test_pred: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """A trivial predictor in the shape of ``test_pred``: for each ``pred/<name>`` with a ``gt/<name>`` in the
        training ground truth, the training mean (float targets: the mean pose, mean keypoints) or the per-element
        mode (integer targets: majority class / label map). None when nothing matches."""
        import numpy as np

        out: dict[str, np.ndarray] = {}
        for key, pred in test_pred.items():
            gt = train_gt.get("gt/" + key.split("/", 1)[1])
            if gt is None or gt.shape[1:] != pred.shape[1:]:
                continue
            m = gt.astype(np.float64).mean(0) if gt.dtype.kind == "f" else elementwise_mode(gt)
            out[key] = np.broadcast_to(m, pred.shape).astype(pred.dtype)
        return out or None

    def aligned_baseline_predictions(self, train_gt: Mapping[str, np.ndarray],
                                     test_pred: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """The trivial predictor of the ``aligned`` metrics: ``baseline_predictions`` with ``pred/<aligned_on>`` the
        Procrustes mean of the training joints and every other point array ``[N, V > 3, 3]`` (vertices, other
        joint sets) the mean of the training ones moved by the same per-sample transforms
        (``tasks.procrustes.procrustes_mean``). None when the task has no aligned metric or lacks those joints."""
        import numpy as np

        from tasks.procrustes import procrustes_mean

        anchor = f"pred/{self.aligned_on}"
        base = self.baseline_predictions(train_gt, test_pred)
        joints = train_gt.get(f"gt/{self.aligned_on}")
        if base is None or joints is None or not any(m.aligned for m in self.metrics) or anchor not in base:
            return None
        points = [k for k, p in base.items() if k != anchor and p.ndim == 3 and p.shape[1] > 3 and p.shape[2] == 3
                  and train_gt.get("gt/" + k.split("/", 1)[1]) is not None]
        means = procrustes_mean(joints, *(train_gt["gt/" + k.split("/", 1)[1]] for k in points))
        out = dict(base)
        for key, m in zip([anchor, *points], means, strict=True):
            out[key] = np.broadcast_to(m, test_pred[key].shape).astype(test_pred[key].dtype)
        return out


def elementwise_mode(values: np.ndarray) -> np.ndarray:
    """The most frequent value over the first axis, per element ([N, ...] -> [...]); ties go to the smallest value
    (as ``scipy.stats.mode``, without its second of import time on every evaluation)."""
    import numpy as np

    best = np.zeros(values.shape[1:], dtype=values.dtype)
    best_n = np.full(values.shape[1:], -1, dtype=np.int64)
    for v in np.unique(values):  # ascending: a later value must be strictly more frequent to win
        n = (values == v).sum(0)
        better = n > best_n
        best, best_n = np.where(better, v, best), np.where(better, n, best_n)
    return best


def resolve_data_root(root: str | Path | None) -> Path | None:
    """``root`` if given, else ``$CPCBENCH_DATA``, else None. Never touches the disk."""
    if root is not None and str(root) != "":
        return Path(root).expanduser()
    env = os.environ.get(DATA_ENV, "")
    return Path(env).expanduser() if env else None


# ---------------------------------------------------------------------- image helpers shared by tasks
def square_box(bbox: Any, scale: float = 1.2) -> tuple[float, float, float]:
    """(cx, cy, side) of the square crop around ``bbox`` = (x, y, w, h), enlarged by ``scale``."""
    x, y, w, h = (float(v) for v in bbox)
    return x + w / 2, y + h / 2, max(w, h, 1.0) * scale


def crop_affine(bbox: Any, img_size: int, scale: float = 1.2) -> np.ndarray:
    """The 2x3 affine that maps image pixels into the ``img_size`` square crop around ``bbox``."""
    import numpy as np

    cx, cy, side = square_box(bbox, scale)
    s = img_size / side
    return np.array([[s, 0.0, img_size / 2 - s * cx], [0.0, s, img_size / 2 - s * cy]], dtype=np.float32)


def crop_image(rgb: np.ndarray, bbox: Any | None, img_size: int, scale: float = 1.2,
               resample: str = "bilinear") -> tuple[np.ndarray, np.ndarray]:
    """Crop a square around ``bbox`` (whole image when None) and resize to ``img_size``.

    rgb: [H, W, C] uint8 (or [H, W] label map with ``resample="nearest"``). Returns (crop [S, S, C],
    affine [2, 3] image -> crop pixels). Out-of-image areas are zero.
    """
    import numpy as np
    from PIL import Image

    h, w = rgb.shape[:2]
    if bbox is None:
        bbox = (0.0, 0.0, float(w), float(h))
        scale = 1.0
    a = crop_affine(bbox, img_size, scale)
    inv = np.linalg.inv(np.vstack([a, [0, 0, 1]]))[:2]  # crop -> image, what PIL's AFFINE wants
    method = {"bilinear": Image.BILINEAR, "nearest": Image.NEAREST}[resample]
    img = Image.fromarray(rgb)
    out = img.transform((img_size, img_size), Image.AFFINE, data=tuple(inv.ravel()), resample=method)
    return np.asarray(out), a


def to_tensor_image(rgb: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] -> float32 [3, H, W], normalised with ``humans.frames.IMAGENET_MEAN/STD``."""
    import numpy as np
    import torch

    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise DataError(f"expected an RGB image [H, W, 3], got shape {rgb.shape}")
    x = rgb.astype(np.float32) / 255.0
    x = (x - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))
