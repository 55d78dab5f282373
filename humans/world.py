"""The embedded synthetic world: subjects x motions x camera rigs, rendered into a frame set.

A frame set (``humans/frames.py``) of domain ``body`` (SMPL-format bodies through smplx), ``hand``
(MANO-format right hands; label = gesture class) or ``objects`` (textured primitives, ``humans/objects.py``).
Each *sequence* is one subject performing one motion of ``seq_len`` frames, filmed by ``cameras`` cameras
placed around it (varied azimuth, elevation, distance; all looking at the subject) in one scene (room or
backdrop, lighting). This gives the two pair kinds of CroCo-Man (Armando et al., CVPR 2024): cross-view
pairs (same instant, two cameras) and cross-pose pairs (same camera, two instants).

Camera model: every rig camera is a pinhole camera with known extrinsics (world -> camera, OpenCV axes).
The stored image is a person-centred square crop; the crop is built into the intrinsics (``K`` of the
stored image = the rig camera's K shifted and scaled to the crop), never resampled, so
``K @ joints3d`` projects exactly onto ``joints2d``. Pixel centres are at integer coordinates.

Splits: every fifth subject (``subject % 5 == 2``) is a test subject; test motions are drawn from an rng
stream disjoint from the train motions' stream, so no subject and no motion appears in both splits.

Bodies and hands are rendered by ``humans.people``, objects by ``humans.objects``; camera geometry is
``humans.cameras``.

Determinism: every random choice of a sequence comes from ``SeedSequence([seed, domain, stream, id])``, so
frames do not depend on worker count or order. One shard per sequence; re-running completes missing
shards only (and a larger ``frames`` adds sequences to an existing set of the same config).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import DataError
from core.io import atomic_write, atomic_write_json
from humans.frames import FrameWriter
from humans.models import model_info
from humans.objects import CLASSES, render_object_sequence
from humans.people import person_meta, render_body_sequence, render_hand_sequence
from humans.render import Renderer, choose_platform

log = logging.getLogger("cpcbench.data")

#: generator version per domain: a new version changes the frames, and frame sets of another version are refused
#: (body 2: faces, necklines and chest prints tell a person's front from their back)
WORLD_VERSIONS = {"body": 2, "hand": 1, "objects": 1}
WORLD_VERSION = WORLD_VERSIONS["body"]
DOMAINS = ("body", "hand", "objects")
_DOMAIN_ID = {"body": 1, "hand": 2, "objects": 3}
# rng streams
_SUBJECT, _TRAIN_MOTION, _TEST_MOTION, _SCENE = 0, 1, 2, 3
TEST_EVERY, TEST_OFFSET = 5, 2


@dataclass(frozen=True)
class WorldConfig:
    """What a frame set is made of. Everything but ``frames`` defines the content of each shard."""

    domain: str = "body"
    frames: int = 1024
    size: int = 128
    seed: int = 0
    cameras: int = 4
    seq_len: int = 16
    motions_per_subject: int = 2
    margin: float = 1.2  # crop side / longest side of the projected subject's bbox
    fps: float = 10.0  # frame rate of the motions (cross-pose pairs need visible pose change within a sequence)
    version: int = WORLD_VERSION
    #: where the cameras stand (hands only): "around" the subject (any side: hands seen from every direction) or
    #: "front" (``humans.hand_poses.front_views``: palm or back towards the camera, fingers up within 45 deg)
    view: str = "around"

    @property
    def frames_per_sequence(self) -> int:
        return self.cameras * self.seq_len

    @property
    def num_sequences(self) -> int:
        return max(1, math.ceil(self.frames / self.frames_per_sequence))

    def identity(self) -> dict[str, Any]:
        """The fields that determine shard contents (``frames`` only decides how many shards)."""
        d = self.as_dict()
        d.pop("frames")
        return d

    def as_dict(self) -> dict[str, Any]:
        """Every field; ``view`` only when not the default, so frame sets made before it existed still match."""
        d = asdict(self)
        if d["view"] == "around":
            d.pop("view")
        return d


#: camera placements per domain (``WorldConfig.view``), the default first
VIEWS: dict[str, tuple[str, ...]] = {"body": ("around",), "hand": ("around", "front"), "objects": ("around",)}

DEFAULTS: dict[str, dict[str, Any]] = {
    "body": {"cameras": 4, "seq_len": 16, "motions_per_subject": 2},
    "hand": {"cameras": 4, "seq_len": 8, "motions_per_subject": 2},
    "objects": {"cameras": 3, "seq_len": 4, "motions_per_subject": 1},
}


def make_config(domain: str, frames: int, size: int = 128, seed: int = 0, **overrides: Any) -> WorldConfig:
    """A :class:`WorldConfig` with the domain's defaults, validated."""
    if domain not in DOMAINS:
        raise DataError(f"unknown synthetic domain {domain!r}; choose one of {', '.join(DOMAINS)}")
    kw = {**DEFAULTS[domain], **{k: v for k, v in overrides.items() if v is not None}}
    kw.setdefault("version", WORLD_VERSIONS[domain])
    cfg = WorldConfig(domain=domain, frames=int(frames), size=int(size), seed=int(seed), **kw)
    if cfg.frames < 1 or cfg.size < 16 or cfg.cameras < 1 or cfg.seq_len < 1 or cfg.motions_per_subject < 1:
        raise DataError(f"bad synthetic-world config {cfg}: need frames >= 1, size >= 16, cameras, seq_len, "
                        "motions_per_subject >= 1")
    if cfg.view not in VIEWS[domain]:
        raise DataError(f"unknown view {cfg.view!r} for the {domain} world; choose one of {', '.join(VIEWS[domain])}")
    return cfg


