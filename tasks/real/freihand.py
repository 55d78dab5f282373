"""FreiHAND (Zimmermann et al., "FreiHAND: A Dataset for Markerless Capture of Hand Pose and Shape from Single RGB
Images", ICCV 2019): the evaluation split with the hand protocol of lmb-freiburg/freihand ``eval.py``.

Layout and file formats: ``tasks.real.hand_format``. Test = the 3960 evaluation frames (their ``evaluation_xyz.json``
and ``evaluation_verts.json`` are public); train = the 32560 training frames x 4 versions (gs, hom, sample, auto).
Images are already 224 x 224 hand crops and are used whole.

Metrics (protocol ``freihand``; lengths in mm, the official script prints cm): PA-MPJPE on the 21 keypoints and
PA-MPVPE on the 778 vertices, each aligned on itself with a similarity transform that may reflect
(``align_w_scale``); F@5 mm and F@15 mm of the aligned mesh; AUC of the aligned keypoints' PCK over 0-50 mm
(100 thresholds, trapezoidal). Predictions are root-relative (wrist = keypoint 0) from the right-hand MANO model,
which must be the real one (``$CPCBENCH_MODELS``) for vertex metrics to mean anything.

``hand_scores`` is the one implementation of these metrics: HO3D and the synthetic hand task score with it too.

Submissions: ``write_submission`` writes the official ``pred.json`` = ``[xyz_list, verts_list]`` (metres) in
evaluation order; the predictions are root-relative (the model predicts no absolute depth), so the server's
*aligned* numbers are the meaningful ones. ``score_submission`` scores any such ``pred.json`` against the public
``evaluation_xyz.json`` / ``evaluation_verts.json`` (``cpcbench score --task freihand``) with the numbers the
official script reports after alignment. Deviation: when the predicted mesh has a different vertex count, the
script applies a keypoint transform with a scale bug to the vertices; here the keypoints' similarity transform
is applied as is, and PA-MPVPE is not defined (None).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from core.errors import DataError
from core.registry import TASKS
from humans.models import real_model_file
from tasks import heads, metrics
from tasks.base import FinetuneDefaults, MetricSpec, Task
from tasks.protocols import PROTOCOLS, Protocol
from tasks.real.common import (
    ArrayTargets,
    CropDataset,
    as_array,
    data_status,
    dataset_dir,
    limit_indices,
    read_json,
    read_json_list,
)
from tasks.real.hand_format import read_freihand, read_hand_submission, write_hand_submission

log = logging.getLogger("cpcbench.tasks")

MANO_HINT = ("Download the MANO hand model (mano.is.tue.mpg.de: MANO_RIGHT.pkl) into $CPCBENCH_MODELS/mano/.")
FREIHAND_HINT = ("Download FreiHAND v2 (lmb.informatik.uni-freiburg.de/projects/freihand: FreiHAND_pub_v2.zip and "
                 "the evaluation set with annotations) and extract it into $CPCBENCH_DATA/freihand/ (giving "
                 "freihand/training_xyz.json, freihand/evaluation_xyz.json, freihand/evaluation/rgb/...).")


def require_real_mano() -> None:
    if real_model_file("mano", "right") is None:
        raise DataError(f"the real hand benchmarks need the real MANO model: none under $CPCBENCH_MODELS. {MANO_HINT}")


def _np(t: Any) -> np.ndarray:
    return t.detach().float().cpu().numpy()


#: F@5 mm and F@15 mm, in the hand protocols' output unit (mm)
F_THRESHOLDS_MM = (5.0, 15.0)


def hand_scores(pred_xyz: np.ndarray, pred_verts: np.ndarray, gt_xyz: np.ndarray, gt_verts: np.ndarray,
                protocol: Protocol) -> dict[str, np.ndarray]:
    """The FreiHAND metrics per sample (the one implementation; FreiHAND, HO3D and synth-hand-mesh use it).

    pred_xyz, gt_xyz: [B, 21, 3]; pred_verts: [B, V, 3]; gt_verts: [B, 778, 3]; metres in, ``protocol.units_out``
    out. Keypoints and mesh are each aligned on themselves (similarity, reflections allowed); a mesh with another
    vertex count has no correspondence: it is moved by the keypoints' transform and gets no ``pa_mpvpe``.
    Returns ``{pa_mpjpe, pa_mpvpe, f5, f15, auc}``, each [B].
    """
    s = protocol.scale
    pj, gj = pred_xyz * s, gt_xyz * s
    pv, gv = pred_verts * s, gt_verts * s
    err = np.linalg.norm(metrics.procrustes_align(pj, gj, allow_reflection=True) - gj, axis=-1)  # [B, 21]
    out = {"pa_mpjpe": err.mean(1)}
    if pv.shape[1] == gv.shape[1]:
        aligned_v = metrics.procrustes_align(pv, gv, allow_reflection=True)
        out["pa_mpvpe"] = np.linalg.norm(aligned_v - gv, axis=-1).mean(1)
    else:
        aligned_v = metrics.apply_transform(pv, *metrics.similarity_transform(pj, gj, allow_reflection=True))
    f = metrics.f_scores(aligned_v, gv, F_THRESHOLDS_MM)
    out["f5"], out["f15"] = f[:, 0], f[:, 1]
    lo, hi, steps = protocol.auc_mm
    out["auc"] = metrics.auc(err, lo, hi, steps)
    return out


def hand_array_scores(a: Mapping[str, np.ndarray], protocol: Protocol) -> dict[str, np.ndarray]:
    """``hand_scores`` of saved predictions: ``pred/joints3d``, ``pred/verts``, ``gt/joints3d``, ``gt/verts``."""
    return hand_scores(a["pred/joints3d"], a["pred/verts"], a["gt/joints3d"], a["gt/verts"], protocol)


def build_hand_head(backbone_info: Mapping[str, Any]):
    """ParamMeshHead + right-hand MANO decoding: tokens -> {verts [B, 778, 3], joints3d [B, 21, 3], ...}
    (root-relative to the wrist, FreiHAND keypoint order)."""
    require_real_mano()
    dim, prefix, _, _ = heads.check_backbone_info(backbone_info)
    decoder = heads.ModelDecoder("mano")
    return heads.MeshRegressor(heads.ParamMeshHead(dim, prefix, decoder.n_joints), decoder)


def ordered(preds: Mapping[str, np.ndarray], key: str) -> np.ndarray:
    """``preds[key]`` sorted by ``gt/frame_id`` (the dataset order), checking every index appears once."""
    idx = np.asarray(preds["gt/frame_id"]).astype(np.int64)
    if len(np.unique(idx)) != len(idx):
        raise DataError("predictions hold a frame twice; cannot write a submission")
    return np.asarray(preds[key])[np.argsort(idx, kind="stable")]


#: the fine-tuning schedule of the real hand benchmarks (FreiHAND, HO3D)
HAND_DEFAULTS = FinetuneDefaults(steps=20000, batch_size=64, base_lr=1e-4, weight_decay=0.05, layer_decay=0.75,
                                 warmup_steps=500, img_size=224)
HAND_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("pa_mpjpe", "mm", False, "21 keypoints, similarity-aligned (reflections allowed)", aligned=True),
    MetricSpec("pa_mpvpe", "mm", False, "778 vertices, aligned on themselves", aligned=True),
    MetricSpec("f5", "", True, "F-score at 5 mm of the aligned mesh", aligned=True),
    MetricSpec("f15", "", True, "F-score at 15 mm of the aligned mesh", aligned=True),
    MetricSpec("auc", "", True, "AUC of the aligned keypoints' PCK over 0-50 mm (100 steps)", aligned=True),
)


@TASKS.register("freihand")
class FreiHANDTask(Task):
    """FreiHAND evaluation split: PA-MPJPE, PA-MPVPE, F@5, F@15, AUC; writes the official pred.json."""

    name: ClassVar[str] = "freihand"
    version: ClassVar[str] = "1"
    domain: ClassVar[str] = "hand"
    citation: ClassVar[str] = ("Zimmermann et al., FreiHAND, ICCV 2019; protocol of lmb-freiburg/freihand eval.py")
    protocol: ClassVar[Protocol] = PROTOCOLS["freihand"]
    metrics: ClassVar[tuple[MetricSpec, ...]] = HAND_METRICS
    primary_metric: ClassVar[str] = "pa_mpjpe"
    defaults: ClassVar[FinetuneDefaults] = HAND_DEFAULTS
    data_hint: ClassVar[str] = FREIHAND_HINT + " " + MANO_HINT
    data_short: ClassVar[str] = "FreiHAND v2 + its evaluation annotations; real MANO"
    submission_labels: ClassVar[Mapping[str, str]] = {
        "pa_mpjpe": "PA-MPJPE (keypoints)", "pa_mpvpe": "PA-MPVPE (mesh)", "f5": "F@5mm (aligned)",
        "f15": "F@15mm (aligned)", "auc": "AUC 0-50 mm (aligned keypoints)"}

    def data_dir(self) -> Path:
        return dataset_dir(self.root, "freihand", "evaluation_K.json", self.data_hint, self.name)

    def data_status(self) -> dict[str, str]:
        return data_status(self.root, "freihand", "evaluation_K.json", self.data_short, models=(("mano", "right"),))

    def build_dataset(self, split: str, img_size: int, limit: int | None = None) -> CropDataset:
        frames = read_freihand(self.data_dir(), split)
        idx = limit_indices(len(frames), limit)
        root = frames.joints3d[:, :1]
        joints = (frames.joints3d - root)[idx]
        verts = (frames.verts - root)[idx] if frames.verts is not None else None
        arrays = {"joints3d": joints, "K": frames.K[idx]}
        if verts is not None:
            arrays["verts"] = verts
        return CropDataset([frames.images[i] for i in idx], None, img_size, ArrayTargets(arrays), bbox_scale=1.0,
                           frame_ids=idx)

    def build_head(self, backbone_info: Mapping[str, Any]):
        return build_hand_head(backbone_info)

    def loss(self, pred, batch):
        lj = (pred["joints3d"] - batch["joints3d"]).abs().mean()
        out = {"loss_joints": lj}
        if "verts" in batch:
            out["loss_verts"] = (pred["verts"] - batch["verts"]).abs().mean()
        out["loss"] = sum(out.values())
        return out

    def ground_truth(self, batch) -> dict[str, np.ndarray]:
        return {"gt/joints3d": _np(batch["joints3d"]), "gt/verts": _np(batch["verts"]),
                "gt/frame_id": batch["frame_id"].cpu().numpy()}

    def predictions(self, pred, batch) -> dict[str, np.ndarray]:
        return {"pred/joints3d": _np(pred["joints3d"]), "pred/verts": _np(pred["verts"]), **self.ground_truth(batch)}

    def score_arrays(self, a: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return hand_array_scores(a, self.protocol)

    def score_submission(self, path: Path) -> dict[str, float | None]:
        """The official script's aligned numbers for a ``pred.json`` (metres, evaluation order) against the public
        ``evaluation_xyz.json`` / ``evaluation_verts.json``: ``{metric: mean}``, ``pa_mpvpe`` None for a mesh
        that is not MANO's."""
        d = dataset_dir(self.root, "freihand", "evaluation_xyz.json", self.data_hint, self.name)
        gt_xyz, gt_verts = (as_array(read_json(d / f"evaluation_{k}.json"), k, str(d / f"evaluation_{k}.json"),
                                     (None, n, 3), dtype=np.float64) for k, n in (("xyz", 21), ("verts", 778)))
        if len(gt_xyz) != len(gt_verts):
            raise DataError(f"{d}: evaluation_xyz.json has {len(gt_xyz)} samples but evaluation_verts.json "
                            f"{len(gt_verts)}")
        xyz, verts = read_hand_submission(path, n_expected=len(gt_xyz))
        per = hand_scores(xyz, verts, gt_xyz, gt_verts, self.protocol)
        return {m.name: (float(per[m.name].mean()) if m.name in per else None) for m in self.metrics}

    def write_submission(self, preds: Mapping[str, np.ndarray], out_dir: Path) -> Path | None:
        """``out_dir/pred.json`` (the official format) when ``preds`` cover the whole evaluation split, else
        ``pred-partial.json`` (a ``--limit`` run; the server would reject it)."""
        xyz, verts = ordered(preds, "pred/joints3d"), ordered(preds, "pred/verts")
        n_eval = len(read_json_list(self.data_dir() / "evaluation_K.json", (3, 3), "K"))  # 3960 in FreiHAND v2
        full = len(xyz) == n_eval and np.array_equal(np.sort(preds["gt/frame_id"]), np.arange(n_eval))
        if not full:
            log.warning("freihand: %d of %d evaluation frames predicted; writing pred-partial.json, not a "
                        "submission", len(xyz), n_eval)
        return write_hand_submission(Path(out_dir) / ("pred.json" if full else "pred-partial.json"), xyz, verts)
