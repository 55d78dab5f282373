"""Body and hand models through ``smplx``: real SMPL/MANO files when the user has them, else our generated ones.

Resolution order for ``load_model(kind, gender)``:

1. ``$CPCBENCH_MODELS`` (a folder; also searched in its ``smpl/`` and ``mano/`` subfolders): ``SMPL_NEUTRAL.pkl``,
   ``SMPL_MALE.pkl``, ``SMPL_FEMALE.pkl``, ``MANO_RIGHT.pkl`` (or the same names with ``.npz``; the official
   download names ``basicmodel_{neutral,m,f}_lbs_10_207_0_v1.*.pkl`` are recognised too). Official
   pickles that hold chumpy objects load too (read with a restricted unpickler that needs no chumpy); to
   write a clean copy once use ``convert_official``. An optional ``J_regressor_h36m.npy`` is used as the
   H36M-17 regressor: beside the SMPL file, or at the root of ``$CPCBENCH_MODELS`` (SPIN's and 4D-Humans'
   layout: ``data/J_regressor_h36m.npy`` beside ``data/smpl/``; ``h36m_regressor_file`` says which).
2. Otherwise the procedurally generated models (``humans.body_model``, ``humans.hand_model``), written on first
   use, deterministically and atomically, to ``$CPCBENCH_CACHE/models/v<version>-<digest>/`` (default
   ``~/.cache/cpcbench/models``; the digest hashes the generator sources, so a changed generator never reuses a
   stale file) as the same plain-numpy pickle layout, and loaded by smplx like a real file.

Joints: body = the 24 SMPL joints (smplx's output joints [:24]); hand = 21 keypoints in FreiHAND order
(16 MANO joints + 5 fingertip vertices, smplx's tip ids 744, 320, 443, 554, 671, reordered with
``MANO_TO_FREIHAND``). MANO is built with ``use_pca=False, flat_hand_mean=True``: ``hand_pose`` [B, 45] is
the full axis-angle articulation of the 15 finger joints relative to the flat template hand (zeros = flat
open hand). Convention of our generated files (shared with real SMPL/MANO): y up; body faces +z, its left
is +x; the MANO right hand has fingers along -x, palm facing -y, thumb towards +z.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import pickle
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from core.errors import CpcbenchError
from core.io import atomic_write
from humans import body_skeleton
from humans.body_model import generate_smpl
from humans.hand_model import generate_mano

if TYPE_CHECKING:
    import smplx
    import torch

log = logging.getLogger("cpcbench.humans")

GENERATOR_VERSION = 1
MANO_TIP_IDS: list[int] = [744, 320, 443, 554, 671]  # smplx's thumb, index, middle, ring, pinky tips
MANO_TO_FREIHAND: list[int] = [0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20]
FREIHAND_NAMES: list[str] = ["wrist"] + [f"{f}{k}" for f in ("thumb", "index", "middle", "ring", "pinky")
                                         for k in range(1, 5)]
FREIHAND_PARENTS: list[int] = [-1] + [p for f in range(5) for p in (0, 1 + 4 * f, 2 + 4 * f, 3 + 4 * f)]
HAND_PART_NAMES: list[str] = ["palm", "thumb", "index", "middle", "ring", "pinky"]
# MANO joint (0 wrist, 1-3 index, 4-6 middle, 7-9 pinky, 10-12 ring, 13-15 thumb) -> hand part id (1..6)
_MANO_JOINT_PART = [1, 3, 3, 3, 4, 4, 4, 6, 6, 6, 5, 5, 5, 2, 2, 2]
# SMPL joint -> body part id (1..14, humans.body_skeleton.PART_NAMES order)
_SMPL_JOINT_PART = [2, 9, 10, 2, 11, 12, 2, 13, 14, 2, 13, 14, 1, 2, 2, 1, 3, 4, 5, 6, 7, 8, 7, 8]

Kind = Literal["smpl", "mano"]
_FILES = {("smpl", "neutral"): "SMPL_NEUTRAL", ("smpl", "male"): "SMPL_MALE", ("smpl", "female"): "SMPL_FEMALE",
          ("mano", "neutral"): "MANO_RIGHT", ("mano", "right"): "MANO_RIGHT"}
#: the modules the generated models are made by (every humans module body_model and hand_model import)
GENERATOR_SOURCES = ("meshkit.py", "body_skeleton.py", "body_mesh.py", "body_model.py", "hand_model.py",
                     "hand_poses.py")
_lock = threading.Lock()
_model_cache: dict[tuple, Any] = {}
_data_cache: dict[tuple, dict[str, Any]] = {}


# ----------------------------------------------------------------------------------------------- files
@functools.lru_cache(maxsize=1)
def _generator_digest() -> str:
    """Short hash of the generator sources: a changed generator never reuses a stale cached file."""
    import hashlib

    h = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for name in GENERATOR_SOURCES:
        h.update((here / name).read_bytes())
    return h.hexdigest()[:10]


def cache_dir() -> Path:
    """Where generated model files live: ``$CPCBENCH_CACHE/models/v<version>-<generator digest>``."""
    root = Path(os.environ.get("CPCBENCH_CACHE") or Path.home() / ".cache" / "cpcbench")
    return root / "models" / f"v{GENERATOR_VERSION}-{_generator_digest()}"


def _stem(kind: str, gender: str) -> str:
    if kind not in ("smpl", "mano"):
        raise CpcbenchError(f"unknown model kind {kind!r}; use 'smpl' or 'mano'")
    key = (kind, gender.lower())
    if key not in _FILES:
        choices = "neutral, male, female" if kind == "smpl" else "right (or neutral)"
        raise CpcbenchError(f"unknown gender {gender!r} for {kind}; use one of: {choices}")
    return _FILES[key]


def real_model_file(kind: str, gender: str = "neutral") -> Path | None:
    """The user's real model file for (kind, gender) under ``$CPCBENCH_MODELS``, or None."""
    root = os.environ.get("CPCBENCH_MODELS")
    if not root:
        return None
    stem = _stem(kind, gender)
    for sub in ("", kind, kind.upper()):
        for ext in (".pkl", ".npz"):
            p = Path(root) / sub / f"{stem}{ext}"
            if p.is_file():
                return p
    # the names of the official SMPL downloads (v1.0.0 / v1.1.0), e.g. basicModel_neutral_lbs_10_207_0_v1.0.0.pkl
    official = {("smpl", "neutral"): "basicmodel_neutral_lbs_10_207_0_v1.",
                ("smpl", "male"): "basicmodel_m_lbs_10_207_0_v1.",
                ("smpl", "female"): "basicmodel_f_lbs_10_207_0_v1."}.get((kind, gender.lower()))
    if official:
        for sub in ("", kind, kind.upper()):
            d = Path(root) / sub
            if d.is_dir():
                hits = sorted(p for p in d.iterdir() if p.name.lower().startswith(official) and p.suffix == ".pkl")
                if hits:
                    return hits[-1]
    return None


