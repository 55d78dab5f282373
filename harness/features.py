"""Frozen-feature cache: the tokens of a frozen backbone over a task's split, computed once and memory-mapped.

Every frozen-feature protocol (``linear``, ``attentive``, ``knn``, ``match``; ``harness.probe``) reads the same
tokens, so they are computed once per (weights, input normalisation, image size, task data, split, limit) and
reused by every probe, seed and fraction (the practice of frozen-feature evaluation in DINO, MAE and El Banani et
al. 2024: features are extracted once, then many probes train on them).

``tokens`` = ``backbone.forward_features(renorm(image))`` ([N, num_prefix + gh*gw, C]), computed in eval mode under
``torch.inference_mode`` in fp32, batches of 128, no augmentation, stored as float16 (the probes train in fp32 on
them; half precision keeps about 3 significant digits, far below the seeds' spread).

Layout: ``$CPCBENCH_RUNS/features/<key>/tokens.npy`` + ``targets.npz`` (every non-image field of the items, so a
hit never loads the images) + ``meta.json``. ``key`` is the sha256 of everything that
determines the tokens, the actual weights included (``weights_digest``: a scratch backbone differs per seed, so the
key never comes from a spec). An entry is built in a ``.tmp-*`` directory and renamed into place with
``meta.json`` written last, so a reader sees a complete entry or none; a directory without ``meta.json`` or whose
array does not match it is removed and recomputed (with a warning). The cache is bounded: after each write the least
recently used entries (a hit touches ``meta.json``) are evicted until the cache fits ``$CPCBENCH_FEATURE_CACHE_GB``
(default 8). Deleting the directory at any time is safe.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import CpcbenchError
from harness import fast

log = logging.getLogger("cpcbench.features")

FORMAT_VERSION = 1
DTYPE = "float16"
CACHE_ENV = "CPCBENCH_FEATURE_CACHE_GB"
DEFAULT_CACHE_GB = 8.0
TMP_PREFIX = ".tmp-"
STALE_TMP_S = 24 * 3600.0  # a tmp dir of a live process older than this is abandoned too


@dataclass(frozen=True)
class FeatureSet:
    """The cached tokens of one split: ``tokens[i]`` belongs to item i of ``task.build_dataset(split, img_size,
    limit)``.

    tokens: [N, num_prefix + gh*gw, C] float16, a read-only ``np.memmap``.
    """

    tokens: np.ndarray
    num_prefix: int
    grid: tuple[int, int]
    patch_size: int
    img_size: int
    key: str
    #: every field but ``image`` of every item ([N, ...] arrays, e.g. the labels), cached with the tokens
    targets: Mapping[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def pooled(self, kind: str = "mean", chunk: int = 4096) -> np.ndarray:
        """[N, C] float32: ``"cls"`` (the first prefix token) or ``"mean"`` (the mean patch token)."""
        if kind == "cls":
            if self.num_prefix < 1:
                raise CpcbenchError("pooled('cls'): this backbone has no prefix (CLS) token; use 'mean'")
            return np.asarray(self.tokens[:, 0], dtype=np.float32)
        if kind != "mean":
            raise CpcbenchError(f"unknown pooling {kind!r}; use 'cls' or 'mean'")
        n = len(self)
        out = np.empty((n, self.tokens.shape[2]), np.float32)
        for s in range(0, n, chunk):
            out[s:s + chunk] = np.asarray(self.tokens[s:s + chunk, self.num_prefix:], np.float32).mean(1)
        return out


# ---------------------------------------------------------------------------------------------- keys
def weights_digest(module: Any) -> str:
    """sha256 over ``module.state_dict()``: every entry's name, dtype, shape and bytes, in order."""
    import torch

    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        t = t.detach()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.dtype == torch.bfloat16:  # numpy has no bfloat16: hash the raw 16-bit words
            t = t.view(torch.int16)
        h.update(np.ascontiguousarray(t.cpu().numpy()).tobytes())
    return h.hexdigest()


def cache_key(digest: str, backbone: Any, binfo: dict[str, Any], task: Any, split: str, img_size: int,
              limit: int | None) -> str:
    """sha256 (hex) of everything that determines the tokens."""
    ident = {"format": FORMAT_VERSION, "weights": digest,
             "arch": hashlib.sha256(f"{type(backbone).__qualname__}\n{backbone!r}".encode()).hexdigest(),
             "input_norm": binfo.get("input_norm"), "img_size": int(img_size),
             "task": {"name": task.name, "version": str(task.version), "data": task.data_info()},
             "split": split, "limit": limit, "augmentation": "none", "dtype": DTYPE}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()


def cache_root(root: str | Path | None = None) -> Path:
    """``root``, else ``$CPCBENCH_RUNS/features`` (default ``runs/features``)."""
    return Path(root) if root is not None else Path(os.environ.get("CPCBENCH_RUNS", "runs")) / "features"


