"""Tiny fixtures in the published formats of the real benchmarks, plus a malformed variant of each. Used by
tests/test_real_readers.py, tests/test_real_tasks.py and tests/test_real_e2e.py.

Each writer is derived from the published description of its format (the data set's readme / the reference
loaders and preprocessing scripts named in its docstring), not from our readers, so that a misreading shared by a
reader and its fixture cannot hide. Where a detail is not published, the docstring says what was chosen.

Pickles of 3DPW and HO3D v2 are written as Python 2 wrote them: protocol 2, every ``str`` as a Python 2 byte string
(BINSTRING opcodes, read back with ``encoding="latin1"``), numpy arrays through numpy 1.x's
``numpy.core.multiarray._reconstruct``. EMDB's and HO3D v3's pickles are Python 3 ones with numpy 1.x names; Python
3 at protocol <= 2 writes every empty ``bytes`` (the raw data of every empty array) as ``__builtin__.bytes()``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from fixtures_pickle import CodeCarrier, code_pickle, py2_pickle, py3_pickle_numpy1
from PIL import Image

__all__ = ["CodeCarrier", "code_pickle", "py2_pickle", "py3_pickle_numpy1"]  # re-exported for the tests

# ---------------------------------------------------------------------------------------------- images


def write_image(path: Path, w: int = 32, h: int = 24, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)


def _rand_pose(rng: np.random.Generator, n: int, d: int, s: float = 0.3) -> np.ndarray:
    return (rng.standard_normal((n, d)) * s).astype(np.float64)


def _rot(rng: np.random.Generator) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(rng.standard_normal(3) * 0.5).as_matrix()


# ---------------------------------------------------------------------------------------------- 3DPW


def make_pw3d(data_root: Path, split: str = "test", malformed: str = "", n: int = 5) -> list[tuple[str, int, int]]:
    """``data_root/3dpw/sequenceFiles/<split>/<seq>.pkl`` (2 sequences per split, e.g. test: courtyard_a_00 with 2
    actors, downtown_b_00 with 1) + ``imageFiles/<seq>/image_%05d.jpg``.

    Source: the official 3DPW readme (``readme.txt`` of the download; a copy at zhyjiang/mmhuman3d
    ``tools/depth_generate/readme.txt``) and its reader nkolot/SPIN ``datasets/preprocess/pw3d.py``:
    sequenceFiles/{train,validation,test}/<seq>.pkl, a dict (Python 2 pickle, ``pickle.load(f, encoding='latin1')``)
    with ``sequence`` (str), ``betas`` (per actor, "10x1"), ``betas_clothed``, ``v_template_clothed``, ``poses`` (per
    actor N x 72, 30 Hz, aligned to the images), ``trans`` (per actor N x 3), ``poses_60Hz``, ``trans_60Hz``,
    ``genders`` ('m'/'f'), ``texture_maps``, ``poses2d`` (per actor N x 3 x 18, COCO joints x/y/confidence; zero
    where fewer than 6 joints were detected), ``jointPositions`` (per actor N x 72), ``img_frame_ids`` (N),
    ``cam_poses`` (N x 4 x 4, world -> camera), ``campose_valid`` (per actor, N bools), ``cam_intrinsics`` (3 x 3).
    Image ``i`` of a sequence is ``imageFiles/<seq>/image_%05d.jpg`` % i (SPIN). The readme's "10x1" betas: the second
    sequence stores them as a 10 x 1 column, the first as a flat 10-vector.

    Frame filter cases: actor 0 of the first sequence has campose_valid False at frame 1 and no 2D detection
    (poses2d all zero) at frame 2. malformed: "" | "shape" (poses N x 71) | "keys" (no
    campose_valid) | "code" (a value that runs code). Returns the kept (sequence, actor, frame), in read order.
    """
    base = data_root / "3dpw"
    seq_dir = base / "sequenceFiles" / split
    seq_dir.mkdir(parents=True, exist_ok=True)
    kept: list[tuple[str, int, int]] = []
    names = {"test": ("courtyard_a_00", "downtown_b_00"), "train": ("courtyard_c_00", "outdoors_d_00"),
             "validation": ("courtyard_e_00", "downtown_f_00")}[split]
    for s, (name, actors) in enumerate(zip(names, (2, 1), strict=True)):
        rng = np.random.default_rng(10 + s)
        cam_poses = np.tile(np.eye(4), (n, 1, 1))
        for f in range(n):
            cam_poses[f, :3, :3] = _rot(rng)
            cam_poses[f, :3, 3] = rng.standard_normal(3)
        poses, betas, trans, p2d, valid, genders = [], [], [], [], [], []
        for a in range(actors):
            poses.append(_rand_pose(rng, n, 72))
            b = rng.standard_normal(10) * 0.5
            betas.append(b if s == 0 else b[:, None])  # the readme's "10x1"
            trans.append(rng.standard_normal((n, 3)))
            kp = np.zeros((n, 3, 18))
            kp[:, 0] = rng.uniform(2, 30, (n, 18))
            kp[:, 1] = rng.uniform(2, 22, (n, 18))
            kp[:, 2] = rng.uniform(0.2, 1.0, (n, 18))
            kp[:, 2, :3] = 0.0  # some undetected joints
            v = np.ones(n, bool)
            if s == 0 and a == 0:
                v[1] = False
                kp[2] = 0.0
            p2d.append(kp)
            valid.append(v)
            genders.append("m" if a == 0 else "f")
            for f in range(n):
                if v[f] and (kp[f, 2] > 0).any():
                    kept.append((name, a, f))
        seq: dict[str, Any] = {
            "sequence": name, "betas": betas, "betas_clothed": betas, "poses": poses, "trans": trans,
            "poses_60Hz": [np.repeat(p, 2, 0) for p in poses], "trans_60Hz": [np.repeat(t, 2, 0) for t in trans],
            "genders": genders, "poses2d": p2d, "jointPositions": [rng.standard_normal((n, 72)) for _ in range(actors)],
            "img_frame_ids": np.arange(n) * 2, "cam_poses": cam_poses, "campose_valid": valid,
            "cam_intrinsics": np.array([[50.0, 0, 16], [0, 50.0, 12], [0, 0, 1]]),
            "texture_maps": [np.zeros((2, 2, 3), np.uint8) for _ in range(actors)],
            "v_template_clothed": [np.zeros((4, 3)) for _ in range(actors)],
        }
        if malformed == "shape" and s == 1:
            seq["poses"] = [p[:, :71] for p in poses]
        if malformed == "keys" and s == 1:
            del seq["campose_valid"]
        data = py2_pickle(seq)
        if malformed == "code" and s == 1:
            data = code_pickle(data_root / "pwned-3dpw")
        (seq_dir / f"{name}.pkl").write_bytes(data)
        for f in range(n):
            write_image(base / "imageFiles" / name / f"image_{f:05d}.jpg", seed=f)
    return sorted(kept, key=lambda k: (k[0], k[1], k[2]))


# ---------------------------------------------------------------------------------------------- EMDB


def make_emdb(data_root: Path, malformed: str = "", n: int = 6, protocol: int = 2) -> list[tuple[str, int]]:
    """``data_root/emdb/P<k>/<seq>/P<k>_<seq>_data.pkl`` + ``images/%05d.jpg``.

    Source: eth-ait/emdb ``dataset.md``: EMDB_ROOT/P0..P9/<sequence>/{images/, {PX}_{sequence}_data.pkl,
    {PX}_{sequence}_video.mp4}; images named ``%05d.jpg`` from 0; the pickle is a dict with ``gender``
    ("female"|"male"|"neutral"), ``name`` ("{subject_id}_{sequence_id}"), ``emdb1``, ``emdb2`` (bool), ``n_frames``
    (int), ``good_frames_mask`` (n_frames,), ``camera`` {``intrinsics`` (3, 3), ``extrinsics`` (n_frames, 4, 4),
    ``width``, ``height``}, ``smpl`` {``poses_root`` (n_frames, 3), ``poses_body`` (n_frames, 69), ``trans``
    (n_frames, 3), ``betas`` (10,)}, ``kp2d`` (n_frames, 24, 2), ``bboxes`` {``bboxes`` (n_frames, 4) as
    (x_min, y_min, x_max, y_max), ``invalid_idxs``: frames whose box is invalid, i.e. not in ``good_frames_mask``
    or with x_max - x_min <= 0 or y_max - y_min <= 0}. eth-ait/emdb reads it with a plain ``pickle.load`` (a Python 3
    pickle); the protocol is not documented: ``protocol`` (default 2, where Python 3 writes an empty array's raw
    data as ``__builtin__.bytes()``).

    P0/01_walk: emdb1, frames 2 and 3 not good, frame 4's box degenerate (so invalid_idxs = [2, 3, 4]);
    P1/02_run: emdb2 only (not in the EMDB1 test set), every box valid: ``invalid_idxs`` is an empty array.
    malformed: "" | "shape" (kp2d n x 23 x 2) | "keys" (no good_frames_mask) | "code". Returns the kept (name, frame).
    """
    kept = []
    for p, (subj, seq, emdb1) in enumerate((("P0", "01_walk", True), ("P1", "02_run", False))):
        rng = np.random.default_rng(20 + p)
        d = data_root / "emdb" / subj / seq
        ext = np.tile(np.eye(4), (n, 1, 1))
        for f in range(n):
            ext[f, :3, :3] = _rot(rng)
            ext[f, :3, 3] = rng.standard_normal(3)
        good = np.ones(n, bool)
        boxes = np.tile(np.array([4.0, 3.0, 28.0, 22.0]), (n, 1))
        if emdb1:
            good[[2, 3]] = False
            boxes[4, 2] = boxes[4, 0]  # x_max - x_min <= 0
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        invalid = np.flatnonzero(~good | (w <= 0) | (h <= 0))
        data: dict[str, Any] = {
            "gender": "female" if p == 0 else "male", "name": f"{subj}_{seq}", "emdb1": emdb1, "emdb2": not emdb1,
            "n_frames": n, "good_frames_mask": good,
            "camera": {"intrinsics": np.array([[40.0, 0, 16], [0, 40.0, 12], [0, 0, 1]]), "extrinsics": ext,
                       "width": 32, "height": 24},
            "smpl": {"poses_root": _rand_pose(rng, n, 3), "poses_body": _rand_pose(rng, n, 69),
                     "trans": rng.standard_normal((n, 3)), "betas": rng.standard_normal(10) * 0.5},
            "kp2d": rng.uniform(1, 20, (n, 24, 2)),
            "bboxes": {"bboxes": boxes, "invalid_idxs": invalid},
        }
        if malformed == "shape":
            data["kp2d"] = data["kp2d"][:, :23]
        if malformed == "keys":
            del data["good_frames_mask"]
        raw = py3_pickle_numpy1(data, protocol) if malformed != "code" else code_pickle(data_root / "pwned-emdb", 4)
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{subj}_{seq}_data.pkl").write_bytes(raw)
        for f in range(n):
            write_image(d / "images" / f"{f:05d}.jpg", seed=f)
        if emdb1:
            kept += [(f"{subj}_{seq}", f) for f in range(n) if good[f]]
    return kept


# ---------------------------------------------------------------------------------------------- Human3.6M (SPIN npz)

SPIN_GLOBAL_IDX = (14, 3, 4, 5, 2, 1, 0, 16, 12, 17, 18, 9, 10, 11, 8, 7, 6)


def make_h36m(data_root: Path, protocol: int = 2, malformed: str = "", n: int = 4,
              train: bool = False) -> np.ndarray:
    """``data_root/h36m/h36m_valid_protocol{p}.npz`` (or ``h36m_train.npz``) + the frames its ``imgname`` names.

    Source: nkolot/SPIN ``datasets/preprocess/h36m.py`` (validation: users S9 and S11, every 5th frame, protocol 1 all
    cameras, protocol 2 camera 60457274 only; ``np.savez(imgname, center, scale, S)``) and
    ``datasets/preprocess/h36m_train.py`` (training: S1, S5, S6, S7, S8; ``np.savez(imgname, center, scale, part,
    S)``, no SMPL parameters); SPIN ``config.py`` names the files. ``imgname`` = ``images/<S>_<action>.<camera>_
    %06d.jpg`` (frame_i + 1), relative to the Human3.6M root; ``center`` = box centre, ``scale`` = 0.9 * box side
    / 200; ``S`` [N, 24, 4] = the 17 mocap joints (metres, root-centred) at ``global_idx`` with confidence 1, zeros
    elsewhere; ``part`` [N, 24, 3] = the 17 2D joints at ``global_idx`` with confidence 1. Lists go to ``np.savez``
    as SPIN's script passes them. Here the npz lies at the Human3.6M root (our layout: ``h36m/``).
    malformed: "" | "shape" (S is N x 24 x 3) | "keys" (no S) | "pickle" (imgname as an object array). Returns the
    17 joints [N, 17, 3] (H36M order, root-centred) stored in S."""
    rng = np.random.default_rng(30 + protocol + 10 * train)
    base = data_root / "h36m"
    j17 = rng.standard_normal((n, 17, 3)) * 0.3
    j17 -= j17[:, :1]
    users = ["S1", "S5"] if train else ["S9", "S11"]
    cams = ["54138969", "55011271", "58860488", "60457274"] if (protocol == 1 or train) else ["60457274"]
    names, centers, scales, Ss, parts = [], [], [], [], []
    for i in range(n):
        imgname = f"{users[i % 2]}_Directions_1.{cams[i % len(cams)]}_{5 * i + 1:06d}.jpg"  # SPIN's '%s_%s.%s_%06d.jpg'
        x0, y0 = rng.integers(0, 8, 2)
        x1, y1 = x0 + rng.integers(12, 24), y0 + rng.integers(10, 16)
        S24 = np.zeros([24, 4])
        S24[list(SPIN_GLOBAL_IDX), :3] = j17[i]
        S24[list(SPIN_GLOBAL_IDX), 3] = 1
        part = np.zeros([24, 3])
        part[list(SPIN_GLOBAL_IDX), :2] = rng.uniform(0, 30, (17, 2))
        part[list(SPIN_GLOBAL_IDX), 2] = 1
        names.append(os.path.join("images", imgname))
        centers.append([(x1 + x0) / 2, (y1 + y0) / 2])
        scales.append(0.9 * max(x1 - x0, y1 - y0) / 200.0)
        Ss.append(S24)
        parts.append(part)
    arrays: dict[str, Any] = {"imgname": names, "center": centers, "scale": scales, "S": Ss}
    if train:
        arrays["part"] = parts
    if malformed == "shape":
        arrays["S"] = [S[:, :3] for S in Ss]
    if malformed == "keys":
        del arrays["S"]
    if malformed == "pickle":
        arrays["imgname"] = np.array(names, dtype=object)
    base.mkdir(parents=True, exist_ok=True)
    fname = "h36m_train.npz" if train else f"h36m_valid_protocol{protocol}.npz"
    np.savez(base / fname, **arrays)
    for i, nm in enumerate(names):
        write_image(base / nm, seed=i)
    return j17.astype(np.float32)


def make_coco_npz(data_root: Path, n: int = 3) -> Path:
    """``data_root/coco/coco_2014_train.npz`` as SPIN preprocesses COCO: 2D keypoints only (``part`` in SPIN's 24-joint
    order, ``openpose``), no 3D ``S``."""
    rng = np.random.default_rng(60)
    base = data_root / "coco"
    base.mkdir(parents=True, exist_ok=True)
    names = [f"train2014/COCO_train2014_{i:012d}.jpg" for i in range(n)]
    part = np.concatenate([rng.uniform(0, 30, (n, 24, 2)), rng.integers(0, 2, (n, 24, 1))], -1)
    np.savez(base / "coco_2014_train.npz", imgname=np.array(names), center=rng.uniform(10, 20, (n, 2)),
             scale=rng.uniform(0.1, 0.2, n), part=part, openpose=np.zeros((n, 25, 3)))
    for i, nm in enumerate(names):
        write_image(base / nm, seed=i)
    return base / "coco_2014_train.npz"


# ---------------------------------------------------------------------------------------------- FreiHAND


#: FreiHAND's number of unique training samples (lmb-freiburg/freihand ``utils/fh_utils.py::db_size``)
FREIHAND_TRAIN_SIZE = 32560


def make_freihand(data_root: Path, malformed: str = "", n_eval: int = 3, n_train: int = 2) -> dict[str, np.ndarray]:
    """``data_root/freihand/{training,evaluation}_*.json`` + ``{training,evaluation}/rgb/%08d.jpg``.

    Source: lmb-freiburg/freihand ``utils/fh_utils.py`` (``load_db_annotation``: ``<set>_K.json``, ``<set>_mano.json``,
    ``<set>_xyz.json``, one entry per sample; ``read_img``: ``<set>/rgb/%08d.jpg`` % ``sample_version.map_id(idx,
    version)`` = idx + 32560 * index of the version in (gs, hom, sample, auto), where 32560 = ``db_size('training')``
    is hard-coded; the evaluation split has the gs version only) and its README (``training_verts.json``,
    ``training_scale.json``, ``evaluation_scale.json``; ``evaluation_xyz.json``, ``evaluation_verts.json`` are public).
    K: 3 x 3 lists; xyz: 21 x 3 (metres); verts: 778 x 3; mano: 1 x 61 (``utils/model.py::split_theta``); scale: a
    scalar. With ``n_train`` < 32560 training ids the 4 versions still sit 32560 apart (ids 0.., 32560.., ...).
    malformed: "" | "count" (evaluation_xyz.json lists one frame too few) | "shape" (21 x 2 joints) | "json"
    (truncated evaluation_verts.json). Returns the evaluation arrays K, xyz, verts."""
    rng = np.random.default_rng(40)
    base = data_root / "freihand"
    base.mkdir(parents=True, exist_ok=True)
    out = {}
    for pre, n in (("evaluation", n_eval), ("training", n_train)):
        K = np.tile(np.array([[300.0, 0, 16], [0, 300.0, 16], [0, 0, 1]]), (n, 1, 1))
        xyz = rng.standard_normal((n, 21, 3)) * 0.03 + np.array([0, 0, 0.5])
        verts = rng.standard_normal((n, 778, 3)) * 0.03 + np.array([0, 0, 0.5])
        scale = np.linalg.norm(xyz[:, 9] - xyz[:, 10], axis=-1)
        files = {"K": K.tolist(), "xyz": xyz.tolist(), "verts": verts.tolist(), "scale": scale.tolist(),
                 "mano": (rng.standard_normal((n, 1, 61)) * 0.1).tolist()}
        if pre == "evaluation":
            out = {"K": K.astype(np.float32), "xyz": xyz.astype(np.float32), "verts": verts.astype(np.float32)}
            if malformed == "count":
                files["xyz"] = files["xyz"][:-1]
            if malformed == "shape":
                files["xyz"] = xyz[..., :2].tolist()
        for k, v in files.items():
            text = json.dumps(v)
            if malformed == "json" and pre == "evaluation" and k == "verts":
                text = text[: len(text) // 2]
            (base / f"{pre}_{k}.json").write_text(text)
        versions = 1 if pre == "evaluation" else 4
        for v in range(versions):
            for i in range(n):
                write_image(base / pre / "rgb" / f"{i + FREIHAND_TRAIN_SIZE * v:08d}.jpg", w=32, h=32, seed=i + v)
    return out


# ---------------------------------------------------------------------------------------------- HO3D


def _mano_joints_opengl(pose: np.ndarray, beta: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """21 joints in MANO order (16 joints + 5 tips) of the MANO posed as HO3D does (full pose, flat mean), in the
    frame of its parameters (HO3D: the OpenGL camera)."""
    from humans.models import forward
    from tasks.protocols import MANO_TO_FREIHAND

    out = forward("mano", {"global_orient": pose[None, :3], "hand_pose": pose[None, 3:], "betas": beta[None],
                           "transl": trans[None]})
    fh = out["joints"][0].numpy().astype(np.float64)  # FreiHAND order
    mano_order = np.empty_like(fh)
    mano_order[list(MANO_TO_FREIHAND)] = fh
    return mano_order


def make_ho3d(data_root: Path, version: int = 3, malformed: str = "") -> dict[str, Any]:
    """``data_root/ho3d/{train,evaluation}.txt`` + ``{train,evaluation}/<seq>/{rgb/<id>.png|jpg, meta/<id>.pkl}``.

    Source: shreyashampali/ho3d ``README.md`` (the root holds ./train/ and ./evaluation/; v3 has the v2 layout with
    jpg instead of png images; predictions in OpenGL coordinates), ``pred.py`` (``evaluation.txt``: one
    ``<seq>/<id>`` per line, in submission order), ``utils/vis_utils.py`` (``read_RGB_img``: ``<split>/<seq>/rgb/
    <id>``; ``read_annotation``: ``<split>/<seq>/meta/<id>.pkl``, read with ``encoding='latin1'`` and, failing that,
    plainly) and ``vis_HO3D.py`` (train: ``handPose`` (48,), ``handTrans`` (3,), ``handBeta`` (10,) posed with
    ``flat_hand_mean=True``, ``handJoints3D`` 21 x 3 in MANO order, ``camMat``, ``objRot``, ``objTrans``,
    ``objName``, ``objCorners3DRest``; a frame whose ``objRot`` is None "does not have annotations"; evaluation:
    only the root joint in ``handJoints3D`` (3,) and ``handBoundingBox`` (x0, y0, x1, y1)). Not published: which
    Python wrote the pickles; v2 is written as Python 2 pickles, v3 as Python 3 protocol-2 pickles, so both paths
    of ``read_annotation`` are exercised. The train list file: ``train.txt`` (same format as evaluation.txt).

    Train: MC1/0000-0002, frame 0001 without annotation; evaluation: SM1/0000, SM1/0001. Joints of the train frames
    are those of their MANO parameters (as in the real data). malformed: "" | "shape" (camMat 3 x 4) | "list" (a
    bad evaluation.txt line) | "code". Returns {"train_joints": [2, 21, 3] MANO order OpenGL, "eval_ids": [...]}."""
    rng = np.random.default_rng(50)
    base = data_root / "ho3d"
    ext = ".jpg" if version == 3 else ".png"
    K = np.array([[600.0, 0, 16], [0, 600.0, 12], [0, 0, 1]])
    train_joints = []
    lines = {"train": ["MC1/0000", "MC1/0001", "MC1/0002"], "evaluation": ["SM1/0000", "SM1/0001"]}
    for split, names in lines.items():
        for i, name in enumerate(names):
            seq, fid = name.split("/")
            meta: dict[str, Any] = {"camMat": K.copy(), "objName": "003_cracker_box", "objLabel": 2,
                                    "objRot": np.zeros((3, 1)), "objTrans": np.array([0.0, 0.0, -0.6]),
                                    "objCorners3DRest": np.zeros((8, 3)), "objCorners3D": np.zeros((8, 3))}
            if split == "train":
                pose, beta = rng.standard_normal(48) * 0.2, rng.standard_normal(10) * 0.3
                trans = np.array([0.02, -0.01, -0.5])  # OpenGL: in front of the camera is -z
                if fid == "0001":
                    meta.update(handJoints3D=None, handPose=None, handTrans=None, handBeta=None, objRot=None)
                else:
                    j = _mano_joints_opengl(pose, beta, trans)
                    meta.update(handJoints3D=j, handPose=pose, handTrans=trans, handBeta=beta)
                    train_joints.append(j)
            else:
                meta.update(handJoints3D=np.array([0.01, 0.02, -0.5]),
                            handBoundingBox=np.array([4.0, 3.0, 26.0, 20.0]))
            if malformed == "shape" and split == "evaluation" and i == 1:
                meta["camMat"] = np.zeros((3, 4))
            raw = py2_pickle(meta) if version == 2 else py3_pickle_numpy1(meta, 2)
            if malformed == "code" and split == "train" and i == 0:
                raw = code_pickle(data_root / "pwned-ho3d")
            mdir = base / split / seq / "meta"
            mdir.mkdir(parents=True, exist_ok=True)
            (mdir / f"{fid}.pkl").write_bytes(raw)
            write_image(base / split / seq / "rgb" / f"{fid}{ext}", seed=i)
        text = "\n".join(names) + "\n"
        if malformed == "list" and split == "evaluation":
            text += "not-a-frame-line\n"
        (base / f"{split}.txt").write_text(text)
    return {"train_joints": np.stack(train_joints).astype(np.float32), "eval_ids": lines["evaluation"]}


# ---------------------------------------------------------------------------------------------- ImageFolder


def make_imagefolder(data_root: Path, malformed: str = "", classes: tuple[str, ...] = ("fist", "open", "point"),
                     per_class: int = 2) -> list[str]:
    """``data_root/imagefolder/{train,test}/<class>/*.jpg``. malformed: "" | "extra" (a test class unknown to
    train) | "empty" (an empty class folder)."""
    base = data_root / "imagefolder"
    for split in ("train", "test"):
        for c, name in enumerate(classes):
            for k in range(per_class):
                write_image(base / split / name / f"{k:03d}.jpg", seed=10 * c + k)
    if malformed == "extra":
        write_image(base / "test" / "wave" / "000.jpg")
    if malformed == "empty":
        (base / "train" / "pinch").mkdir(parents=True)
    return list(classes)


# ---------------------------------------------------------------------------------------------- per task


def make_models(models_dir: Path) -> Path:
    """A ``$CPCBENCH_MODELS`` folder: ``smpl/SMPL_{NEUTRAL,MALE,FEMALE}.pkl`` + ``smpl/J_regressor_h36m.npy`` and
    ``mano/MANO_RIGHT.pkl``. The procedurally generated models (``humans.models``, same file layout) stand in for
    the real ones, which the real-benchmark tasks insist on. Point ``$CPCBENCH_MODELS`` at the returned folder."""
    import os
    import shutil

    from humans.models import model_file, read_model_file

    saved = os.environ.pop("CPCBENCH_MODELS", None)  # copy the generated files, never a user's real ones
    try:
        (models_dir / "smpl").mkdir(parents=True, exist_ok=True)
        (models_dir / "mano").mkdir(parents=True, exist_ok=True)
        for g in ("neutral", "male", "female"):
            src = model_file("smpl", g)
            shutil.copy(src, models_dir / "smpl" / f"SMPL_{g.upper()}.pkl")
        np.save(models_dir / "smpl" / "J_regressor_h36m.npy", read_model_file(src)["J_regressor_h36m"])
        shutil.copy(model_file("mano", "right"), models_dir / "mano" / "MANO_RIGHT.pkl")
    finally:
        if saved is not None:
            os.environ["CPCBENCH_MODELS"] = saved
    return models_dir


def make_for_task(name: str, data_root: Path) -> None:
    """A data root with the train and test splits of real task ``name`` in its published format. The body and hand
    tasks also need ``$CPCBENCH_MODELS`` (see ``make_models``); this function does not touch the environment."""
    if name == "3dpw":
        for split in ("train", "validation", "test"):
            make_pw3d(data_root, split)
    elif name == "emdb":
        make_emdb(data_root)
        make_pw3d(data_root, "train")  # EMDB fine-tunes on 3DPW train
    elif name in ("h36m-p1", "h36m-p2"):
        make_h36m(data_root, 1)
        make_h36m(data_root, 2)
        make_h36m(data_root, 1, train=True)
    elif name == "freihand":
        make_freihand(data_root)
    elif name == "ho3d":
        make_ho3d(data_root, version=3)
    elif name == "imagefolder":
        make_imagefolder(data_root)
    else:
        raise KeyError(f"no fixture for real task {name!r}")