def model_file(kind: Kind, gender: str = "neutral") -> Path:
    """The file ``load_model`` reads: the real one if present, else our generated one (written if missing)."""
    real = real_model_file(kind, gender)
    if real is not None:
        return real
    path = cache_dir() / f"{_stem(kind, gender)}.pkl"
    if not path.is_file():
        with _lock:
            if not path.is_file():
                log.info("generating the synthetic %s model (%s) into %s", kind, gender, path)
                data = _generate(kind, gender)

                def write(tmp: Path) -> None:
                    with open(tmp, "wb") as f:
                        pickle.dump(data, f, protocol=4)

                atomic_write(path, write)
    return path


def _generate(kind: str, gender: str) -> dict[str, np.ndarray]:
    if kind == "smpl":
        return generate_smpl(gender)
    elif kind == "mano":
        return generate_mano()
    else:
        raise CpcbenchError(f"unknown model kind {kind!r}; use 'smpl' or 'mano'")


class _ChumpyStub:
    """Stands in for chumpy's ``Ch`` classes while unpickling: keeps the state, whose ``x`` is the array."""

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __call__(self, *args: Any, **kwargs: Any) -> _ChumpyStub:  # some pickles call the class
        return self

    def array(self) -> np.ndarray:
        st = getattr(self, "state", None)
        if isinstance(st, dict) and isinstance(st.get("x"), np.ndarray | list | tuple | float | int):
            return np.asarray(st["x"])  # a plain chumpy ``Ch`` keeps its value in ``x``
        raise CpcbenchError("a chumpy object in the model file holds no array (a chumpy expression?); "
                            "is this an official SMPL/MANO file?")