@dataclass(frozen=True)
class SequenceSpec:
    """The plan of one sequence (cheap to compute, no rendering): ids, split and rng seeds."""

    index: int
    sequence: str
    subject: int
    motion: str
    split: str
    subject_seed: tuple[int, ...]
    motion_seed: tuple[int, ...]
    scene_seed: tuple[int, ...]
    extra: dict[str, Any] = field(default_factory=dict)


def plan(cfg: WorldConfig) -> list[SequenceSpec]:
    """The sequences of a frame set: sequence ``i`` is motion ``i % motions_per_subject`` of subject
    ``i // motions_per_subject``; test subjects are every fifth; motions are unique per sequence."""
    dom = _DOMAIN_ID[cfg.domain]
    specs = []
    for i in range(cfg.num_sequences):
        subject = i // cfg.motions_per_subject
        test = subject % TEST_EVERY == TEST_OFFSET
        stream = _TEST_MOTION if test else _TRAIN_MOTION
        tag = "t" if test else "m"
        specs.append(SequenceSpec(
            index=i, sequence=f"{cfg.domain[0]}{i:06d}", subject=subject, motion=f"{tag}{i:06d}",
            split="test" if test else "train",
            subject_seed=(cfg.seed, dom, _SUBJECT, subject), motion_seed=(cfg.seed, dom, stream, i),
            scene_seed=(cfg.seed, dom, _SCENE, i)))
    return specs


# -- the worker side --------------------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _worker_init(size: int, pool: bool = True) -> None:
    """Per process: one renderer (reused for every sequence); single-threaded torch in pool workers (never
    in the calling process, whose later training must keep its threads)."""
    if pool:
        import torch

        torch.set_num_threads(1)
    _WORKER["renderer"] = Renderer(size)


def render_sequence(cfg: WorldConfig, spec: SequenceSpec, renderer: Any) -> list[dict[str, np.ndarray]]:
    """All frames of one sequence (time-major, camera-minor), each a dict of arrays (frame contract)."""
    if cfg.domain == "body":
        return render_body_sequence(cfg, spec, renderer)
    if cfg.domain == "hand":
        return render_hand_sequence(cfg, spec, renderer)
    if cfg.domain == "objects":
        return render_object_sequence(cfg, spec, renderer)
    raise DataError(f"unknown synthetic domain {cfg.domain!r}")


def _rows(cfg: WorldConfig, spec: SequenceSpec, bboxes: np.ndarray, labels: np.ndarray) -> list[dict[str, Any]]:
    rows = []
    k = 0
    for t in range(cfg.seq_len):
        for c in range(cfg.cameras):
            x, y, w, h = (float(v) for v in bboxes[k])
            rows.append({"sequence": spec.sequence, "camera": f"c{c}", "frame": t, "subject": f"s{spec.subject:05d}",
                         "motion": spec.motion, "split": spec.split, "image": "", "bbox_x": x, "bbox_y": y,
                         "bbox_w": w, "bbox_h": h, "label": int(labels[k])})
            k += 1
    return rows


def _shard_path(root: Path, index: int) -> Path:
    return root / "shards" / FrameWriter.shard_name(index)


# arrays that compress well (masks, part maps) are deflated; images and vertices are stored, so that reading a
# shard (what pretraining does for every pair) costs a file read, not a decompression (5x faster measured)
_DEFLATE = ("mask", "parts")