def cache_budget_bytes() -> int:
    raw = os.environ.get(CACHE_ENV, "")
    try:
        gb = float(raw) if raw else DEFAULT_CACHE_GB
    except ValueError:
        raise CpcbenchError(f"${CACHE_ENV} must be a number of GB, got {raw!r}") from None
    if gb < 0:
        raise CpcbenchError(f"${CACHE_ENV} must be >= 0 GB, got {raw!r}")
    return int(gb * 1e9)


# ---------------------------------------------------------------------------------------------- extraction
def extract_features(backbone: Any, binfo: dict[str, Any], task: Any, split: str, img_size: int, *,
                     limit: int | None = None, cache_root: str | Path | None = None, batch_size: int = 128,
                     device: Any = "cpu", dataset: Any = None, compile: bool = False) -> FeatureSet:
    """The tokens of ``task.build_dataset(split, img_size, limit)`` from the cache, or computed now and cached.

    ``dataset``: that dataset, or a callable that builds it (called only on a miss: a hit reads no image). The key
    reads ``task.data_info()``, which must already name the data the dataset comes from (a synthetic task knows
    its frame set once one split has been built at ``img_size``). ``compile``: the transformer blocks run compiled
    (``harness.fast``; the last batch is padded to ``batch_size`` so one shape compiles), for large splits."""
    from harness.eval_parts import backbone_info

    info = backbone_info(backbone, binfo)
    root = _cache_root(cache_root)
    key = cache_key(weights_digest(backbone), backbone, binfo, task, split, img_size, limit)
    entry = root / key
    hit = _open_entry(entry)
    built = dataset is not None and not callable(dataset)
    if hit is not None and built and len(dataset) != hit[0].shape[0]:  # a dataset in hand: check it for free
        log.warning("feature cache entry %s is unusable (%d items cached, the split has %d): removed, recomputing",
                    entry, hit[0].shape[0], len(dataset))
        shutil.rmtree(entry, ignore_errors=True)
        hit = None
    if hit is None:
        ds = dataset() if callable(dataset) else dataset
        ds = ds if ds is not None else task.build_dataset(split, img_size, limit)
        if len(ds) == 0:
            raise CpcbenchError(f"task {task.name!r}: the {split} split is empty; no features to extract")
        _clean_stale_tmp(root)
        t0 = time.perf_counter()
        hit = _write_entry(root, key, _compute(backbone, binfo, ds, batch_size, device, compile), target_arrays(ds),
                           len(ds), info, {"task": task.name, "split": split, "img_size": img_size, "limit": limit})
        log.info("features of %s/%s (%d items) computed in %.1f s -> %s", task.name, split, len(ds),
                 time.perf_counter() - t0, entry)
        evict(root, cache_budget_bytes(), keep=key)
    tokens, targets = hit
    return FeatureSet(tokens=tokens, num_prefix=info["num_prefix_tokens"], grid=tuple(info["grid_size"]),
                      patch_size=info["patch_size"], img_size=info["img_size"], key=key, targets=targets)


def target_arrays(ds: Any) -> dict[str, np.ndarray]:
    """Every numeric field but ``image`` of every item of ``ds`` as arrays [N, ...] (a frame set is sliced, not
    decoded; its items' ``index`` is the row)."""
    from tasks.synth_data import FrameArrays

    if isinstance(ds, FrameArrays):
        out = {k: np.asarray(v) for k, v in ds.arrays.items() if k != "image"}
        return {**out, "index": np.arange(len(ds))}
    items = [{k: v for k, v in ds[i].items() if k != "image"} for i in range(len(ds))]
    out = {k: np.stack([np.asarray(it[k]) for it in items]) for k in (items[0] if items else {})}
    return {k: v for k, v in out.items() if v.dtype.kind in "biuf"}


def _cache_root(root: str | Path | None) -> Path:
    path = cache_root(root)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CpcbenchError(f"cannot create the feature cache {path}: {e}") from None
    return path


def _compute(backbone: Any, binfo: dict[str, Any], ds: Any, batch_size: int, device: Any,  # noqa: ANN202
             compile: bool = False):
    """Yields float16 token batches [b, T, C] of ``ds`` in order (eval mode, fp32, inference_mode)."""
    import torch
    from torch.utils.data import DataLoader

    from harness.train_state import preserved_rng
    from pretraining.load import Renormalize

    device = torch.device(device)
    renorm = Renormalize(binfo.get("input_norm")).to(device)
    was_training = backbone.training
    backbone.eval()
    backbone.to(device)
    compiled = compile and fast.compiler_problem(device.type) is None and fast.compile_blocks(backbone) > 0
    try:
        with preserved_rng(), torch.inference_mode():  # the DataLoader draws a seed: leave the run's RNG alone
            for batch in DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0):
                image = batch["image"].to(device, torch.float32)
                n = len(image)
                if compiled and n < batch_size:  # one static shape: no second compile for the last batch
                    image = torch.cat([image, image[-1:].expand(batch_size - n, *image.shape[1:])])
                tokens = backbone.forward_features(renorm(image))[:n].float().cpu().numpy()
                with np.errstate(over="ignore"):  # an overflow is caught just below
                    half = tokens.astype(np.float16)
                if not np.isfinite(half).all():  # never store an overflowed token as a silently wrong feature
                    worst = float(np.nanmax(np.abs(tokens))) if np.isfinite(tokens).any() else float("nan")
                    raise CpcbenchError(f"the backbone's tokens are not finite in float16 (largest |value| "
                                        f"{worst:.3g}; float16 holds up to 65504): cannot cache them")
                yield half
    finally:
        if compiled:
            fast.uncompile(backbone)
        backbone.train(was_training)