class _ModelUnpickler(pickle.Unpickler):
    """Unpickles model files allowing only numpy, scipy.sparse and (stubbed) chumpy classes."""

    _SAFE = {("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"), ("__builtin__", "object"),
             ("builtins", "object"), ("copyreg", "__newobj__"), ("numpy", "ndarray"), ("numpy", "dtype"),
             ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] == "chumpy":
            return _ChumpyStub
        if (module, name) in self._SAFE:
            return super().find_class(module, name)
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in ("_reconstruct", "scalar"):
            return super().find_class(module, name)
        if module in ("numpy.core.numeric", "numpy._core.numeric") and name == "_frombuffer":
            return super().find_class(module, name)
        if module.startswith("scipy.sparse") and name in ("csc_matrix", "csr_matrix", "coo_matrix"):
            import scipy.sparse

            return getattr(scipy.sparse, name)
        raise pickle.UnpicklingError(f"model file refers to {module}.{name}, which a model file should not")


def _clean(obj: Any) -> Any:
    if isinstance(obj, _ChumpyStub):
        return obj.array()
    if hasattr(obj, "toarray") and hasattr(obj, "tocsr"):  # scipy sparse
        return np.asarray(obj.toarray())
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    return obj


_REQUIRED = ("v_template", "f", "weights", "J_regressor", "kintree_table", "shapedirs", "posedirs")


def _clean_top(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """Clean every entry; an optional entry that cannot be turned into arrays (e.g. a chumpy expression) is
    dropped with a warning, a required one is an error."""
    out = {}
    for k, v in data.items():
        try:
            out[k] = _clean(v)
        except CpcbenchError:
            if k in _REQUIRED:
                raise
            log.warning("%s: dropping entry %r (a chumpy object without a stored array)", path, k)
    return out


def read_model_file(path: str | Path) -> dict[str, Any]:
    """The arrays of a SMPL/MANO model file (.pkl, official chumpy pickles included, or .npz) as plain numpy."""
    path = Path(path)
    if not path.is_file():
        raise CpcbenchError(f"model file {path} does not exist")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        else:
            with open(path, "rb") as f:
                data = _ModelUnpickler(f, encoding="latin1").load()
    except (OSError, ValueError, EOFError, pickle.UnpicklingError, AttributeError, TypeError) as e:
        raise CpcbenchError(f"cannot read model file {path}: {e}; is it a SMPL/MANO .pkl or .npz?") from e
    if not isinstance(data, dict):
        raise CpcbenchError(f"model file {path} holds a {type(data).__name__}, not a dict of arrays")
    data = _clean_top(data, path)
    missing = set(_REQUIRED) - set(data)
    if missing:
        raise CpcbenchError(f"model file {path} lacks {sorted(missing)}; is it a SMPL/MANO model file?")
    return data


def convert_official(src_pkl: str | Path, dst: str | Path) -> Path:
    """Turn an official (chumpy) SMPL/MANO pickle into a clean pickle of numpy arrays (or .npz if ``dst`` ends
    with .npz), without chumpy installed. Returns ``dst``."""
    data = read_model_file(src_pkl)
    dst = Path(dst)
    clean = {k: (np.asarray(v) if not isinstance(v, str | bytes) else v) for k, v in data.items()}

    def write(tmp: Path) -> None:
        if dst.suffix == ".npz":
            with open(tmp, "wb") as f:
                np.savez(f, **{k: np.asarray(v) for k, v in clean.items() if np.asarray(v).dtype != object})
        else:
            with open(tmp, "wb") as f:
                pickle.dump(clean, f, protocol=4)

    return atomic_write(dst, write)


def _data(kind: Kind, gender: str) -> tuple[Path, dict[str, Any]]:
    path = model_file(kind, gender)
    key = (str(path), path.stat().st_mtime_ns)
    if key not in _data_cache:
        _data_cache[key] = read_model_file(path)
    return path, _data_cache[key]


# ----------------------------------------------------------------------------------------------- models
def load_model(kind: Kind, gender: str = "neutral", batch_size: int = 1) -> smplx.SMPL | smplx.MANO:
    """An ``smplx.SMPL`` (24 joints + smplx's extra keypoints) or ``smplx.MANO`` (right hand, full 45-d
    axis-angle ``hand_pose``, ``flat_hand_mean=True``) module on the CPU, cached per (kind, gender, batch_size,
    file). Real files from ``$CPCBENCH_MODELS`` when present, else our generated ones."""
    import smplx
    from smplx.utils import Struct

    path, data = _data(kind, gender)
    key = (kind, gender.lower(), int(batch_size), str(path))
    with _lock:
        if key in _model_cache:
            return _model_cache[key]
    struct = Struct(**data)
    with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a warning about 10 shape coefficients
        if kind == "smpl":
            model = smplx.SMPL(model_path=str(path), data_struct=struct, gender=gender.lower(),
                               batch_size=batch_size)
        elif kind == "mano":
            model = smplx.MANO(model_path=str(path), data_struct=struct, is_rhand=True, use_pca=False,
                               flat_hand_mean=True, batch_size=batch_size)
        else:
            raise CpcbenchError(f"unknown model kind {kind!r}; use 'smpl' or 'mano'")
    model.eval()
    with _lock:
        _model_cache[key] = model
    return model


def _as_tensor(x: Any, name: str, width: int, batch: int | None) -> torch.Tensor:
    import torch

    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float32)
    if t.ndim != 2 or t.shape[1] != width or (batch is not None and t.shape[0] != batch):
        want = f"[{batch if batch is not None else 'B'}, {width}]"
        raise CpcbenchError(f"model parameter {name!r} has shape {list(t.shape)}, expected {want}")
    if not torch.isfinite(t).all():
        raise CpcbenchError(f"model parameter {name!r} holds NaN or inf")
    return t


