"""``probe-body-xview`` / ``probe-body-xpose``: body-point correspondence from frozen-feature similarity alone.

El Banani et al. (CVPR 2024) probe the 3D awareness of frozen features by multi-view correspondence without any
training; CroCo (Weinzaepfel et al. NeurIPS 2022) and CroCo-Man (Armando et al. CVPR 2024) pretrain on exactly
these pairs. Here the points are the body's joints:

- ``probe-body-xview``: two views of one instant (same sequence and frame, different cameras). Every ordered pair
  of cameras of each (sequence, frame) is used: A -> B and B -> A are different queries.
- ``probe-body-xpose``: two instants of one camera (same sequence and camera). Every ordered pair of the frames of
  each (sequence, camera) at least half their count apart (``n // 2`` steps, at least 1: >= 8 frames = 0.8 s at the
  world's 10 fps for 16-frame sequences), both directions. Only the far pairs: the world's motions move a joint by
  more than a 16 px patch of a 64 px crop rarely, and mostly 0.8 s or more apart (on the default body set's test
  split, 113 moved queries when each frame k was paired with k + n // 2 alone, 724 with every pair >= n // 2 apart,
  952 with every pair, at 3.4x the queries).

Pair selection is exhaustive and deterministic (no random draw): the pairs depend only on the manifest rows of the
split's first ``limit`` frames, in manifest order. A query is a joint visible in both images of a pair: its 2D
position lies inside the crop and the part map at its (rounded) pixel shows the body segment the joint drives or its
parent's segment (``humans.models.joint_parts``; a joint hidden behind another body part or outside the person shows
another label). Frame sets without that part scheme (meta ``part_names`` other than the SMPL body's) fall back to the
person mask (part label > 0) at the joint's pixel.

Matching: the patch token of A containing the joint (patches are ``patch_size`` squares; pixel centres at integers)
is compared by cosine similarity with every patch token of B; the most similar patch is the match. Metrics (%,
higher is better), per query: ``pck`` = 100 when the matched patch's centre lies within one patch size (Euclidean
distance <= ``patch_size`` pixels, inclusive) of the joint's true position in B, else 0; ``pck_2`` the same within
two patch sizes. No training: protocol ``match`` only (``match_scores``).

The crops are person-centred, so most joints sit at about the same crop position in A and B, and the guess "the
patch of B at the query's patch index in A" (``@same_position``) is strong without any correspondence: on the
default body set's test split (384 frames, 64 px) it scores pck 81 % (xview) and 98 % (xpose) with 16 px patches,
57 % and 87 % with 8 px patches, against a chance of 20 % and 5 %. The primary metric is therefore ``pck_moved``:
``pck`` over the *moved* queries only, those whose joint in B lies more than one patch size from the centre of the
query's patch in A, i.e. exactly the queries the same-position guess misses (``pck_moved@same_position`` = 0 by
construction); ``pck_2_moved`` is ``pck_2`` over the same queries (its same-position score is not 0: 91 % / 100 %
at 16 px, 66 % / 91 % at 8 px, so read it against that). Moved queries on that split: xview 4,019 of 21,232 (16 px
patches) and 9,245 (8 px); xpose 724 of 34,042 (16 px) and 4,361 (8 px). ``pck`` and ``pck_2`` over all queries
stay in the record, for reading against ``@same_position``.

How the subset is recorded: ``match_scores`` returns one array per metric over *all* queries (the contract of
per-sample metrics, same length, one value per query), with NaN in ``pck_moved`` / ``pck_2_moved`` for the queries
that did not move. Their ``MetricSpec.subset`` tells ``harness.results.summarize`` to leave NaN out (any other NaN
still raises) and to record the number of queries counted (``n_per_seed`` of the metric's block): one query list,
one ``n_samples``, and the record's metric blocks read as every other task's. A split without any moved query is
refused (the primary metric would be undefined).

Baselines (``match_baseline``): chance, a uniformly random patch of B (exact: the fraction of B's patch centres
within the threshold of the joint, averaged over the queries, or over the moved queries for ``*_moved``), and
``<metric>@same_position``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

import numpy as np

from core.errors import CpcbenchError, DataError
from core.registry import TASKS
from humans.body_skeleton import PARENTS, PART_NAMES
from humans.frames import FrameStore
from humans.models import joint_parts
from tasks.base import MetricSpec, Split
from tasks.synthetic import SYNTH_DEFAULTS, SynthTask

CITE_MATCH = ("El Banani et al., Probing the 3D awareness of visual foundation models, CVPR 2024; Weinzaepfel et al., "
              "CroCo, NeurIPS 2022; Armando et al., CroCo-Man, CVPR 2024")
THRESHOLDS = {"pck": 1.0, "pck_2": 2.0}  # in patch sizes
MOVED = 1.0  # a query moved: its joint in B lies more than this many patch sizes from its patch centre in A


class TokenFeatures(Protocol):
    """What ``match_scores`` reads of a feature set (``harness.features.FeatureSet`` provides it)."""

    tokens: np.ndarray  # [N, num_prefix + gh*gw, C]
    num_prefix: int
    grid: tuple[int, int]
    patch_size: int


def patch_of(xy: np.ndarray, patch: int, grid: tuple[int, int]) -> np.ndarray:
    """Pixel positions [..., 2] (x, y; pixel centres at integers) -> flat patch index [...] (row-major)."""
    col = np.clip(np.floor((xy[..., 0] + 0.5) / patch), 0, grid[1] - 1).astype(np.int64)
    row = np.clip(np.floor((xy[..., 1] + 0.5) / patch), 0, grid[0] - 1).astype(np.int64)
    return row * grid[1] + col


def patch_centres(patch: int, grid: tuple[int, int]) -> np.ndarray:
    """[gh * gw, 2] pixel (x, y) of every patch's centre, row-major."""
    r, c = np.meshgrid(np.arange(grid[0]), np.arange(grid[1]), indexing="ij")
    return np.stack([(c.ravel() + 0.5) * patch - 0.5, (r.ravel() + 0.5) * patch - 0.5], -1).astype(np.float64)