def _open_entry(entry: Path) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """(memory-mapped tokens, targets) of a complete, consistent entry (its meta touched), or None (a bad one
    removed)."""
    if not entry.exists():
        return None
    meta_path = entry / "meta.json"
    try:
        if not meta_path.is_file():
            raise ValueError("no meta.json (half-written)")
        meta = json.loads(meta_path.read_text())
        tokens = np.load(entry / "tokens.npy", mmap_mode="r")
        if tokens.dtype != np.dtype(DTYPE) or list(tokens.shape) != list(meta["shape"]):
            raise ValueError(f"array {tokens.dtype} {tokens.shape} does not match meta.json {meta.get('shape')}")
        with np.load(entry / "targets.npz", allow_pickle=False) as z:
            targets = {k: z[k] for k in z.files}
        bad = [k for k, v in targets.items() if len(v) != tokens.shape[0]]
        if bad:
            raise ValueError(f"targets {bad} do not have {tokens.shape[0]} items")
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as e:
        log.warning("feature cache entry %s is unusable (%s): removed, recomputing", entry, e)
        shutil.rmtree(entry, ignore_errors=True)
        return None
    os.utime(meta_path)  # least-recently-used order
    return tokens, targets


def _write_entry(root: Path, key: str, batches: Any, targets: Mapping[str, np.ndarray], n: int,
                 info: dict[str, Any], about: dict[str, Any]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    tmp = root / f"{TMP_PREFIX}{key[:16]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        arr = None
        i = 0
        for b in batches:
            if arr is None:
                arr = np.lib.format.open_memmap(tmp / "tokens.npy", mode="w+", dtype=DTYPE, shape=(n, *b.shape[1:]))
            arr[i:i + len(b)] = b
            i += len(b)
        if arr is None or i != n:
            raise CpcbenchError(f"feature extraction produced {i} items for a split of {n}")
        shape = list(arr.shape)
        arr.flush()
        del arr
        with open(tmp / "targets.npz", "wb") as fh:
            np.savez(fh, **targets)
        meta = {"format": FORMAT_VERSION, "key": key, "shape": shape, "dtype": DTYPE, "created": time.time(),
                "num_prefix_tokens": info["num_prefix_tokens"], "grid_size": list(info["grid_size"]),
                "patch_size": info["patch_size"], "img_size": info["img_size"], **about}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        try:
            os.rename(tmp, root / key)
        except OSError:  # another process finished the same entry first: use it
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    hit = _open_entry(root / key)
    if hit is None:
        raise CpcbenchError(f"the feature cache entry {root / key} vanished right after it was written")
    return hit


def _clean_stale_tmp(root: Path) -> None:
    """Remove ``.tmp-*`` build directories of processes that are gone (or older than a day)."""
    now = time.time()
    for d in root.glob(f"{TMP_PREFIX}*"):
        try:
            pid = int(d.name.split("-")[2])
        except (IndexError, ValueError):
            pid = -1
        try:
            stale = not _alive(pid) or now - d.stat().st_mtime > STALE_TMP_S
        except OSError:
            continue
        if stale:
            shutil.rmtree(d, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _entry_size(entry: Path) -> int:
    return sum(f.stat().st_size for f in entry.iterdir() if f.is_file())


def evict(root: Path, budget: int, keep: str | None = None) -> list[str]:
    """Remove least-recently-used entries (``meta.json`` mtime) until the cache holds at most ``budget`` bytes;
    ``keep`` (the entry just written) stays even when it alone is over budget. Returns the removed keys."""
    entries = []
    for d in root.iterdir():
        meta = d / "meta.json"
        if d.name.startswith(TMP_PREFIX) or not meta.is_file():
            continue
        try:
            entries.append((meta.stat().st_mtime, d.name, _entry_size(d)))
        except OSError:
            continue
    total = sum(e[2] for e in entries)
    removed = []
    for _, name, size in sorted(entries):
        if total <= budget:
            break
        if name == keep:
            continue
        shutil.rmtree(root / name, ignore_errors=True)
        total -= size
        removed.append(name)
    if removed:
        log.info("feature cache over %.2f GB: evicted %d least recently used entries", budget / 1e9, len(removed))
    if total > budget:
        log.warning("feature cache entry %s alone exceeds $%s (%.2f GB)", keep, CACHE_ENV, budget / 1e9)
    return removed
