"""Tiny fixtures in exactly the published formats of the real benchmarks (shared/reference/protocols-and-formats.md
section B), plus a malformed variant of each. Used by tests/test_real_tasks.py.

Pickles of 3DPW and HO3D are written as Python 2 wrote them: protocol 2, every ``str`` as a Python 2 byte string
(BINSTRING opcodes, read back with ``encoding="latin1"``), numpy arrays through numpy 1.x's
``numpy.core.multiarray._reconstruct``. EMDB's pickles are Python 3 (protocol 4) with numpy 1.x names.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# ---------------------------------------------------------------------------------------------- pickles


class _NumpyOnePickler(pickle._Pickler):  # the pure-Python pickler, so that opcodes can be overridden
    """Writes numpy globals under numpy 1.x's names (``numpy.core.*``), as the published files have them."""

    def save_global(self, obj: Any, name: str | None = None) -> None:
        module = getattr(obj, "__module__", "")
        qual = name or getattr(obj, "__qualname__", obj.__name__)
        if module.startswith("numpy._core"):
            module = "numpy.core" + module[len("numpy._core"):]
        elif module.startswith("numpy") and qual in ("ndarray", "dtype"):
            module = "numpy"
        self.write(pickle.GLOBAL + module.encode() + b"\n" + qual.encode() + b"\n")
        self.memoize(obj)

    dispatch = dict(pickle._Pickler.dispatch)


class _Py2Pickler(_NumpyOnePickler):
    """Protocol 2 with Python 2 byte strings: ``str`` and ``bytes`` both become BINSTRING / SHORT_BINSTRING."""

    def _save_py2_str(self, obj: str | bytes) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        n = len(data)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + data)
        self.memoize(obj)

    dispatch = dict(_NumpyOnePickler.dispatch)
    dispatch[str] = _save_py2_str
    dispatch[bytes] = _save_py2_str


def py2_pickle(obj: Any) -> bytes:
    """``obj`` pickled as Python 2 + numpy 1.x would have written it (protocol 2, byte strings)."""
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def py3_pickle_numpy1(obj: Any) -> bytes:
    """``obj`` pickled by Python 3 (protocol 4) with numpy 1.x global names."""
    buf = io.BytesIO()
    _NumpyOnePickler(buf, protocol=4).dump(obj)
    return buf.getvalue()


