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
"""

from __future__ import annotations

import logging
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
from tasks import heads, metrics
from tasks.base import FinetuneDefaults, MetricSpec, Split, Task, to_tensor_image
from tasks.protocols import PROTOCOLS
from tasks.real.freihand import HAND_METRICS, hand_array_scores

log = logging.getLogger("cpcbench.tasks")

#: the embedded frame sets (per domain): frames and seed; rendered at the backbone's input size, so that fine-tuning
#: reads the very frame set `cpcbench pretrain` made (same ensure_frames arguments: 2048 frames, seed 0)
SYNTH_FRAMES: dict[str, dict[str, int]] = {"body": {"frames": 2048, "seed": 0}, "hand": {"frames": 2048, "seed": 0}}
DEFAULT_SIZE = 128
CITE_SYNTH = "cpcbench synthetic human world (humans.world); protocol conventions as cited in tasks/synthetic.py"


# ---------------------------------------------------------------------------------------------- data
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
    from torch.utils.data import Subset

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
    ``label``, ``rotmat`` (camera-frame joint rotations [J, 3, 3]), ``betas``.
    """
    from humans.frames import FrameStore

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
            else:
                raise ValueError(f"unknown field {f!r}")
    arrays = {k: np.stack(v) for k, v in out.items()}
    for k, v in arrays.items():
        if v.dtype.kind == "f":
            arrays[k] = v.astype(np.float32)
            if not np.isfinite(arrays[k]).all():
                raise DataError(f"frame set {root}: non-finite values in {k!r}; regenerate it")
    return arrays


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
        from humans.world import ensure_frames

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
        from humans.frames import FrameStore

        return FrameStore(self.frame_root()).meta

    # -- predictions = pred arrays + ground truth arrays
    def ground_truth(self, batch: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def pred_arrays(self, pred: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def predictions(self, pred: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {**self.pred_arrays(pred), **self.ground_truth(batch)}


def _crop_units(px: torch.Tensor, size: int) -> torch.Tensor:
    """Pixel coordinates of a ``size`` crop (centres at integers) -> [-1, 1] across the crop."""
    return (px + 0.5) * 2 / size - 1


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy() if t.is_floating_point() else t.detach().cpu().numpy()


# ---------------------------------------------------------------------------------------------- mesh (bodies, hands)
class MeshTask(SynthTask):
    """Root-relative 3D joints and vertices; model-based or model-free head.

    Loss (metres, L1 as in HMR2.0's keypoint losses): joints + vertices; the model-based head adds its parameter
    losses (rotation matrices and betas, MSE) and a 2D keypoint loss through its weak-perspective camera (crop
    coordinates in [-1, 1]), with small weights.
    """

    fields: ClassVar[tuple[str, ...]] = ("joints3d", "verts", "root", "K", "rotmat", "betas", "joints2d")
    model_based: ClassVar[bool] = True
    head_from_data: ClassVar[bool] = True
    pool: ClassVar[str] = "mean"  # how the model-based head reads the tokens: "mean" (HMR) or "attn" (HMR2.0)
    w_rotmat: ClassVar[float] = 0.1
    w_root: ClassVar[float] = 0.0
    w_betas: ClassVar[float] = 0.001
    w_2d: ClassVar[float] = 0.05

    def _kind(self) -> str:
        return "smpl" if self.domain == "body" else "mano"

    def build_dataset(self, split: Split, img_size: int, limit: int | None = None) -> Dataset:
        ds = super().build_dataset(split, img_size, limit)
        self.check_model(self.arrays(split, img_size, limit))
        return ds

    def check_model(self, a: Mapping[str, np.ndarray], n: int = 4, tol: float = 0.005) -> None:
        """The frames' parameters must decode (through the body/hand model in use) to their stored vertices: a
        frame set rendered with another model version would give silently wrong mesh targets and metrics."""
        with torch.no_grad():
            verts, joints = heads.ModelDecoder(self._kind())(torch.from_numpy(a["rotmat"][:n]),
                                                             torch.from_numpy(a["betas"][:n]))
        err = float((verts - joints[:, :1] - torch.from_numpy(a["verts"][:n])).norm(dim=-1).max())
        if err > tol:
            raise DataError(f"frame set {self.frame_root()} was rendered with another {self._kind().upper()} model "
                            f"(its parameters decode to vertices up to {err * 1000:.0f} mm away from the stored ones): "
                            "delete it and re-render with `cpcbench data synth`, or pass a matching frame set")

    def init_params(self, train: Dataset | None) -> dict[str, torch.Tensor]:
        """Mean parameters (rotations, betas, camera) of ``train``, the samples the head trains on; {} without."""
        if train is None:
            return {}
        a = dataset_arrays(train, ("rotmat", "betas", "root", "K"))
        size = int(train[0]["image"].shape[-1])  # the crop the intrinsics K refer to
        root, k = a["root"].astype(np.float64), a["K"].astype(np.float64)
        scale = 2 * k[:, 0, 0] / (size * root[:, 2])  # weak perspective: crop units per metre at the root's depth
        uv = np.einsum("bij,bj->bi", k, root)
        t = (uv[:, :2] / uv[:, 2:] + 0.5) * 2 / size - 1
        return {"init_rotmat": heads.mean_rotation(torch.from_numpy(a["rotmat"])),
                "init_betas": torch.from_numpy(a["betas"].mean(0)),
                "init_cam": torch.tensor([scale.mean(), *t.mean(0)], dtype=torch.float32)}

    def build_head(self, backbone_info: Mapping[str, Any], train: Dataset | None = None) -> nn.Module:
        """``train``: the samples the head trains on (the ``--fraction`` subset); the head starts from their mean
        (HMR's mean-pose start), or, without ``train``, from the model's rest pose / template mesh."""
        dim, prefix, _, _ = heads.check_backbone_info(backbone_info)
        decoder = heads.ModelDecoder(self._kind())
        if self.model_based:
            return heads.MeshRegressor(heads.ParamMeshHead(dim, prefix, decoder.n_joints, pool=self.pool,
                                                     **self.init_params(train)), decoder)
        return heads.VertexRegressor(heads.VertexHead(dim, self.mean_mesh(decoder, train)), decoder)

    def mean_mesh(self, decoder: heads.ModelDecoder, train: Dataset | None) -> torch.Tensor:
        """[V, 3] the model-free head's starting mesh: the mean root-relative mesh of ``train`` (camera
        coordinates, as the targets), else the model's rest mesh."""
        if train is None:
            return decoder.template()
        return torch.from_numpy(dataset_arrays(train, ("verts",))["verts"].mean(0))

    def loss(self, pred: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        lj = (pred["joints3d"] - batch["joints3d"]).abs().mean()
        lv = (pred["verts"] - batch["verts"]).abs().mean()
        out = {"loss_joints": lj, "loss_verts": lv}
        total = lj + lv
        if "rotmat" in pred and "rotmat" in batch:
            out["loss_rotmat"] = ((pred["rotmat"] - batch["rotmat"]) ** 2).mean()
            out["loss_root"] = ((pred["rotmat"][:, 0] - batch["rotmat"][:, 0]) ** 2).mean()
            out["loss_betas"] = ((pred["betas"] - batch["betas"]) ** 2).mean()
            total = (total + self.w_rotmat * out["loss_rotmat"] + self.w_root * out["loss_root"]
                     + self.w_betas * out["loss_betas"])
        if "cam" in pred and "joints2d" in batch:
            cam = pred["cam"]
            proj = cam[:, None, :1] * pred["joints3d"][..., :2] + cam[:, None, 1:]
            out["loss_2d"] = (proj - _crop_units(batch["joints2d"], batch["image"].shape[-1])).abs().mean()
            total = total + self.w_2d * out["loss_2d"]
        return {"loss": total, **out}

    def pred_arrays(self, pred: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {"pred/joints3d": _np(pred["joints3d"]), "pred/verts": _np(pred["verts"])}

    def ground_truth(self, batch: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {"gt/joints3d": _np(batch["joints3d"]), "gt/verts": _np(batch["verts"])}


# One fine-tuning schedule for every synthetic task, so that backbones are compared under the same budget.
SYNTH_DEFAULTS = FinetuneDefaults(steps=300, batch_size=32, base_lr=2e-3, weight_decay=0.05, layer_decay=0.75,
                                  warmup_steps=20, img_size=64)


@TASKS.register("synth-body-mesh")
class SynthBodyMesh(MeshTask):
    """Model-based body mesh recovery on the synthetic world (SMPL params via smplx; MPJPE, PA-MPJPE, PVE)."""

    name = "synth-body-mesh"
    version = "1"
    domain = "body"
    protocol = PROTOCOLS["synth-smpl24-pelvis"]
    metrics = (MetricSpec("mpjpe", "mm", False, "24 SMPL joints, joint 0 subtracted"),
               MetricSpec("pa_mpjpe", "mm", False, "after similarity alignment (no reflection)"),
               MetricSpec("pve", "mm", False, "vertices, joint 0 subtracted"))
    primary_metric = "pa_mpjpe"
    defaults = SYNTH_DEFAULTS

    def score_arrays(self, a: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        p, g = self.protocol.prepare(a["pred/joints3d"], a["gt/joints3d"])
        return {"mpjpe": metrics.mpjpe(p, g), "pa_mpjpe": metrics.pa_mpjpe(p, g, allow_reflection=False),
                "pve": metrics.pve(a["pred/verts"] * self.protocol.scale, a["gt/verts"] * self.protocol.scale)}


@TASKS.register("synth-body-meshfree")
class SynthBodyMeshFree(MeshTask):
    """Model-free body mesh recovery on the synthetic world (vertices directly; PVE, PA-PVE, MPJPE)."""

    name = "synth-body-meshfree"
    version = "1"
    domain = "body"
    model_based = False
    fields = ("joints3d", "verts", "root", "K", "rotmat", "betas")
    protocol = PROTOCOLS["synth-smpl24-pelvis"]
    metrics = (MetricSpec("pve", "mm", False, "vertices, joint 0 subtracted"),
               MetricSpec("pa_pve", "mm", False, "vertices after similarity alignment on the vertices"),
               MetricSpec("mpjpe", "mm", False, "24 joints regressed from the vertices, joint 0 subtracted"))
    primary_metric = "pve"
    defaults = SYNTH_DEFAULTS

    def score_arrays(self, a: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        s = self.protocol.scale
        p, g = self.protocol.prepare(a["pred/joints3d"], a["gt/joints3d"])
        pv, gv = a["pred/verts"] * s, a["gt/verts"] * s
        return {"pve": metrics.pve(pv, gv), "pa_pve": metrics.pa_pve(pv, gv, allow_reflection=False),
                "mpjpe": metrics.mpjpe(p, g)}


@TASKS.register("synth-hand-mesh")
class SynthHandMesh(MeshTask):
    """Hand mesh recovery on the synthetic world, FreiHAND protocol (PA-MPJPE, PA-MPVPE, F@5, F@15, AUC)."""

    name = "synth-hand-mesh"
    version = "1"
    domain = "hand"
    protocol = PROTOCOLS["synth-mano21-root"]
    metrics = HAND_METRICS
    primary_metric = "pa_mpjpe"
    defaults = SYNTH_DEFAULTS

    def score_arrays(self, a: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return hand_array_scores(a, self.protocol)


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
        from tasks.protocols import joint_set_names

        return joint_set_names(self.protocol.joint_set)

    def loss(self, pred: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        gt = _crop_units(batch["joints2d"], batch["image"].shape[-1])
        return {"loss": (pred["kp2d"] - gt).abs().mean()}

    def pred_arrays(self, pred: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {"pred/joints2d": _np(pred["kp2d"])}

    def ground_truth(self, batch: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        """Keypoints and bbox size in crop units ([-1, 1] across the crop): PCK is invariant to that scale."""
        s = batch["image"].shape[-1]
        return {"gt/joints2d": _np(_crop_units(batch["joints2d"], s)), "gt/norm": _np(batch["norm"] * 2 / s)}

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
        return {"pred/parts": _np(pred["logits"].argmax(1)).astype(np.uint8)}

    def ground_truth(self, batch: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {"gt/parts": _np(batch["parts"]).astype(np.uint8)}

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
    defaults = SYNTH_DEFAULTS

    def n_classes(self) -> int:
        meta = self.meta()
        names = meta.get("gestures") or meta.get("gesture_names") or meta.get("labels")
        if isinstance(names, list | tuple) and names:
            return len(names)
        from humans.frames import read_manifest

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
        return {"pred/label": _np(pred["logits"].argmax(1)).astype(np.int64)}

    def ground_truth(self, batch: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {"gt/label": _np(batch["label"]).astype(np.int64)}

    def score_arrays(self, a: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"top1": 100 * metrics.accuracy(a["pred/label"], a["gt/label"])}
