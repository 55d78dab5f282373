"""The correspondence probes (tasks/probe_match.py) on the conftest's tiny rendered body frames (3 cameras x 4 frames
per sequence, 64 px): pairs and visibility of hand-made cases, features that encode the body point (pck ~100 %), the
patch position only (= the same-position baseline) or nothing (~chance), the exact chance formula against a
Monte-Carlo estimate, and clear refusals."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from core.errors import CpcbenchError, DataError
from harness.registries import TASKS
from tasks.probe_match import patch_of, pose_pairs, view_pairs

SIZE, PATCH = 64, 8
GRID = (SIZE // PATCH, SIZE // PATCH)


def feats(tokens: np.ndarray, patch: int = PATCH) -> SimpleNamespace:
    """A stand-in for harness.features.FeatureSet: [N, 1 + G, C] tokens (one prefix token)."""
    g = SIZE // patch
    return SimpleNamespace(tokens=tokens.astype(np.float16), num_prefix=1, grid=(g, g), patch_size=patch,
                           img_size=SIZE)


def joint_tokens(xy: np.ndarray, patch: int = PATCH) -> np.ndarray:
    """Tokens that say which joints lie in each patch: patch p of frame i holds the one-hot e_j of every joint j
    inside it; a patch without a joint holds its own unused channel (similar to no body point)."""
    n, j = xy.shape[:2]
    g = (SIZE // patch) ** 2
    t = np.zeros((n, 1 + g, j + g), np.float32)
    t[:, 1 + np.arange(g), j + np.arange(g)] = 1.0
    inside = ((xy > -0.5) & (xy < SIZE - 0.5)).all(-1)
    p = patch_of(xy, patch, (SIZE // patch,) * 2)
    for i, k in zip(*np.nonzero(inside), strict=True):
        t[i, 1 + p[i, k], j + p[i, k]] = 0.0
        t[i, 1 + p[i, k], k] += 1.0
    return t


@pytest.fixture(scope="module", params=["probe-body-xview", "probe-body-xpose"])
def task(request, synth_body: Path):
    return TASKS.get(request.param)(synth_body)


def test_pairs_of_a_hand_made_manifest() -> None:
    rows = pd.DataFrame({"sequence": ["s"] * 6 + ["t"] * 2, "camera": ["c0", "c1"] * 3 + ["c0", "c0"],
                         "frame": [0, 0, 1, 1, 2, 2, 0, 1]})
    v = {tuple(p) for p in view_pairs(rows)}
    assert v == {(0, 1), (1, 0), (2, 3), (3, 2), (4, 5), (5, 4)}  # same instant, every ordered camera pair
    p = {tuple(q) for q in pose_pairs(rows)}
    # (s, c0): frames 0, 1, 2 -> gap 1: (0, 1), (1, 2) both ways; (s, c1) likewise; (t, c0): frames 0, 1, gap 1
    assert p == {(0, 2), (2, 0), (2, 4), (4, 2), (1, 3), (3, 1), (3, 5), (5, 3), (6, 7), (7, 6)}


def test_patch_geometry() -> None:
    # pixel centres at integers: patch 0 holds pixels 0..7, i.e. x in [-0.5, 7.5)
    xy = np.array([[-0.5, 0.0], [7.49, 7.5], [7.5, 0.0], [63.4, 63.4]])
    assert patch_of(xy, 8, (8, 8)).tolist() == [0, 8, 1, 63]


def test_visibility_of_hand_made_joints(synth_body: Path) -> None:
    task = TASKS.get("probe-body-xview")(synth_body)
    xy = np.full((1, 24, 2), 10.0)
    parts = np.zeros((1, SIZE, SIZE), np.int64)
    parts[0, 10, 10] = 11  # left_lower_leg: the segment of the left knee (4), and of the left ankle's parent (7)
    xy[0, 0] = [-3.0, 10.0]  # outside the crop
    vis = task.visible({"joints2d": xy, "parts": parts})[0]
    assert vis[4] and vis[7] and not vis[0] and not vis[1] and not vis[12]  # hip (upper leg), neck: another part
    assert vis.sum() == 2


def test_features_of_the_body_point_match(task) -> None:
    a = task.arrays("test", SIZE)
    s = task.match_scores(feats(joint_tokens(a["joints2d"])), "test", SIZE, None)
    assert set(s) == {"pck", "pck_2"} and len(s["pck"]) == len(task.queries("test", SIZE)["a"]) > 100
    assert s["pck"].mean() > 90 and s["pck_2"].mean() > 95 and set(np.unique(s["pck"])) <= {0.0, 100.0}


def test_random_features_score_chance(task) -> None:
    n = len(task.arrays("test", SIZE)["image"])
    chance, scores = [], []
    for seed in range(3):
        t = np.random.default_rng(seed).normal(size=(n, 1 + GRID[0] * GRID[1], 16))
        scores.append(task.match_scores(feats(t), "test", SIZE, None)["pck"].mean())
        chance.append(task.match_baseline("test", SIZE, None)["pck"])
    assert abs(np.mean(scores) - chance[0]) < 5 and chance[0] < 15


def test_position_features_give_the_same_position_baseline(task) -> None:
    n = len(task.arrays("test", SIZE)["image"])
    g = GRID[0] * GRID[1]
    t = np.concatenate([np.zeros((n, 1, g)), np.tile(np.eye(g), (n, 1, 1))], 1)
    s = task.match_scores(feats(t), "test", SIZE, None)
    base = task.match_baseline("test", SIZE, None, patch_size=PATCH)
    assert s["pck"].mean() == pytest.approx(base["pck@same_position"])
    assert s["pck_2"].mean() == pytest.approx(base["pck_2@same_position"])


@pytest.mark.parametrize("patch", [8, 16])
def test_chance_is_exact(task, patch: int) -> None:
    """The chance baseline (every patch of B equally likely) equals a Monte-Carlo draw of uniformly random patches."""
    q = task.queries("test", SIZE)
    xy = task.arrays("test", SIZE)["joints2d"]
    target = xy[q["b"], q["joint"]].astype(np.float64)
    g = SIZE // patch
    rng = np.random.default_rng(0)
    draws = rng.integers(0, g * g, (400, len(target)))
    centre = np.stack([(draws % g + 0.5) * patch - 0.5, (draws // g + 0.5) * patch - 0.5], -1)
    d = np.linalg.norm(centre - target[None], axis=-1)
    base = task.match_baseline("test", SIZE, None, patch_size=patch)
    assert 100 * (d <= patch).mean() == pytest.approx(base["pck"], abs=0.5)
    assert 100 * (d <= 2 * patch).mean() == pytest.approx(base["pck_2"], abs=0.8)


def test_refusals(task, frame_sets) -> None:
    n = len(task.arrays("test", SIZE)["image"])
    fresh = type(task)(task.root)
    with pytest.raises(CpcbenchError, match="patch size"):
        fresh.match_baseline("test", SIZE, None)
    with pytest.raises(CpcbenchError, match="do not match"):
        task.match_scores(feats(np.zeros((n - 1, 1 + 64, 4))), "test", SIZE, None)
    with pytest.raises(CpcbenchError, match="do not tile"):
        task.match_scores(SimpleNamespace(tokens=np.zeros((n, 17, 4)), num_prefix=1, grid=(4, 4), patch_size=8),
                          "test", SIZE, None)
    if task.name == "probe-body-xview":  # the test kit's frame sets are filmed by one camera: no cross-view pair
        one_cam = TASKS.get("probe-body-xview")(frame_sets["body"])
        with pytest.raises(DataError, match="no cross-view pair"):
            one_cam.queries("test", 32)