class CodeCarrier:
    """Unpickling this runs ``os.system("touch <marker>")`` — what a hostile pickle in a data root could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        import os

        return (os.system, (f"touch {self.marker}",))


def code_pickle(marker: Path, protocol: int = 2) -> bytes:
    """A dict that looks like annotations but carries code (one value is a ``CodeCarrier``)."""
    return pickle.dumps({"sequence": "evil", "poses": [CodeCarrier(marker)]}, protocol=protocol)


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
    """``data_root/3dpw/sequenceFiles/<split>/{courtyard_a,downtown_b}_00.pkl`` + ``imageFiles``.

    Frame filter cases: actor 0 of courtyard_a has campose_valid False at frame 1 and no 2D detection (poses2d all
    zero) at frame 2; courtyard_a has 2 actors. malformed: "" | "shape" (poses N x 71) | "keys" (no
    campose_valid) | "code" (a value that runs code). Returns the kept (sequence, actor, frame), in read order.
    """
    base = data_root / "3dpw"
    seq_dir = base / "sequenceFiles" / split
    seq_dir.mkdir(parents=True, exist_ok=True)
    kept: list[tuple[str, int, int]] = []
    for s, (name, actors) in enumerate((("courtyard_a_00", 2), ("downtown_b_00", 1))):
        rng = np.random.default_rng(10 + s)
        cam_poses = np.tile(np.eye(4), (n, 1, 1))
        for f in range(n):
            cam_poses[f, :3, :3] = _rot(rng)
            cam_poses[f, :3, 3] = rng.standard_normal(3)
        poses, betas, trans, p2d, valid, genders = [], [], [], [], [], []
        for a in range(actors):
            poses.append(_rand_pose(rng, n, 72))
            betas.append(rng.standard_normal(10) * 0.5)
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
            "poses_60Hz": poses, "trans_60Hz": trans, "genders": genders, "poses2d": p2d,
            "jointPositions": [rng.standard_normal((n, 72)) for _ in range(actors)],
            "img_frame_ids": np.arange(n) * 2, "cam_poses": cam_poses, "campose_valid": valid,
            "cam_intrinsics": np.array([[50.0, 0, 16], [0, 50.0, 12], [0, 0, 1]]), "texture_maps": [],
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


def make_emdb(data_root: Path, malformed: str = "", n: int = 6) -> list[tuple[str, int]]:
    """``data_root/emdb/P0/<seq>/P0_<seq>_data.pkl`` (+ images): P0/01_walk (emdb1, frames 2 and 3 not good,
    frame 4's bbox invalid), P1/02_run (emdb2 only: not in the test set). malformed: "" | "shape" (kp2d n x 23 x 2)
    | "keys" (no good_frames_mask) | "code". Returns the kept (name, frame)."""
    kept = []
    for p, (subj, seq, emdb1) in enumerate((("P0", "01_walk", True), ("P1", "02_run", False))):
        rng = np.random.default_rng(20 + p)
        d = data_root / "emdb" / subj / seq
        ext = np.tile(np.eye(4), (n, 1, 1))
        for f in range(n):
            ext[f, :3, :3] = _rot(rng)
        good = np.ones(n, bool)
        if emdb1:
            good[[2, 3]] = False
        boxes = np.tile(np.array([4.0, 3.0, 28.0, 22.0]), (n, 1))
        data: dict[str, Any] = {
            "gender": "female" if p == 0 else "male", "name": f"{subj}_{seq}", "emdb1": emdb1, "emdb2": not emdb1,
            "n_frames": n, "good_frames_mask": good,
            "camera": {"intrinsics": np.array([[40.0, 0, 16], [0, 40.0, 12], [0, 0, 1]]), "extrinsics": ext,
                       "width": 32, "height": 24},
            "smpl": {"poses_root": _rand_pose(rng, n, 3), "poses_body": _rand_pose(rng, n, 69),
                     "trans": rng.standard_normal((n, 3)), "betas": rng.standard_normal(10) * 0.5},
            "kp2d": rng.uniform(1, 20, (n, 24, 2)),
            "bboxes": {"bboxes": boxes, "invalid_idxs": np.array([4])},
        }
        if malformed == "shape":
            data["kp2d"] = data["kp2d"][:, :23]
        if malformed == "keys":
            del data["good_frames_mask"]
        raw = py3_pickle_numpy1(data) if malformed != "code" else code_pickle(data_root / "pwned-emdb", 4)
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
    """``data_root/h36m/h36m_valid_protocol{p}.npz`` (or ``h36m_train.npz``) as SPIN's preprocessing writes it
    + images. malformed: "" | "shape" (S is N x 24 x 3) | "keys" (no S) | "pickle" (imgname as an object array).
    Returns the 17 joints [N, 17, 3] (H36M order, root-centred) stored in S."""
    rng = np.random.default_rng(30 + protocol)
    base = data_root / "h36m"
    j17 = rng.standard_normal((n, 17, 3)) * 0.3
    j17 -= j17[:, :1]
    S = np.zeros((n, 24, 4))
    S[:, list(SPIN_GLOBAL_IDX), :3] = j17
    S[:, list(SPIN_GLOBAL_IDX), 3] = 1.0
    cams = ["54138969", "55011271", "58860488", "60457274"] if protocol == 1 else ["60457274"]
    names = [f"images/S9_Directions_1.{cams[i % len(cams)]}_{5 * i + 1:06d}.jpg" for i in range(n)]
    arrays: dict[str, Any] = {"imgname": np.array(names), "center": rng.uniform(10, 20, (n, 2)),
                              "scale": rng.uniform(0.08, 0.12, n), "S": S,
                              "part": np.concatenate([rng.uniform(0, 30, (n, 24, 2)), np.ones((n, 24, 1))], -1)}
    if train:
        arrays.update(pose=_rand_pose(rng, n, 72), shape=rng.standard_normal((n, 10)), has_smpl=np.ones(n))
    if malformed == "shape":
        arrays["S"] = S[..., :3]
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


def make_freihand(data_root: Path, malformed: str = "", n_eval: int = 3, n_train: int = 2) -> dict[str, np.ndarray]:
    """``data_root/freihand/{training,evaluation}_*.json`` + ``{training,evaluation}/rgb/%08d.jpg`` (training: 4
    versions). malformed: "" | "count" (evaluation_xyz.json lists one frame too few) | "shape" (21 x 2 joints) |
    "json" (truncated evaluation_verts.json). Returns the evaluation arrays K, xyz, verts."""
    rng = np.random.default_rng(40)
    base = data_root / "freihand"
    base.mkdir(parents=True, exist_ok=True)
    out = {}
    for pre, n in (("evaluation", n_eval), ("training", n_train)):
        K = np.tile(np.array([[300.0, 0, 16], [0, 300.0, 16], [0, 0, 1]]), (n, 1, 1))
        xyz = rng.standard_normal((n, 21, 3)) * 0.03 + np.array([0, 0, 0.5])
        verts = rng.standard_normal((n, 778, 3)) * 0.03 + np.array([0, 0, 0.5])
        scale = np.linalg.norm(xyz[:, 9] - xyz[:, 10], axis=-1)
        files = {"K": K.tolist(), "xyz": xyz.tolist(), "verts": verts.tolist(), "scale": scale.tolist()}
        if pre == "training":
            files["mano"] = (rng.standard_normal((n, 1, 61)) * 0.1).tolist()
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
        for i in range(n * versions):
            write_image(base / pre / "rgb" / f"{i:08d}.jpg", w=32, h=32, seed=i)
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
    """``data_root/ho3d/{train,evaluation}.txt`` + ``{train,evaluation}/<seq>/{rgb,meta}`` with Python 2 meta
    pickles (OpenGL coordinates; train joints are those of the MANO parameters, as in the real data). Train:
    MC1/0000-0002, frame 0001 without hand annotation; evaluation: SM1/0000,
    SM1/0001 (root joint + hand box only). version 2 writes png, 3 jpg. malformed: "" | "shape" (camMat 3 x 4) |
    "list" (a bad evaluation.txt line) | "code". Returns {"train_joints": [2, 21, 3] MANO order OpenGL,
    "eval_ids": [...]}."""
    rng = np.random.default_rng(50)
    base = data_root / "ho3d"
    ext = ".jpg" if version == 3 else ".png"
    K = np.array([[600.0, 0, 16], [0, 600.0, 12], [0, 0, 1]])
    train_joints = []
    lines = {"train": ["MC1/0000", "MC1/0001", "MC1/0002"], "evaluation": ["SM1/0000", "SM1/0001"]}
    for split, names in lines.items():
        for i, name in enumerate(names):
            seq, fid = name.split("/")
            meta: dict[str, Any] = {"camMat": K.copy(), "objName": "003_cracker_box", "objRot": np.zeros((3, 1)),
                                    "objTrans": np.array([0.0, 0.0, -0.6]), "objCorners3DRest": np.zeros((8, 3))}
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
            raw = py2_pickle(meta)
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
        make_pw3d(data_root, "test")
        make_pw3d(data_root, "train")
    elif name == "emdb":
        make_emdb(data_root)
        make_pw3d(data_root, "train")  # EMDB fine-tunes on 3DPW train
    elif name in ("h36m-p1", "h36m-p2"):
        p = int(name[-1])
        make_h36m(data_root, p)
        make_h36m(data_root, p, train=True)
    elif name == "freihand":
        make_freihand(data_root)
    elif name == "ho3d":
        make_ho3d(data_root)
    elif name == "imagefolder":
        make_imagefolder(data_root)
    else:
        raise KeyError(f"no fixture for real task {name!r}")
