"""Checkpoints: safetensors weights + a JSON sidecar, written atomically; never a pickle.

Weights file layout (``save_weights``)::

    <stem>.safetensors   tensors
    <stem>.json          {"config": {...}, "sha256": "<of the .safetensors bytes>", "format": "cpcbench-weights/1", ...}

Training state for exact resume (``save_train_state`` / ``load_train_state``) lives in a step directory
``<run>/checkpoints/step_000100/`` holding ``model.safetensors``, ``state.safetensors`` (optimizer
moments, RNG states) and ``state.json`` (everything else), written into a temporary directory and renamed
into place; ``<run>/checkpoints/latest.json`` then points at it (also an atomic rename). A run killed at
any moment resumes from the last complete step directory.

Foreign ``.pth``/``.pt``/``.bin`` files are read with ``torch.load(weights_only=True)`` only, so a pickle
that carries code is refused and nothing in it runs.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from core.errors import CpcbenchError
from core.io import atomic_write, atomic_write_json

FORMAT = "cpcbench-weights/1"
STATE_FORMAT = "cpcbench-train-state/1"


class CheckpointError(CpcbenchError, ValueError):
    """A checkpoint that is missing, corrupt, untrusted or does not match what was asked."""


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sidecar(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


# --- weights ---------------------------------------------------------------------------------------
def save_weights(path: str | Path, state_dict: dict[str, Any], config: dict[str, Any] | None = None,
                 **meta: Any) -> dict[str, Any]:
    """Write ``state_dict`` to ``path`` (.safetensors) and its JSON sidecar, both atomically.

    Returns the sidecar dict, including the SHA-256 of the weights file (recorded in result records).
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"weights path must end in .safetensors, got {path}")
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    atomic_write(path, lambda p: save_file(tensors, str(p), metadata={"format": FORMAT}))
    info = {"format": FORMAT, "config": config or {}, "sha256": sha256_file(path), "num_tensors": len(tensors),
            "num_params": int(sum(t.numel() for t in tensors.values())), **meta}
    atomic_write_json(sidecar(path), info)
    return info


