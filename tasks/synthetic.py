"""The embedded synthetic benchmarks: six tasks on frames rendered by the synthetic human world (``humans.world``).

Each reads a frame set (``humans.frames``: person-centred square crops with RGB, part segmentation, 2D/3D joints,
vertices, model parameters, intrinsics; train and test subjects disjoint by the manifest ``split``) and follows
the conventions of the real benchmark it stands in for:

- ``synth-body-mesh``: model-based body mesh recovery (HMR, Kanazawa et al. CVPR 2018; HMR2.0, Goel et al. ICCV
  2023). MPJPE / PA-MPJPE on the 24 SMPL joints after subtracting joint 0 (3DPW challenge convention, Procrustes
  without reflections), PVE on the root-relative vertices; mm.
- ``synth-body-meshfree``: model-free mesh recovery (METRO, Lin et al. CVPR 2021): PVE, PA-PVE (similarity
  estimated on the vertices, Multi-HMR convention), MPJPE of the joints regressed from the vertices by the
  model's ``J_regressor``; mm.
- ``synth-body-2d``: 2D keypoints; PCK@0.05 and PCK@0.1 of the bbox size (max(w, h), mmpose ``PCKAccuracy``
  with ``norm_item="bbox"``; threshold inclusive), in %.
- ``synth-body-parts``: body-part segmentation; per-image mIoU over the classes (background included, as in
  Pascal-Person-Part / LIP human parsing) that occur in the prediction or the ground truth, in %.
- ``synth-hand-mesh``: hand mesh recovery with the FreiHAND protocol (Zimmermann et al. ICCV 2019): PA-MPJPE on
  21 keypoints and PA-MPVPE on the vertices, each aligned on itself with reflections allowed (``align_w_scale``),
  F@5 mm / F@15 mm of the aligned mesh, AUC of the aligned keypoint PCK over 0-50 mm (100 steps).
- ``synth-hand-gesture``: top-1 accuracy over the gesture classes of the hand articulations (manifest ``label``).

The frame set is the world's default one (``humans.world.ensure_frames``, rendered on first use and cached), or
any frame set directory passed as ``root`` (``--data-root``; tests use tiny ones).

Layout: this module holds the base class, the shared schedule and the 2D, part and gesture tasks; the mesh
tasks (``synth-body-mesh``, ``synth-body-meshfree``, ``synth-hand-mesh``) are in ``tasks.synth_mesh``, the
reading of a frame set into arrays in ``tasks.synth_data``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from core.errors import DataError
from core.registry import TASKS
from humans.frames import FrameStore, read_manifest
from humans.world import ensure_frames
from tasks import heads, metrics
from tasks.base import FinetuneDefaults, MetricSpec, Split, Task
from tasks.protocols import PROTOCOLS, joint_set_names
from tasks.synth_data import FrameArrays, load_frames

#: the embedded frame sets (per domain): frames and seed; rendered at the backbone's input size, so that fine-tuning
#: reads the very frame set `cpcbench pretrain` made (same ensure_frames arguments: 2048 frames, seed 0)
SYNTH_FRAMES: dict[str, dict[str, int]] = {"body": {"frames": 2048, "seed": 0}, "hand": {"frames": 2048, "seed": 0}}
DEFAULT_SIZE = 128
CITE_SYNTH = "cpcbench synthetic human world (humans.world); protocol conventions as cited in tasks/synthetic.py"

# One fine-tuning schedule for every synthetic task, so that backbones are compared under the same budget.
SYNTH_DEFAULTS = FinetuneDefaults(steps=300, batch_size=32, base_lr=2e-3, weight_decay=0.05, layer_decay=0.75,
                                  warmup_steps=20, img_size=64)


# ---------------------------------------------------------------------------------------------- base
class SynthTask(Task):
    """A task on a synthetic frame set (see module docstring)."""

    synthetic: ClassVar[bool] = True
    citation: ClassVar[str] = CITE_SYNTH
    fields: ClassVar[tuple[str, ...]] = ()
    data_hint: ClassVar[str] = ("Embedded: rendered on first use by humans.world (or `cpcbench data synth "
                                "body|hand`); pass --data-root FRAMESET to use another frame set.")

    def __init__(self, root: str | Path | None = None) -> None:
        super().__init__(root)
        # --data-root / $CPCBENCH_DATA applies only when it *is* a frame set (real tasks share that flag)
        if self.root is not None and not (self.root / "manifest.csv").is_file():
            self.root = None
        self._cache: dict[tuple, dict[str, np.ndarray]] = {}
        self._size: int | None = None  # the size of the frame set in use (set by build_dataset)

    def data_status(self) -> dict[str, str]:
        if self.root is not None:
            return {"data": "found", "where": str(self.root)}
        return {"data": "synthetic", "where": f"humans.world default {self.domain} frames (rendered on first use)"}

    def data_info(self) -> dict[str, Any]:
        meta = self.meta()
        return {"frames": str(self.frame_root()), "generator": meta.get("generator", {}),
                "model": meta.get("model"), "source": meta.get("source", "")}

    def frame_root(self, size: int | None = None) -> Path:
        """The frame set: ``root`` if given, else the world's default set rendered at ``size`` (on first use)."""
        if self.root is not None:
            return self.root
        cfg = SYNTH_FRAMES[self.domain]
        return Path(ensure_frames(self.domain, cfg["frames"], size or self._size or DEFAULT_SIZE, cfg["seed"]))

    def arrays(self, split: Split, img_size: int, limit: int | None = None) -> dict[str, np.ndarray]:
        key = (split, img_size, limit)
        if key not in self._cache:
            self._size = self._size or img_size
            root = self.frame_root(img_size)
            domain = self.meta().get("domain")
            if domain not in (None, self.domain):
                raise DataError(f"task {self.name!r} needs a {self.domain} frame set, but {root} holds {domain} frames")
            self._cache[key] = load_frames(root, split, img_size, self.fields, limit)
        return self._cache[key]

    def build_dataset(self, split: Split, img_size: int, limit: int | None = None) -> Dataset:
        if split not in ("train", "test"):
            raise DataError(f"split must be 'train' or 'test', got {split!r}")
        return FrameArrays(self.arrays(split, img_size, limit))

    def meta(self) -> dict[str, Any]:
        return FrameStore(self.frame_root()).meta

    # -- predictions = pred arrays + ground truth arrays
    def ground_truth(self, batch: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def pred_arrays(self, pred: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def predictions(self, pred: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {**self.pred_arrays(pred), **self.ground_truth(batch)}


def crop_units(px: torch.Tensor, size: int) -> torch.Tensor:
    """Pixel coordinates of a ``size`` crop (centres at integers) -> [-1, 1] across the crop."""
    return (px + 0.5) * 2 / size - 1


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy() if t.is_floating_point() else t.detach().cpu().numpy()


# ---------------------------------------------------------------------------------------------- 2D keypoints
@TASKS.register("synth-body-2d")
class SynthBody2D(SynthTask):
    """2D body keypoints on the synthetic world (PCK@0.05 / @0.1 of the bbox size)."""

    name = "synth-body-2d"
    version = "1"
    domain = "body"
    protocol = PROTOCOLS["synth-smpl24-pelvis"]
    fields = ("joints2d", "norm")
    metrics = (MetricSpec("pck05", "%", True, "PCK at 0.05 x max(bbox w, h), inclusive"),
               MetricSpec("pck10", "%", True, "PCK at 0.1 x max(bbox w, h), inclusive"))
    defaults = SYNTH_DEFAULTS

    def build_head(self, backbone_info: Mapping[str, Any]) -> nn.Module:
        dim, prefix, grid, img = heads.check_backbone_info(backbone_info)
        n_joints = len(self.protocol_joints())
        return heads.KeypointHead(dim, prefix, grid, n_joints)

    def protocol_joints(self) -> tuple[str, ...]:
        return joint_set_names(self.protocol.joint_set)

    def loss(self, pred: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        gt = crop_units(batch["joints2d"], batch["image"].shape[-1])
        return {"loss": (pred["kp2d"] - gt).abs().mean()}

    def pred_arrays(self, pred: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {"pred/joints2d": to_numpy(pred["kp2d"])}

    def ground_truth(self, batch: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        """Keypoints and bbox size in crop units ([-1, 1] across the crop): PCK is invariant to that scale."""
        s = batch["image"].shape[-1]
        return {"gt/joints2d": to_numpy(crop_units(batch["joints2d"], s)), "gt/norm": to_numpy(batch["norm"] * 2 / s)}

    def score_arrays(self, a: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        p, g, n = a["pred/joints2d"], a["gt/joints2d"], a["gt/norm"]
        return {"pck05": 100 * metrics.pck(p, g, 0.05, normalize=n, inclusive=True),
                "pck10": 100 * metrics.pck(p, g, 0.1, normalize=n, inclusive=True)}


# ---------------------------------------------------------------------------------------------- parts
@TASKS.register("synth-body-parts")
class SynthBodyParts(SynthTask):
    """Body-part segmentation on the synthetic world (per-image mIoU over the classes present, background included)."""

    name = "synth-body-parts"
    version = "1"
    domain = "body"
    protocol = None
    fields = ("parts",)
    metrics = (MetricSpec("miou", "%", True, "per-image mean IoU over the classes present in prediction or ground "
                                             "truth (background included)"),)
    defaults = SYNTH_DEFAULTS

    def n_classes(self) -> int:
        """Background + the part ids of the frame set (meta ``part_names``, else the largest id in the data)."""
        names = self.meta().get("part_names")
        if isinstance(names, list | tuple) and names:
            return len(names) + (0 if str(names[0]).lower() in ("background", "bg") else 1)
        cached = [v["parts"] for v in self._cache.values() if "parts" in v]
        if not cached:
            cached = [self.arrays("train", 16, limit=64)["parts"]]
        return int(max(int(c.max()) for c in cached)) + 1

    def build_head(self, backbone_info: Mapping[str, Any]) -> nn.Module:
        dim, prefix, grid, img = heads.check_backbone_info(backbone_info)
        return heads.DenseHead(dim, prefix, grid, img, self.n_classes())

    def loss(self, pred: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"loss": F.cross_entropy(pred["logits"].float(), batch["parts"])}

    def pred_arrays(self, pred: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {"pred/parts": to_numpy(pred["logits"].argmax(1)).astype(np.uint8)}

    def ground_truth(self, batch: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {"gt/parts": to_numpy(batch["parts"]).astype(np.uint8)}

    def score_arrays(self, a: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        # per image, IoU averaged over the classes present in its prediction or ground truth (background included,
        # as in Pascal-Person-Part / LIP human parsing); the label range only bounds the classes
        n = int(max(a["pred/parts"].max(), a["gt/parts"].max())) + 1
        return {"miou": 100 * metrics.miou(a["pred/parts"], a["gt/parts"], n, ignore_index=None)}


# ---------------------------------------------------------------------------------------------- gestures
@TASKS.register("synth-hand-gesture")
class SynthHandGesture(SynthTask):
    """Hand gesture classification on the synthetic world (top-1 accuracy over gesture classes)."""

    name = "synth-hand-gesture"
    version = "1"
    domain = "hand"
    protocol = None
    fields = ("label",)
    metrics = (MetricSpec("top1", "%", True, "top-1 accuracy over the gesture classes"),)
    protocols = ("finetune", "linear", "knn")
    knn_target = "label"  # DINO's k-NN votes over the gesture label (``--protocol knn``)
    defaults = SYNTH_DEFAULTS

    def n_classes(self) -> int:
        meta = self.meta()
        names = meta.get("gestures") or meta.get("gesture_names") or meta.get("labels")
        if isinstance(names, list | tuple) and names:
            return len(names)
        labels = read_manifest(self.frame_root())["label"]
        if (labels < 0).all():
            raise DataError(f"frame set {self.frame_root()} has no gesture labels (manifest 'label' is -1)")
        return int(labels.max()) + 1

    def build_head(self, backbone_info: Mapping[str, Any]) -> nn.Module:
        dim, prefix, _, _ = heads.check_backbone_info(backbone_info)
        return heads.ClassHead(dim, prefix, self.n_classes())

    def loss(self, pred: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"loss": F.cross_entropy(pred["logits"].float(), batch["label"])}

    def pred_arrays(self, pred: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {"pred/label": to_numpy(pred["logits"].argmax(1)).astype(np.int64)}

    def ground_truth(self, batch: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {"gt/label": to_numpy(batch["label"]).astype(np.int64)}

    def score_arrays(self, a: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"top1": 100 * metrics.accuracy(a["pred/label"], a["gt/label"])}