def forward(kind: Kind, params: dict[str, Any], model: smplx.SMPL | smplx.MANO | None = None) -> dict[str, Any]:
    """Pose a model. ``params``: body ``global_orient`` [B,3], ``body_pose`` [B,69], ``betas`` [B,10] (default 0),
    ``transl`` [B,3] (default 0); hand ``global_orient`` [B,3], ``hand_pose`` [B,45], ``betas`` [B,10],
    ``transl``. Tensors or arrays. Returns ``verts`` [B,V,3] and ``joints`` [B,24,3] (body, SMPL order) or
    [B,21,3] (hand, FreiHAND order), float32 tensors."""
    import torch

    pose_key, pose_dim = {"smpl": ("body_pose", 69), "mano": ("hand_pose", 45)}.get(kind, (None, 0))
    if pose_key is None:
        raise CpcbenchError(f"unknown model kind {kind!r}; use 'smpl' or 'mano'")
    unknown = set(params) - {"global_orient", pose_key, "betas", "transl"}
    if unknown:
        raise CpcbenchError(f"unknown {kind} parameters {sorted(unknown)}; expected global_orient, {pose_key}, "
                            "betas, transl")
    if "global_orient" not in params or pose_key not in params:
        raise CpcbenchError(f"{kind} forward needs 'global_orient' and {pose_key!r}")
    go = _as_tensor(params["global_orient"], "global_orient", 3, None)
    b = go.shape[0]
    pose = _as_tensor(params[pose_key], pose_key, pose_dim, b)
    betas = _as_tensor(params["betas"], "betas", 10, b) if "betas" in params else torch.zeros(b, 10)
    transl = _as_tensor(params["transl"], "transl", 3, b) if "transl" in params else torch.zeros(b, 3)
    if model is None:
        model = load_model(kind)
    with torch.no_grad() if not any(t.requires_grad for t in (go, pose, betas, transl)) else contextlib.nullcontext():
        if kind == "smpl":
            out = model(betas=betas, global_orient=go, body_pose=pose, transl=transl)
            joints = out.joints[:, :24]
        else:
            out = model(betas=betas, global_orient=go, hand_pose=pose, transl=transl)
            tips = out.vertices[:, MANO_TIP_IDS]
            joints = torch.cat([out.joints[:, :16], tips], dim=1)[:, MANO_TO_FREIHAND]
    return {"verts": out.vertices, "joints": joints}


# ----------------------------------------------------------------------------------------------- info
def joint_parts(kind: Kind) -> list[int]:
    """The part id (1-based, in ``part_names`` order; 0 is background) of the segment each joint drives: SMPL's
    24 joints (``humans.body_skeleton.PART_NAMES``) or MANO's 16 (``HAND_PART_NAMES``)."""
    if kind not in ("smpl", "mano"):
        raise CpcbenchError(f"unknown model kind {kind!r}; use 'smpl' or 'mano'")
    return list(_SMPL_JOINT_PART if kind == "smpl" else _MANO_JOINT_PART)


