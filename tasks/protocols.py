"""Evaluation protocols as data: joint sets and orders, root conventions, Procrustes family, units, frame filters.

An MPJPE is only comparable with a paper's MPJPE when the joint set, the root joint, the alignment family,
the averaging and the units agree. Each ``Protocol`` names those facts and the reference file they were read
from (see ``shared/reference/protocols-and-formats.md``, section A); the protocol name is written into every
result record.

Procrustes families (``Protocol.procrustes``):

- ``"no-reflection"`` — Kabsch/Umeyama with the det fix, prediction aligned onto GT (body family: nkolot/SPIN
  ``utils/pose_utils.py::compute_similarity_transform``, 4D-Humans, mmhuman3d, EMDB, 3DPW challenge).
- ``"allow-reflection"`` — FreiHAND ``eval.py::align_w_scale`` (``scipy.linalg.orthogonal_procrustes`` without a
  determinant constraint; copied in shreyashampali/ho3d ``eval.py``).

Roots (``Protocol.root``): ``None`` (no root alignment), a tuple of joint indices into ``input_joint_set`` whose
mean is subtracted from pred and GT, or a name from ``ROOTS``. Root subtraction happens *before* the joints
are selected with ``Protocol.select`` (SPIN computes the H36M pelvis on all 17 regressed joints, then keeps 14).

Units: joints arrive in metres (``units_in``) and metrics are reported in millimetres (``units_out``);
``Protocol.scale`` is the factor between them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from core.errors import CpcbenchError
from tasks import metrics

# --------------------------------------------------------------------------------------------------------------
# Joint sets (names in index order)
# --------------------------------------------------------------------------------------------------------------

#: SMPL's 24 regressed joints (open-mmlab/mmhuman3d ``core/conventions/keypoints_mapping/smpl.py`` SMPL_KEYPOINTS).
SMPL_24: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine_1", "left_knee", "right_knee", "spine_2", "left_ankle",
    "right_ankle", "spine_3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand",
    "right_hand",
)

#: The 17 joints of ``J_regressor_h36m`` (nkolot/SPIN ``data/J_regressor_h36m.npy``), named as mmhuman3d's
#: ``H36M_KEYPOINTS`` (``keypoints_mapping/h36m.py``). CAVEAT: mmhuman3d's ``H36M_KEYPOINTS_MMPOSE`` labels 1-3
#: as *right* hip/knee/ankle and 4-6 as left. The left/right labels of indices 1-6 differ between conventions;
#: MPJPE is unaffected (the same index map is applied to pred and GT), per-joint tables and flips are not.
H36M_17: tuple[str, ...] = (
    "pelvis", "left_hip", "left_knee", "left_ankle", "right_hip", "right_knee", "right_ankle", "spine",
    "thorax", "head", "headtop", "left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow",
    "right_wrist",
)

#: LSP 14 joints (mmhuman3d ``keypoints_mapping/lsp.py``). Hips are indices 2 (right) and 3 (left).
LSP_14: tuple[str, ...] = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "right_wrist",
    "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist", "neck", "headtop",
)

#: SPIN's 24 "GT" joints (the last 24 of its 49-joint set; nkolot/SPIN ``constants.py`` JOINT_NAMES), the order of
#: the ``S`` arrays in SPIN's npz files (``h36m_valid_protocol{1,2}.npz``).
SPIN_GT_24: tuple[str, ...] = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "right_wrist",
    "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist", "neck_lsp", "headtop_lsp",
    "pelvis_mpii", "thorax_mpii", "spine_h36m", "jaw_h36m", "head_h36m", "nose", "left_eye", "right_eye",
    "left_ear", "right_ear",
)

#: COCO 17 keypoints (open-mmlab/mmpose ``configs/_base_/datasets/coco.py``).
COCO_17: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee",
    "left_ankle", "right_ankle",
)

#: MPI-INF-3DHP test joints (mmhuman3d ``keypoints_mapping/mpi_inf_3dhp.py`` MPI_INF_3DHP_TEST_KEYPOINTS); root 14.
MPI_INF_3DHP_17: tuple[str, ...] = (
    "headtop", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "pelvis",
    "spine", "head",
)

#: MANO's 16 regressed joints in smplx order (vchoutas/smplx; ``MANO.forward`` returns only these 16).
MANO_16: tuple[str, ...] = (
    "wrist", "index1", "index2", "index3", "middle1", "middle2", "middle3", "pinky1", "pinky2", "pinky3",
    "ring1", "ring2", "ring3", "thumb1", "thumb2", "thumb3",
)

#: Fingertip vertex ids in smplx's order thumb, index, middle, ring, pinky (smplx ``vertex_ids.py['mano']``).
#: FreiHAND's own ``utils/mano_utils.py kpId2vertices`` uses 744, 320, 443, 555, 672 (ring/pinky differ by one).
MANO_TIP_VERTS: tuple[int, ...] = (744, 320, 443, 554, 671)

#: MANO 16 joints followed by the 5 tips (thumb, index, middle, ring, pinky): the 21-joint "MANO order".
MANO_21: tuple[str, ...] = MANO_16 + ("thumb4", "index4", "middle4", "ring4", "pinky4")

#: FreiHAND / OpenPose hand order: 0 wrist, 1-4 thumb, 5-8 index, 9-12 middle, 13-16 ring, 17-20 pinky.
FREIHAND_21: tuple[str, ...] = ("wrist",) + tuple(
    f"{finger}{k}" for finger in ("thumb", "index", "middle", "ring", "pinky") for k in (1, 2, 3, 4)
)

#: Index map MANO_21 -> FREIHAND_21: ``freihand = mano21[:, MANO_TO_FREIHAND]`` (geopavlakos/hamer
#: ``hamer/models/mano_wrapper.py``; shreyashampali/ho3d ``vis_HO3D.py`` jointsMapManoToSimple).
MANO_TO_FREIHAND: tuple[int, ...] = (0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20)

#: H36M-17 -> LSP-14 (nkolot/SPIN ``constants.py``).
H36M_TO_J14: tuple[int, ...] = (6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10)
#: SPIN's 24 GT joints -> LSP-14: 12 limbs, neck (LSP), head (H36M) (nkolot/SPIN ``constants.py``).
J24_TO_J14: tuple[int, ...] = tuple(range(13)) + (18,)


JOINT_SETS: dict[str, tuple[str, ...]] = {
    "smpl24": SMPL_24,
    "h36m17": H36M_17,
    "lsp14": LSP_14,
    "spin24": SPIN_GT_24,
    "coco17": COCO_17,
    "mpi_inf_3dhp17": MPI_INF_3DHP_17,
    "mano16": MANO_16,
    "mano21": MANO_21,
    "freihand21": FREIHAND_21,
}

#: Named root conventions: joint set and the indices whose mean is the root.
ROOTS: dict[str, tuple[str, tuple[int, ...]]] = {
    "h36m-pelvis": ("h36m17", (0,)),  # J_regressor_h36m joint 0 (SPIN, mmhuman3d, Multi-HMR)
    "smpl-root": ("smpl24", (0,)),  # SMPL joint 0 (3DPW challenge align_by_root)
    "smpl-hip-midpoint": ("smpl24", (1, 2)),  # mean of SMPL L/R hip (EMDB align_by_pelvis, AGORA)
    "lsp-hip-midpoint": ("lsp14", (2, 3)),  # mean of LSP hips (VIBE, mmhuman3d 24/49-joint path)
    "mpi-inf-3dhp-pelvis": ("mpi_inf_3dhp17", (14,)),
    "freihand-wrist": ("freihand21", (0,)),
    "mano-wrist": ("mano21", (0,)),
}

#: Length units in metres.
UNITS: dict[str, float] = {"m": 1.0, "cm": 0.01, "mm": 0.001}

Procrustes = Literal["no-reflection", "allow-reflection"]


def unit_scale(units_in: str, units_out: str) -> float:
    """Factor that converts a length in ``units_in`` to ``units_out`` (``unit_scale("m", "mm") == 1000``)."""
    for u in (units_in, units_out):
        if u not in UNITS:
            raise CpcbenchError(f"unknown length unit {u!r}; use one of {', '.join(UNITS)}")
    return UNITS[units_in] / UNITS[units_out]


def joint_index(joint_set: str, name: str) -> int:
    """Index of joint ``name`` in ``JOINT_SETS[joint_set]``."""
    names = joint_set_names(joint_set)
    if name not in names:
        raise CpcbenchError(f"joint {name!r} is not in joint set {joint_set!r}; it has {', '.join(names)}")
    return names.index(name)


def joint_set_names(joint_set: str) -> tuple[str, ...]:
    if joint_set not in JOINT_SETS:
        raise CpcbenchError(f"unknown joint set {joint_set!r}; known: {', '.join(sorted(JOINT_SETS))}")
    return JOINT_SETS[joint_set]


def mano_to_freihand(joints16: Any, verts: Any, tips: tuple[int, ...] = MANO_TIP_VERTS) -> Any:
    """FreiHAND-order 21 joints from smplx MANO output.

    joints16: [B, 16, 3] (smplx ``MANO`` joints); verts: [B, 778, 3]. Returns [B, 21, 3] in ``FREIHAND_21`` order
    (numpy or torch, matching the input).
    """
    if hasattr(joints16, "new_tensor"):  # torch
        import torch

        j21 = torch.cat([joints16, verts[:, list(tips)]], dim=1)
    else:
        import numpy as np

        j21 = np.concatenate([joints16, verts[:, list(tips)]], axis=1)
    if j21.shape[1] != 21:
        raise CpcbenchError(f"expected 16 MANO joints, got {joints16.shape[1]}")
    return j21[:, list(MANO_TO_FREIHAND)]


def _subtract_root(x: Any, idx: tuple[int, ...]) -> Any:
    """x: [B, J, D] minus the mean of joints ``idx`` (numpy or torch)."""
    root = x[:, list(idx)]
    root = root.mean(1, keepdim=True) if hasattr(x, "new_tensor") else root.mean(1, keepdims=True)
    return x - root


# --------------------------------------------------------------------------------------------------------------
# Protocols
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Protocol:
    """The facts that define a benchmark's numbers.

    name: written into every result record. joint_set: the joint set the metric is computed on (after
    ``select``). root: None, joint indices into ``input_joint_set`` (mean subtracted from pred and GT before
    selection), or a key of ``ROOTS``. procrustes: the PA family, or None when the benchmark reports no PA
    metric. input_joint_set: the joints a model / regressor produces ('' = same as ``joint_set``); select: index
    map input_joint_set -> joint_set (None = identity). averaging: "per-sample" (mean over a sample's valid
    joints, then over samples; SPIN/4D-Humans/EMDB/3DPW challenge), "valid-pairs" (mmhuman3d/mmpose) or
    "per-joint" (InterHand2.6M). pck_mm / pck_inclusive / auc_mm: the PCK threshold, boundary rule (<= or <) and
    AUC range (lo, hi, steps) in ``units_out``.
    """

    name: str
    joint_set: str
    root: str | tuple[int, ...] | None
    procrustes: Procrustes | None
    units_in: str = "m"
    units_out: str = "mm"
    frame_filter: str = ""
    source: str = ""
    input_joint_set: str = ""
    select: tuple[int, ...] | None = None
    averaging: Literal["per-sample", "valid-pairs", "per-joint"] = "per-sample"
    pck_mm: float | None = None
    pck_inclusive: bool = True
    auc_mm: tuple[float, float, int] | None = None
    pve_root: str = ""
    notes: str = ""

    def __post_init__(self) -> None:
        joint_set_names(self.joint_set)
        unit_scale(self.units_in, self.units_out)
        if self.procrustes not in (None, "no-reflection", "allow-reflection"):
            raise CpcbenchError(f"protocol {self.name!r}: procrustes must be 'no-reflection', "
                                f"'allow-reflection' or None, got {self.procrustes!r}")
        n_in = len(joint_set_names(self.input_joint_set or self.joint_set))
        if self.select is not None:
            if len(self.select) != len(JOINT_SETS[self.joint_set]):
                raise CpcbenchError(f"protocol {self.name!r}: select has {len(self.select)} entries, "
                                    f"joint set {self.joint_set!r} has {len(JOINT_SETS[self.joint_set])}")
            if max(self.select) >= n_in:
                raise CpcbenchError(f"protocol {self.name!r}: select index out of range for {n_in} input joints")
        self.root_indices()  # validates

    @property
    def scale(self) -> float:
        """Factor from ``units_in`` to ``units_out`` (1000 for metres -> millimetres)."""
        return unit_scale(self.units_in, self.units_out)

    @property
    def allow_reflection(self) -> bool:
        return self.procrustes == "allow-reflection"

    @property
    def n_input_joints(self) -> int:
        return len(JOINT_SETS[self.input_joint_set or self.joint_set])

    def root_indices(self) -> tuple[int, ...] | None:
        """Root as indices into the input joint set (None = no root alignment)."""
        if self.root is None:
            return None
        if isinstance(self.root, str):
            if self.root not in ROOTS:
                raise CpcbenchError(f"protocol {self.name!r}: unknown root {self.root!r}; known: {', '.join(ROOTS)}")
            root_set, idx = ROOTS[self.root]
            in_set = self.input_joint_set or self.joint_set
            if root_set != in_set:
                raise CpcbenchError(f"protocol {self.name!r}: root {self.root!r} is defined on {root_set!r}, "
                                    f"but the input joints are {in_set!r}")
            return idx
        idx = tuple(int(i) for i in self.root)
        if not idx or min(idx) < 0 or max(idx) >= self.n_input_joints:
            raise CpcbenchError(f"protocol {self.name!r}: root indices {idx} out of range for "
                                f"{self.n_input_joints} input joints")
        return idx

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("root", "select", "auc_mm"):
            if isinstance(d[k], tuple):
                d[k] = list(d[k])
        return d

    def prepare(self, pred: Any, gt: Any) -> tuple[Any, Any]:
        """Root-align (if any), select the evaluated joints and convert units.

        pred, gt: [B, J_in, 3] in ``units_in`` -> [B, J, 3] in ``units_out`` (numpy or torch, as given).
        """
        if pred.shape != gt.shape:
            raise CpcbenchError(f"protocol {self.name!r}: pred shape {tuple(pred.shape)} != gt shape "
                                f"{tuple(gt.shape)}")
        if pred.ndim != 3 or pred.shape[1] != self.n_input_joints:
            raise CpcbenchError(f"protocol {self.name!r} expects joints [B, {self.n_input_joints}, D] in "
                                f"{self.input_joint_set or self.joint_set} order, got {tuple(pred.shape)}")
        idx = self.root_indices()
        if idx is not None:
            pred, gt = _subtract_root(pred, idx), _subtract_root(gt, idx)
        if self.select is not None:
            pred, gt = pred[:, list(self.select)], gt[:, list(self.select)]
        s = self.scale
        return pred * s, gt * s

    def evaluate_joints(self, pred: Any, gt: Any, valid: Any = None) -> dict[str, Any]:
        """Per-sample MPJPE (after root alignment, or none) and PA-MPJPE in ``units_out``.

        pred, gt: [B, J_in, 3] in ``units_in``; valid: [B, J] over the *selected* joints or None.
        Returns {"mpjpe": [B], "pa_mpjpe": [B]} (PA only when the protocol has a Procrustes family).
        """
        p, g = self.prepare(pred, gt)
        out = {"mpjpe": metrics.mpjpe(p, g, valid=valid)}
        if self.procrustes is not None:
            out["pa_mpjpe"] = metrics.pa_mpjpe(p, g, allow_reflection=self.allow_reflection, valid=valid)
        return out


_PROTOCOLS: tuple[Protocol, ...] = (
    Protocol(
        name="3dpw-lsp14-h36m-pelvis", joint_set="lsp14", input_joint_set="h36m17", select=H36M_TO_J14,
        root="h36m-pelvis", procrustes="no-reflection",
        frame_filter="3DPW test split, frames with campose_valid (SPIN datasets/preprocess/pw3d.py)",
        source="nkolot/SPIN eval.py + utils/pose_utils.py; open-mmlab/mmhuman3d human_image_dataset.py::_parse_result",
        notes="GT joints from gendered SMPL through J_regressor_h36m; pelvis computed on all 17 before selecting 14.",
    ),
    Protocol(
        name="3dpw-challenge-smpl24-root", joint_set="smpl24", root="smpl-root", procrustes="no-reflection",
        frame_filter="campose_valid and poses2d non-zero (aymenmir1/3dpw-eval evaluate.py::check_valid_inds)",
        source="aymenmir1/3dpw-eval evaluate.py", pck_mm=50.0, pck_inclusive=True, auc_mm=(0.0, 199.0, 200),
        notes="All-zero prediction: aligned pred = GT mean. PCK/AUC on SMPL joints 1, 2, 4, 5, 7, 8, 16-21.",
    ),
    Protocol(
        name="emdb-smpl24-hipmid", joint_set="smpl24", root="smpl-hip-midpoint", procrustes="no-reflection",
        frame_filter="sequences with emdb1 == True, frames in good_frames_mask (eth-ait/emdb evaluate.py)",
        source="eth-ait/emdb evaluation_metrics.py::compute_positional_errors", pve_root="smpl-hip-midpoint",
        notes="MVE-PA applies the similarity transform estimated on the 24 joints to the vertices.",
    ),
    Protocol(
        name="h36m-p1", joint_set="lsp14", input_joint_set="h36m17", select=H36M_TO_J14, root="h36m-pelvis",
        procrustes="no-reflection",
        frame_filter="subjects S9, S11; every 5th frame; all 4 cameras (SPIN datasets/preprocess/h36m.py)",
        source="nkolot/SPIN eval.py + datasets/preprocess/h36m.py",
        notes="SPIN's GT is stored as SPIN_GT_24 (J24_TO_J14); here both pred and GT are given in H36M-17 order.",
    ),
    Protocol(
        name="h36m-p2", joint_set="lsp14", input_joint_set="h36m17", select=H36M_TO_J14, root="h36m-pelvis",
        procrustes="no-reflection",
        frame_filter="subjects S9, S11; every 5th frame; camera 60457274 only (SPIN datasets/preprocess/h36m.py)",
        source="nkolot/SPIN eval.py + datasets/preprocess/h36m.py; shubham-goel/4D-Humans H36M-VAL-P2",
    ),
    Protocol(
        name="mpi-inf-3dhp-17", joint_set="mpi_inf_3dhp17", root="mpi-inf-3dhp-pelvis", procrustes="no-reflection",
        frame_filter="TS1-TS6, valid_frame == 1 (nkolot/SPIN datasets/preprocess/mpi_inf_3dhp.py::test_data)",
        source="MPI-INF-3DHP test_util mpii_compute_3d_pck.m (copy in QitaoZhao/PoseFormerV2); nkolot/SPIN eval.py",
        pck_mm=150.0, pck_inclusive=False, auc_mm=(0.0, 150.0, 31),
    ),
    Protocol(
        name="freihand", joint_set="freihand21", root=None, procrustes="allow-reflection",
        frame_filter="evaluation split, 3960 frames",
        source="lmb-freiburg/freihand eval.py (align_w_scale, calculate_fscore) + utils/eval_util.py",
        pck_inclusive=True, auc_mm=(0.0, 50.0, 100),
        notes="PA-MPJPE and PA-MPVPE each aligned on themselves; F@5/F@15 of the aligned mesh; official script "
              "prints cm, we report mm.",
    ),
    Protocol(
        name="ho3d", joint_set="freihand21", root=None, procrustes="allow-reflection",
        frame_filter="evaluation.txt frames (v2: 11524, v3: 20137)",
        source="shreyashampali/ho3d eval.py (align_w_scale, align_sc_tr, calculate_fscore)",
        pck_inclusive=True, auc_mm=(0.0, 50.0, 100),
        notes="OpenGL camera coordinates (hand along -z); GT joints in MANO order are mapped with MANO_TO_FREIHAND.",
    ),
    Protocol(
        name="synth-smpl24-pelvis", joint_set="smpl24", root="smpl-root", procrustes="no-reflection",
        frame_filter="synthetic test split (held-out sequences)",
        source="cpcbench humans synthetic world; conventions of aymenmir1/3dpw-eval evaluate.py (SMPL joint 0)",
        pve_root="smpl-root",
    ),
    Protocol(
        name="synth-mano21-root", joint_set="freihand21", root="freihand-wrist", procrustes="allow-reflection",
        frame_filter="synthetic test split (held-out sequences)",
        source="cpcbench humans synthetic world; conventions of lmb-freiburg/freihand eval.py (align_w_scale)",
        pck_inclusive=True, auc_mm=(0.0, 50.0, 100), pve_root="freihand-wrist",
    ),
)

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in _PROTOCOLS}


def get_protocol(name: str) -> Protocol:
    """The protocol called ``name``; unknown names raise a ``CpcbenchError`` listing the known ones."""
    if name not in PROTOCOLS:
        import difflib

        close = difflib.get_close_matches(name, PROTOCOLS, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise CpcbenchError(f"unknown protocol {name!r}.{hint} Known: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]