def write_shard(path: Path, frames: list[dict[str, np.ndarray]]) -> None:
    """Stack frames (same keys) into one npz (the FrameWriter shard format; ``np.load`` reads it), written
    atomically; masks and part maps deflated, everything else stored uncompressed."""
    import zipfile

    keys = frames[0].keys()
    arrays = {k: np.stack([f[k] for f in frames]) for k in keys}

    def write(p: Path) -> None:
        with zipfile.ZipFile(p, "w", allowZip64=True) as zf:
            for k, a in arrays.items():
                info = zipfile.ZipInfo(f"{k}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED if k in _DEFLATE else zipfile.ZIP_STORED
                with zf.open(info, "w", force_zip64=True) as fh:
                    np.lib.format.write_array(fh, np.ascontiguousarray(a), allow_pickle=False)

    atomic_write(path, write)


def _do_sequence(args: tuple[WorldConfig, SequenceSpec, str]) -> tuple[int, np.ndarray, np.ndarray]:
    cfg, spec, root = args
    if "renderer" not in _WORKER or _WORKER["renderer"].size != cfg.size:
        if "renderer" in _WORKER:
            _WORKER.pop("renderer").close()
        _worker_init(cfg.size, pool=False)
    frames = render_sequence(cfg, spec, _WORKER["renderer"])
    if len(frames) != cfg.frames_per_sequence:
        raise DataError(f"sequence {spec.sequence} rendered {len(frames)} frames, expected {cfg.frames_per_sequence}")
    write_shard(_shard_path(Path(root), spec.index), frames)
    return spec.index, np.stack([f["bbox"] for f in frames]), np.stack([f.get("label", np.int64(-1)) for f in frames])


def _read_shard_rows(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """bbox and label arrays of an existing shard, or None if it is unreadable (it will be re-rendered)."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as z:
            labels = z["label"] if "label" in z.files else np.full(len(z["bbox"]), -1)
            return z["bbox"], labels
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
        log.warning("shard %s is unreadable (%s); rendering it again", path, e)
        return None


# -- the parent side --------------------------------------------------------------------------------------
def model_source(domain: str) -> str:
    """Where the body/hand model comes from (recorded in meta.json; a change invalidates a frame set)."""
    if domain == "objects":
        return "primitives"
    return str(model_info("smpl" if domain == "body" else "mano")["source"])


def generate(domain: str, frames: int, size: int = 128, seed: int = 0, out: str | Path | None = None,
             workers: int = 1, progress: Callable[[int, int], None] | None = None, **overrides: Any) -> Path:
    """Render a frame set (or complete a partial one) and return its directory.

    ``overrides``: ``cameras``, ``seq_len``, ``motions_per_subject``, ``margin``, ``fps``, ``view``.
    ``progress(done, total)`` is called with frame counts. Whole sequences are rendered; the manifest lists exactly
    ``frames`` frames (the last sequence may be cut short in time).
    """
    cfg = make_config(domain, frames, size, seed, **overrides)
    root = Path(out) if out is not None else default_dir(domain, size, seed)
    (root / "shards").mkdir(parents=True, exist_ok=True)
    identity = {**cfg.identity(), "model": model_source(domain)}
    ident_path = root / "shards" / "generator.json"
    if ident_path.is_file():
        try:
            old = json.loads(ident_path.read_text())
        except json.JSONDecodeError:
            old = None
        if old != identity:
            raise DataError(f"{root} holds frames made with another generator config ({old}); choose another "
                            "--out directory or delete this one")
    else:
        atomic_write_json(ident_path, identity)
    specs = plan(cfg)
    done: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for s in specs:
        p = _shard_path(root, s.index)
        if p.is_file():
            got = _read_shard_rows(p)
            if got is not None:
                done[s.index] = got
    todo = [s for s in specs if s.index not in done]
    t0 = time.monotonic()
    total = len(specs) * cfg.frames_per_sequence
    if progress:
        progress(len(done) * cfg.frames_per_sequence, total)
    if todo:
        log.info("rendering %d of %d %s sequences (%d frames each) into %s with %d worker(s)", len(todo),
                 len(specs), domain, cfg.frames_per_sequence, root, workers)
        args = [(cfg, s, str(root)) for s in todo]
        for index, bboxes, labels in _run(args, workers, cfg.size):
            done[index] = (bboxes, labels)
            if progress:
                progress(len(done) * cfg.frames_per_sequence, total)
    _write_manifest(cfg, root, specs, done, identity)
    if todo:
        log_render(root, time.monotonic() - t0, max(1, min(workers, len(todo))), len(todo))
    if not any(s.split == "test" for s in specs):
        need = (TEST_OFFSET * cfg.motions_per_subject + 1) * cfg.frames_per_sequence
        log.warning("this %s frame set has no test split (every fifth subject is a test subject, starting with "
                    "subject %d): ask for at least %d frames for one", domain, TEST_OFFSET, need)
    return root


#: beside a frame set: how long each ``generate`` call that rendered into it took (not part of the frames, their
#: meta or the fingerprint the tables name); ``harness.ledger`` reads it
RENDER_LOG = "render.json"


def log_render(root: Path, seconds: float, workers: int, sequences: int) -> None:
    """Append one rendering (wall seconds, worker processes, sequences rendered) to ``root/render.json``."""
    path = root / RENDER_LOG
    try:
        runs = list(json.loads(path.read_text())["runs"]) if path.is_file() else []
    except (json.JSONDecodeError, KeyError, TypeError):
        runs = []  # a damaged log loses the earlier timings, never the frames
    runs.append({"seconds": round(float(seconds), 3), "workers": int(workers), "sequences": int(sequences)})
    atomic_write_json(path, {"runs": runs})


def render_log(root: Path) -> list[dict[str, float]] | None:
    """The renderings ``log_render`` kept for the frame set in ``root``; None when it kept none."""
    path = root / RENDER_LOG
    try:
        return [dict(r) for r in json.loads(path.read_text())["runs"]] if path.is_file() else None
    except (json.JSONDecodeError, KeyError, TypeError):
        return None


def _run(args: list[tuple[WorldConfig, SequenceSpec, str]], workers: int, size: int):
    """Yield per-sequence results, in this process (workers <= 1) or in a spawn pool."""
    if workers <= 1:
        for a in args:
            yield _do_sequence(a)
        return
    import multiprocessing as mp

    choose_platform()  # decided once; children inherit PYOPENGL_PLATFORM
    env_before = os.environ.get("LP_NUM_THREADS")
    os.environ.setdefault("LP_NUM_THREADS", "1")  # llvmpipe threads per worker: the workers are the parallelism
    try:
        ctx = mp.get_context("spawn")
        with ctx.Pool(workers, initializer=_worker_init, initargs=(size,)) as pool:
            yield from pool.imap_unordered(_do_sequence, args)
    finally:
        if env_before is None:
            os.environ.pop("LP_NUM_THREADS", None)


def _write_manifest(cfg: WorldConfig, root: Path, specs: list[SequenceSpec],
                    done: dict[int, tuple[np.ndarray, np.ndarray]], identity: dict[str, Any]) -> None:
    writer = FrameWriter(root, meta=meta_for(cfg, identity), shard_size=cfg.frames_per_sequence)
    rows = [row for s in specs for row in _rows(cfg, s, *done[s.index])]
    for row in rows[:cfg.frames]:  # exactly the frames asked for: the last sequence may be cut short
        writer.add_row(row)
    writer.close()


def meta_for(cfg: WorldConfig, identity: dict[str, Any]) -> dict[str, Any]:
    """meta.json of a synthetic frame set: domain, size, joints, model kind, generator config, seed."""
    info: dict[str, Any] = {"joint_names": [], "model": None, "labels": []}
    if cfg.domain in ("body", "hand"):
        info = person_meta(cfg.domain)
    elif cfg.domain == "objects":
        info["labels"] = list(CLASSES)
    else:
        raise DataError(f"unknown synthetic domain {cfg.domain!r}")
    return {"domain": cfg.domain, "size": cfg.size, "seed": cfg.seed, "source": "synthetic",
            "generator": {**cfg.as_dict(), "model": identity.get("model")}, **info}


def default_dir(domain: str, size: int, seed: int) -> Path:
    """``$CPCBENCH_DATA_CACHE/<domain>-<size>-<seed>``, else ``$CPCBENCH_RUNS/data/...`` (default ``runs/``)."""
    base = os.environ.get("CPCBENCH_DATA_CACHE")
    if base:
        return Path(base) / f"{domain}-{size}-{seed}"
    return Path(os.environ.get("CPCBENCH_RUNS", "runs")) / "data" / f"{domain}-{size}-{seed}"


def is_complete(root: Path, cfg: WorldConfig) -> bool:
    """True if ``root`` holds exactly the frame set ``cfg`` describes (meta matches, every shard present)."""
    meta_path = root / "meta.json"
    if not (meta_path.is_file() and (root / "manifest.csv").is_file()):
        return False
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError:
        return False
    gen = dict(meta.get("generator") or {})
    gen.pop("model", None)
    if gen != cfg.as_dict() or meta.get("generator", {}).get("model") != model_source(cfg.domain):
        return False
    return all(_shard_path(root, s.index).is_file() for s in plan(cfg))


def ensure_frames(domain: str, frames: int, size: int = 128, seed: int = 0, out: str | Path | None = None,
                  workers: int | None = None, **overrides: Any) -> Path:
    """The directory of a synthetic frame set, generated (or completed) if absent. What pretraining and tasks
    call to get data with nothing to download. ``workers=None``: rendering processes = min(CPUs, 4, number
    of sequences to render); one process renders in this one. Call it on one rank only under DDP."""
    cfg = make_config(domain, frames, size, seed, **overrides)
    root = Path(out) if out is not None else default_dir(domain, size, seed)
    if is_complete(root, cfg):
        return root
    if workers is None:
        workers = max(1, min(os.cpu_count() or 1, 4, cfg.num_sequences))
    return generate(domain, frames, size, seed, out=root, workers=workers, **overrides)