def model_info(kind: Kind, gender: str = "neutral") -> dict[str, Any]:
    """Static facts about the model ``load_model(kind, gender)`` returns (see the module docstring)."""
    path, data = _data(kind, gender)
    faces = np.asarray(data["f"], dtype=np.int64)
    weights = np.asarray(data["weights"], dtype=np.float64)
    v = np.asarray(data["v_template"], dtype=np.float64)
    synthetic = "generator" in data
    info: dict[str, Any] = {"faces": faces, "num_verts": int(v.shape[0]),
                            "source": "synthetic" if synthetic else f"real: {path}"}
    if kind == "smpl":
        info["joint_names"] = list(body_skeleton.JOINT_NAMES)
        info["parents"] = list(body_skeleton.PARENTS)
        info["part_names"] = list(body_skeleton.PART_NAMES)
        if "part_of_vertex" in data:
            info["part_of_vertex"] = np.asarray(data["part_of_vertex"], dtype=np.int64)
        else:
            info["part_of_vertex"] = np.asarray(_SMPL_JOINT_PART)[weights.argmax(1)]
        info["h36m_names"] = list(body_skeleton.H36M_NAMES)
        info["h36m_regressor"], info["h36m_regressor_source"] = _h36m_for(data, path)
    elif kind == "mano":
        info["joint_names"] = list(FREIHAND_NAMES)
        info["parents"] = list(FREIHAND_PARENTS)
        info["part_names"] = list(HAND_PART_NAMES)
        if "part_of_vertex" in data:
            info["part_of_vertex"] = np.asarray(data["part_of_vertex"], dtype=np.int64)
        else:
            info["part_of_vertex"] = np.asarray(_MANO_JOINT_PART)[weights.argmax(1)]
        info["fingertip_ids"] = list(MANO_TIP_IDS)
    else:
        raise CpcbenchError(f"unknown model kind {kind!r}; use 'smpl' or 'mano'")
    return info


def h36m_regressor_file(model_path: Path | None = None) -> Path | None:
    """The user's ``J_regressor_h36m.npy`` for the real SMPL file ``model_path`` (default: the real neutral SMPL),
    or None. Looked for beside the SMPL file first, then at the root of ``$CPCBENCH_MODELS`` (nkolot/SPIN
    ``config.py``: ``JOINT_REGRESSOR_H36M = 'data/J_regressor_h36m.npy'`` next to ``SMPL_MODEL_DIR = 'data/smpl'``).
    Only real models get a user regressor: a generated model keeps its own."""
    root = os.environ.get("CPCBENCH_MODELS")
    if model_path is None:
        model_path = real_model_file("smpl", "neutral")
    if not root or model_path is None:
        return None
    # absolute, not resolved: a symlinked model file still counts as the user's
    model_path, base = Path(os.path.abspath(model_path)), Path(os.path.abspath(root))
    if not model_path.is_relative_to(base):  # a generated model (the cache), not the user's
        return None
    for cand in (model_path.parent / "J_regressor_h36m.npy", base / "J_regressor_h36m.npy"):
        if cand.is_file():
            return cand
    return None


def _h36m_for(data: dict[str, Any], path: Path) -> tuple[np.ndarray, str]:
    """([17, V], source): the user's ``J_regressor_h36m.npy`` (``h36m_regressor_file``; source = its path), our
    generated one (source ``"generated"``), or an approximation from the SMPL joint regressor (hips/knees/... rows)
    plus head-top and nose vertices (source ``"approximated"``)."""
    user = h36m_regressor_file(path)
    if user is not None:
        try:
            r = np.load(user, allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            raise CpcbenchError(f"cannot read {user}: {err}; re-download J_regressor_h36m.npy (SPIN's data)") from err
        if r.shape == (17, len(data["v_template"])):
            return r, str(user)
        raise CpcbenchError(f"{user} has shape {r.shape}, expected (17, {len(data['v_template'])})")
    if "J_regressor_h36m" in data:
        return np.asarray(data["J_regressor_h36m"], dtype=np.float64), "generated"
    jreg = np.asarray(data["J_regressor"], dtype=np.float64)
    v = np.asarray(data["v_template"], dtype=np.float64)
    head = np.asarray(data["weights"]).argmax(1) == 15
    ys = np.where(head, v[:, 1], -np.inf)
    top = np.flatnonzero(ys > ys.max() - 0.01)
    r = np.zeros((17, len(v)))
    r[0] = 0.5 * (jreg[1] + jreg[2])
    for k, j in zip([1, 2, 3, 4, 5, 6, 11, 12, 13, 14, 15, 16], [1, 4, 7, 2, 5, 8, 16, 18, 20, 17, 19, 21],
                    strict=True):
        r[k] = jreg[j]
    r[7] = 0.25 * jreg[3] + 0.75 * jreg[6]
    r[8] = 0.3 * jreg[9] + 0.7 * jreg[12]
    r[9, 332] = 1.0  # SMPL nose vertex
    r[10, top] = 1.0 / len(top)
    return r, "approximated"