def view_pairs(rows: Any) -> np.ndarray:
    """Cross-view pairs [Q, 2] of row positions: every ordered pair of cameras of each (sequence, frame)."""
    out = []
    for _, g in rows.groupby(["sequence", "frame"], sort=True):
        idx = g.sort_values("camera").index.to_numpy()
        out += [(a, b) for a in idx for b in idx if a != b]
    return np.asarray(out, np.int64).reshape(-1, 2)


def pose_pairs(rows: Any) -> np.ndarray:
    """Cross-pose pairs [Q, 2]: per (sequence, camera), every ordered pair of its n sorted frames at least
    ``n // 2`` (at least 1) frames apart."""
    out = []
    for _, g in rows.groupby(["sequence", "camera"], sort=True):
        idx = g.sort_values("frame").index.to_numpy()
        gap = max(1, len(idx) // 2)
        out += [(idx[k], idx[m]) for k in range(len(idx)) for m in range(len(idx)) if abs(k - m) >= gap]
    return np.asarray(out, np.int64).reshape(-1, 2)


class MatchTask(SynthTask):
    """Correspondence from feature similarity (module docstring); subclasses set ``pair_kind``."""

    version = "2"  # 2: primary metric pck_moved; xpose pairs every frame pair >= n // 2 apart
    domain = "body"
    protocol = None
    citation = CITE_MATCH
    defaults = SYNTH_DEFAULTS
    fields = ("joints2d", "parts")
    protocols: ClassVar[tuple[str, ...]] = ("match",)
    pair_kind: ClassVar[str] = ""
    metrics = (MetricSpec("pck_moved", "%", True, "pck over the queries whose joint moved more than one patch size",
                          subset=True),
               MetricSpec("pck_2_moved", "%", True, "pck_2 over the same moved queries", subset=True),
               MetricSpec("pck", "%", True, "matched patch centre within one patch size of the joint in B"),
               MetricSpec("pck_2", "%", True, "matched patch centre within two patch sizes of the joint in B"))
    primary_metric = "pck_moved"

    def __init__(self, root: Any = None) -> None:
        super().__init__(root)
        self._patch: dict[tuple, int] = {}

    def rows(self, split: Split, limit: int | None = None) -> Any:
        """The manifest rows (sequence, camera, frame) of the dataset's items, in item order (index 0..N-1)."""
        store = FrameStore(self.frame_root())
        idx = store.indices(split)
        idx = idx[:limit] if limit is not None else idx
        return store.manifest.iloc[idx][["sequence", "camera", "frame"]].reset_index(drop=True)

    def pairs(self, split: Split, limit: int | None = None) -> np.ndarray:
        """[P, 2] item indices (A, B) of the pairs (module docstring)."""
        rows = self.rows(split, limit)
        return view_pairs(rows) if self.pair_kind == "cross_view" else pose_pairs(rows)

    def visible(self, a: Mapping[str, np.ndarray]) -> np.ndarray:
        """[N, J] bool: joint inside the crop and on its own or its parent's body segment (module docstring)."""
        xy, parts = a["joints2d"], a["parts"]
        n, j = xy.shape[:2]
        s = parts.shape[-1]
        px = np.round(xy).astype(np.int64)
        inside = ((xy > -0.5) & (xy < s - 0.5)).all(-1)
        px = np.clip(px, 0, s - 1)
        label = parts[np.arange(n)[:, None], px[..., 1], px[..., 0]]
        meta = self.meta()
        if list(meta.get("part_names") or []) == PART_NAMES and j == len(PARENTS):
            own = np.asarray(joint_parts("smpl"))
            parent = own[[max(p, 0) for p in PARENTS]]
            on_body = (label == own[None]) | (label == parent[None])
        else:
            on_body = label > 0
        return inside & on_body

    def queries(self, split: Split, img_size: int, limit: int | None = None) -> dict[str, np.ndarray]:
        """``a``, ``b`` (item indices), ``joint`` [Q]: every joint visible in both images of every pair."""
        key = ("queries", split, img_size, limit)
        if key not in self._cache:
            self._cache[key] = self._queries(split, img_size, limit)
        return self._cache[key]

    def _queries(self, split: Split, img_size: int, limit: int | None) -> dict[str, np.ndarray]:
        arr = self.arrays(split, img_size, limit)
        pairs = self.pairs(split, limit)
        vis = self.visible(arr)
        both = vis[pairs[:, 0]] & vis[pairs[:, 1]] if len(pairs) else np.zeros((0, vis.shape[1]), bool)
        p, j = np.nonzero(both)
        if len(p) == 0:
            raise DataError(f"{self.name}: no {self.pair_kind.replace('_', '-')} pair with a joint visible in both "
                            f"images among the {len(vis)} {split!r} frames of {self.frame_root()} ({len(pairs)} "
                            "pairs); it needs sequences filmed by >= 2 cameras over >= 2 frames (raise --limit)")
        return {"a": pairs[p, 0], "b": pairs[p, 1], "joint": j.astype(np.int64)}

    def _grid(self, img_size: int, patch: int) -> tuple[int, int]:
        if patch <= 0 or img_size % patch:
            raise CpcbenchError(f"{self.name}: a {img_size} px input does not split into {patch} px patches")
        return img_size // patch, img_size // patch

    def match_scores(self, feats: TokenFeatures, split: Split, img_size: int,
                     limit: int | None = None) -> dict[str, np.ndarray]:
        """Per-query ``pck`` / ``pck_2`` (0 or 100) from the cosine similarity of ``feats.tokens`` (item i = item i
        of ``build_dataset(split, img_size, limit)``), and ``pck_moved`` / ``pck_2_moved``: the same on the moved
        queries, NaN on the others (module docstring). All arrays [Q], one value per query."""
        arr = self.arrays(split, img_size, limit)
        tokens = feats.tokens
        patch, grid, prefix = int(feats.patch_size), tuple(int(g) for g in feats.grid), int(feats.num_prefix)
        if grid != self._grid(img_size, patch):
            raise CpcbenchError(f"{self.name}: features of a {grid[0]}x{grid[1]} grid of {patch} px patches do not "
                                f"tile the {img_size} px input")
        n, g = len(arr["image"]), grid[0] * grid[1]
        if len(tokens) != n or tokens.shape[1] != prefix + g:
            raise CpcbenchError(f"{self.name}: features of shape {tuple(tokens.shape)} do not match the {n} "
                                f"{split!r} items x ({prefix} prefix + {g} patch) tokens")
        self._patch[(split, img_size, limit)] = patch
        q = self.queries(split, img_size, limit)
        xy = arr["joints2d"].astype(np.float64)
        feat = np.asarray(tokens[:, prefix:], np.float32)
        feat = feat / np.maximum(np.linalg.norm(feat, axis=-1, keepdims=True), 1e-12)
        qa = patch_of(xy[q["a"], q["joint"]], patch, grid)
        match = np.empty(len(qa), np.int64)
        for s in range(0, len(qa), 256):  # [chunk, C] x [chunk, G, C]: bounded memory
            sl = slice(s, s + 256)
            sims = np.einsum("qc,qgc->qg", feat[q["a"][sl], qa[sl]], feat[q["b"][sl]])
            match[sl] = sims.argmax(1)
        centres = patch_centres(patch, grid)
        target = xy[q["b"], q["joint"]]
        d = np.linalg.norm(centres[match] - target, axis=-1)
        moved = self._moved(centres[qa], target, patch)
        if not moved.any():
            raise DataError(f"{self.name}: none of the {len(qa)} {split!r} queries has its joint more than one "
                            f"{patch} px patch away from its patch in the other image, so pck_moved is undefined "
                            "(raise --limit, or use a backbone with smaller patches)")
        out = {k: 100.0 * (d <= t * patch) for k, t in THRESHOLDS.items()}
        return out | {f"{k}_moved": np.where(moved, v, np.nan) for k, v in out.items()}

    @staticmethod
    def _moved(same: np.ndarray, target: np.ndarray, patch: int) -> np.ndarray:
        """[Q] bool: the joint in B [Q, 2] lies more than ``MOVED`` patch sizes from ``same`` [Q, 2], the centre of
        the query's patch in A (the queries the same-position guess misses at the ``pck`` threshold)."""
        return np.linalg.norm(same - target, axis=-1) > MOVED * patch

    def match_baseline(self, split: Split, img_size: int, limit: int | None = None,
                       patch_size: int | None = None) -> dict[str, float]:
        """Chance (a uniformly random patch of B, exact; over the moved queries for ``*_moved``) per metric, and
        ``<metric>@same_position`` (the patch of B at the query's patch index in A; ``pck_moved@same_position`` = 0
        by construction). ``patch_size``: the backbone's (default: that of the last ``match_scores`` call on this
        split). Without moved queries the ``*_moved`` keys are absent (``match_scores`` refuses that split)."""
        patch = patch_size or self._patch.get((split, img_size, limit))
        if not patch:
            raise CpcbenchError(f"{self.name}: match_baseline needs the patch size (pass patch_size=, or call "
                                "match_scores first)")
        grid = self._grid(img_size, int(patch))
        q = self.queries(split, img_size, limit)
        xy = self.arrays(split, img_size, limit)["joints2d"].astype(np.float64)
        target = xy[q["b"], q["joint"]]
        centres = patch_centres(int(patch), grid)
        d_all = np.linalg.norm(centres[None] - target[:, None], axis=-1)  # [Q, G]
        same = centres[patch_of(xy[q["a"], q["joint"]], int(patch), grid)]
        d_same = np.linalg.norm(same - target, axis=-1)
        moved = self._moved(same, target, int(patch))
        out: dict[str, float] = {}
        for k, t in THRESHOLDS.items():
            hit_all, hit_same = 100.0 * (d_all <= t * patch), 100.0 * (d_same <= t * patch)
            out[k] = float(hit_all.mean())
            out[f"{k}@same_position"] = float(hit_same.mean())
            if moved.any():
                out[f"{k}_moved"] = float(hit_all[moved].mean())
                out[f"{k}_moved@same_position"] = float(hit_same[moved].mean())
        return out


@TASKS.register("probe-body-xview")
class ProbeBodyXView(MatchTask):
    """Cross-view correspondence of body joints from feature similarity (module docstring); protocol ``match``."""

    name = "probe-body-xview"
    pair_kind = "cross_view"


@TASKS.register("probe-body-xpose")
class ProbeBodyXPose(MatchTask):
    """Cross-pose (same camera, another instant) correspondence of body joints (module docstring); ``match``."""

    name = "probe-body-xpose"
    pair_kind = "cross_pose"