def load_weights(path: str | Path, verify: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read weights and metadata. ``.safetensors`` (ours or anyone's) or a foreign ``.pth`` (weights only).

    For our files the SHA-256 in the sidecar is checked, so a truncated or swapped file is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        meta: dict[str, Any] = {}
        if sidecar(path).is_file():
            try:
                meta = json.loads(sidecar(path).read_text())
            except json.JSONDecodeError as e:
                raise CheckpointError(f"checkpoint sidecar {sidecar(path)} is not valid JSON ({e})") from None
            if verify and meta.get("sha256") and sha256_file(path) != meta["sha256"]:
                raise CheckpointError(f"{path} does not match the SHA-256 in {sidecar(path).name}: "
                                      "the file is corrupt or was replaced; re-create it")
        try:
            return load_file(str(path)), meta
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{path} is not a readable safetensors file ({e})") from None
    if path.suffix in (".pth", ".pt", ".bin", ".ckpt"):
        return load_foreign(path), {"sha256": sha256_file(path), "format": "foreign-torch"}
    raise CheckpointError(f"unsupported checkpoint type {path.suffix!r} for {path}: use .safetensors "
                          "(or a .pth holding tensors only)")


def load_foreign(path: str | Path) -> dict[str, Any]:
    """A foreign torch checkpoint read with ``weights_only=True``: tensors and plain containers only."""
    import pickle

    import torch

    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, TypeError) as e:
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()
        hit = re.search(r"(?:Unsupported global: |unsupported )GLOBAL (\S+)", text)
        first = (f"it carries {hit.group(1)}, which a weights-only load does not allow" if hit else
                 f"it is not a weights-only checkpoint ({text.splitlines()[0] if text else type(e).__name__})")
        raise CheckpointError(f"refusing {path}: {first}. Convert it to safetensors in a trusted environment "
                              "(then load it as ARCH:FILE, e.g. vit_base:weights.safetensors).") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a dict of tensors")
    return obj


# --- flattening of arbitrary training state into tensors + JSON ------------------------------------
def _flatten(obj: Any, tensors: dict[str, Any], prefix: str) -> Any:
    import numpy as np
    import torch

    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous()
        return {"__tensor__": prefix}
    if isinstance(obj, np.ndarray):
        tensors[prefix] = torch.from_numpy(np.ascontiguousarray(obj))
        return {"__ndarray__": prefix}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {"__dict__": {k: _flatten(v, tensors, f"{prefix}.{k}") for k, v in obj.items()}}
        return {"__items__": [[k, _flatten(v, tensors, f"{prefix}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_flatten(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_flatten(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise CheckpointError(f"cannot store {type(obj).__name__} at {prefix!r} in a checkpoint")


def _unflatten(obj: Any, tensors: dict[str, Any]) -> Any:
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__ndarray__" in obj:
            return tensors[obj["__ndarray__"]].numpy()
        if "__dict__" in obj:
            return {k: _unflatten(v, tensors) for k, v in obj["__dict__"].items()}
        if "__items__" in obj:
            return {k: _unflatten(v, tensors) for k, v in obj["__items__"]}
        if "__tuple__" in obj:
            return tuple(_unflatten(v, tensors) for v in obj["__tuple__"])
        raise CheckpointError(f"unknown entry in training state: {sorted(obj)}")
    return obj


# --- training state (resume) -----------------------------------------------------------------------
def save_train_state(run_dir: str | Path, step: int, model_state: dict[str, Any], state: dict[str, Any],
                     config: dict[str, Any] | None = None, keep: int = 2) -> Path:
    """Atomically write ``run_dir/checkpoints/step_<step>/`` and point ``latest.json`` at it."""
    from safetensors.torch import save_file

    ckdir = Path(run_dir) / "checkpoints"
    ckdir.mkdir(parents=True, exist_ok=True)
    final = ckdir / f"step_{step:08d}"
    tmp = ckdir / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        save_weights(tmp / "model.safetensors", model_state, config)
        tensors: dict[str, Any] = {}
        skeleton = _flatten(state, tensors, "s")
        save_file(tensors, str(tmp / "state.safetensors"), metadata={"format": STATE_FORMAT})
        (tmp / "state.json").write_text(json.dumps({"format": STATE_FORMAT, "step": step, "state": skeleton}))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_json(ckdir / "latest.json", {"step": step, "dir": final.name})
    steps = sorted(p for p in ckdir.glob("step_*") if p.is_dir())
    for old in steps[:-keep] if keep > 0 else []:
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_train_state(run_dir: str | Path) -> Path | None:
    pointer = Path(run_dir) / "checkpoints" / "latest.json"
    if not pointer.is_file():
        return None
    try:
        d = Path(run_dir) / "checkpoints" / json.loads(pointer.read_text())["dir"]
    except (json.JSONDecodeError, KeyError) as e:
        raise CheckpointError(f"{pointer} is corrupt ({e}); delete it to start over") from None
    if not d.is_dir():
        raise CheckpointError(f"{pointer} points at missing {d}; delete it to start over")
    return d


def load_train_state(step_dir: str | Path) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """(step, model state_dict, training state) from a step directory written by ``save_train_state``."""
    from safetensors.torch import load_file

    step_dir = Path(step_dir)
    model_state, _ = load_weights(step_dir / "model.safetensors")
    try:
        meta = json.loads((step_dir / "state.json").read_text())
        tensors = load_file(str(step_dir / "state.safetensors"))
    except (OSError, json.JSONDecodeError, ValueError) as e:
        raise CheckpointError(f"training state in {step_dir} is unreadable ({e})") from None
    if meta.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{step_dir}/state.json has format {meta.get('format')!r}, expected {STATE_FORMAT}")
    return int(meta["step"]), model_state, _unflatten(meta["state"], tensors)


def train_state_info(step_dir: str | Path) -> dict[str, Any]:
    """The training state of a step directory without loading any tensor (those entries read None): a quick look
    at its ``loop``, ``flops_per_step``, ``sampler``, ... before the run is built."""
    step_dir = Path(step_dir)
    try:
        meta = json.loads((step_dir / "state.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"training state in {step_dir} is unreadable ({e})") from None

    def plain(obj: Any) -> Any:
        if isinstance(obj, list):
            return [plain(v) for v in obj]
        if isinstance(obj, dict):
            if "__tensor__" in obj or "__ndarray__" in obj:
                return None
            if "__dict__" in obj:
                return {k: plain(v) for k, v in obj["__dict__"].items()}
            if "__items__" in obj:
                return {k: plain(v) for k, v in obj["__items__"]}
            if "__tuple__" in obj:
                return tuple(plain(v) for v in obj["__tuple__"])
        return obj

    return plain(meta.get("state") or {})
