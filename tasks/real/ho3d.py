"""HO3D v2/v3 (Hampali et al., "HOnnotate: A method for 3D Annotation of Hand and Object Poses", CVPR 2020): hand
pose and shape under object interaction, in its published layout (``tasks.real.hand_format``).

The evaluation split's 3D labels are **hidden** (its meta pickles hold only the root joint and the hand box): this
task cannot score it locally. ``score_arrays`` returns no metric for the test split, the class says so
(``hidden_test_labels = True``), and ``write_submission`` writes the file the HO3D CodaLab server expects:
``pred.json`` = ``[xyz_list, verts_list]`` in evaluation.txt order, metres, OpenGL camera coordinates (hand along
-z; shreyashampali/ho3d ``pred.py``). The predictions are root-relative, so the published root joint of each
evaluation frame is added to place them in the camera, as that joint is given for this purpose. The server reports
the metrics of protocol ``ho3d`` (listed in ``metrics``).

Training: the annotated frames of train.txt: the published 21 keypoints (MANO order -> FreiHAND order) and the
vertices of the published MANO parameters (``handPose`` 48 = global + 45 articulation, ``handBeta``, ``handTrans``)
posed as HO3D's ``vis_HO3D.py::forwardKinematics`` does (full pose, ``flat_hand_mean=True``, which is how
``humans.models`` builds MANO), converted from OpenGL to OpenCV and made wrist-relative.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from core.errors import DataError
from core.registry import TASKS
from humans.models import forward, load_model
from tasks.base import FinetuneDefaults, MetricSpec, Task
from tasks.protocols import PROTOCOLS, Protocol
from tasks.real.common import ArrayTargets, CropDataset, data_status, dataset_dir, limit_indices, single_thread
from tasks.real.freihand import (
    HAND_DEFAULTS,
    HAND_METRICS,
    MANO_HINT,
    build_hand_head,
    hand_array_scores,
    ordered,
    require_real_mano,
)
from tasks.real.hand_format import OPENGL_TO_OPENCV, read_frame_list, read_ho3d, write_hand_submission

log = logging.getLogger("cpcbench.tasks")

HO3D_HINT = ("Download HO3D v2 or v3 (github.com/shreyashampali/ho3d, via its registration form) and extract it "
             "into $CPCBENCH_DATA/ho3d/ (giving ho3d/train.txt, ho3d/evaluation.txt, ho3d/train/<seq>/{rgb,meta}/ "
             "and ho3d/evaluation/<seq>/{rgb,meta}/).")
SUBMIT_NOTE = ("HO3D test labels are hidden: upload the written pred.json (zipped) to the HO3D CodaLab competition "
               "to get PA-MPJPE, PA-MPVPE, F@5, F@15 and AUC.")


def _np(t: Any) -> np.ndarray:
    return t.detach().float().cpu().numpy()


class HO3DTrainTargets:
    """Train items: wrist-relative keypoints [21, 3] and MANO vertices [778, 3] (OpenCV camera, metres), K."""

    def __init__(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.arrays = dict(arrays)

    def __call__(self, i: int) -> dict[str, Any]:
        mano = self.arrays["mano"][i]  # handPose 48, handBeta 10, handTrans 3 (OpenGL)
        with single_thread():
            out = forward("mano", {"global_orient": mano[None, :3], "hand_pose": mano[None, 3:48],
                                   "betas": mano[None, 48:58], "transl": mano[None, 58:61]}, model=load_model("mano"))
        joints = self.arrays["joints3d"][i]
        verts = out["verts"][0].numpy() @ OPENGL_TO_OPENCV.T
        return {"joints3d": joints - joints[:1], "verts": (verts - joints[:1]).astype(np.float32),
                "K": self.arrays["K"][i]}


@TASKS.register("ho3d")
class HO3DTask(Task):
    """HO3D evaluation split (labels hidden): writes the server's pred.json; no local metric for the test split."""

    name: ClassVar[str] = "ho3d"
    version: ClassVar[str] = "1"
    domain: ClassVar[str] = "hand"
    citation: ClassVar[str] = ("Hampali et al., HOnnotate, CVPR 2020; submission format of shreyashampali/ho3d "
                               "pred.py")
    protocol: ClassVar[Protocol] = PROTOCOLS["ho3d"]
    metrics: ClassVar[tuple[MetricSpec, ...]] = HAND_METRICS  # computed by the evaluation server
    primary_metric: ClassVar[str] = "pa_mpjpe"
    defaults: ClassVar[FinetuneDefaults] = HAND_DEFAULTS
    data_hint: ClassVar[str] = HO3D_HINT + " " + MANO_HINT
    data_short: ClassVar[str] = "HO3D v2 or v3 (github.com/shreyashampali/ho3d); real MANO"
    #: the test split has no public 3D labels: eval records carry no metric and point to the submission
    hidden_test_labels: ClassVar[bool] = True
    submission_note: ClassVar[str] = SUBMIT_NOTE
    bbox_scale: ClassVar[float] = 1.5

    def data_dir(self) -> Path:
        return dataset_dir(self.root, "ho3d", "evaluation.txt", self.data_hint, self.name)

    def data_status(self) -> dict[str, str]:
        return data_status(self.root, "ho3d", "evaluation.txt", self.data_short, models=(("mano", "right"),))

    def build_dataset(self, split: str, img_size: int, limit: int | None = None) -> CropDataset:
        frames = read_ho3d(self.data_dir(), split)
        idx = limit_indices(len(frames), limit)
        arrays = {"K": frames.K[idx]}
        if split == "train":
            require_real_mano()
            arrays["joints3d"] = frames.joints3d[idx]
            arrays["mano"] = frames.mano[idx]
            targets = HO3DTrainTargets(arrays)
        else:
            arrays["root"] = frames.root[idx]
            targets = ArrayTargets(arrays)
        return CropDataset([frames.images[i] for i in idx], frames.bbox[idx], img_size, targets,
                           bbox_scale=self.bbox_scale, frame_ids=idx)

    def build_head(self, backbone_info: Mapping[str, Any]):
        return build_hand_head(backbone_info)

    def loss(self, pred, batch):
        if "joints3d" not in batch:
            raise DataError("ho3d: the evaluation split has no 3D labels to train on; fine-tune on split 'train'")
        lj = (pred["joints3d"] - batch["joints3d"]).abs().mean()
        lv = (pred["verts"] - batch["verts"]).abs().mean()
        return {"loss": lj + lv, "loss_joints": lj, "loss_verts": lv}

    def ground_truth(self, batch) -> dict[str, np.ndarray]:
        out = {"gt/frame_id": batch["frame_id"].cpu().numpy()}
        for k in ("joints3d", "verts", "root"):
            if k in batch:
                out[f"gt/{k}"] = _np(batch[k])
        return out

    def predictions(self, pred, batch) -> dict[str, np.ndarray]:
        return {"pred/joints3d": _np(pred["joints3d"]), "pred/verts": _np(pred["verts"]), **self.ground_truth(batch)}

    def score_arrays(self, a: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """No metric where the labels are hidden (the test split): ``{}``. On labelled (training) frames, the
        FreiHAND/HO3D metrics."""
        if "gt/joints3d" not in a:
            return {}
        return hand_array_scores(a, self.protocol)

    def write_submission(self, preds: Mapping[str, np.ndarray], out_dir: Path) -> Path | None:
        """``out_dir/pred.json`` for the HO3D server (``pred-partial.json`` when frames are missing)."""
        if "gt/root" not in preds:
            raise DataError("ho3d: a submission needs predictions on the evaluation split (with its root joints)")
        root = ordered(preds, "gt/root")[:, None]
        xyz = (ordered(preds, "pred/joints3d") + root) @ OPENGL_TO_OPENCV.T  # diag(1,-1,-1) is its own inverse
        verts = (ordered(preds, "pred/verts") + root) @ OPENGL_TO_OPENCV.T
        n_eval = len(read_frame_list(self.data_dir() / "evaluation.txt"))
        full = len(xyz) == n_eval and np.array_equal(np.sort(preds["gt/frame_id"]), np.arange(n_eval))
        if not full:
            log.warning("ho3d: %d of %d evaluation frames predicted; writing pred-partial.json, not a submission",
                        len(xyz), n_eval)
        return write_hand_submission(Path(out_dir) / ("pred.json" if full else "pred-partial.json"), xyz, verts)
