"""The correspondence probes (tasks/probe_match.py) on rendered body frames at 64 px (a set of 16-frame sequences
filmed by 2 cameras, so that joints move by more than a patch between the far instants; the conftest's tiny set of
4-frame sequences for refusals): pairs and visibility of hand-made cases, features that encode the body point (pck
and pck_moved ~100 %), the patch position only (= the same-position baseline; pck_moved 0) or nothing (~chance), the
exact chance formulas (all and moved queries) against a Monte-Carlo estimate, the NaN marking of the moved subset
and its aggregation, and clear refusals."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from core.errors import CpcbenchError, DataError
from harness.registries import TASKS
from harness.results import summarize_metric
from tasks.probe_match import patch_centres, patch_of, pose_pairs, view_pairs

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


@pytest.fixture(scope="module")
def long_body(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 subjects x 1 motion x 2 cameras x 16 frames at 64 px (subject 2 = the test split: 32 frames)."""
    from humans.world import generate

    return generate("body", frames=96, size=64, cameras=2, seq_len=16, motions_per_subject=1, seed=0,
                    out=tmp_path_factory.mktemp("long_body"), workers=1)


@pytest.fixture(scope="module", params=["probe-body-xview", "probe-body-xpose"])
def task(request, long_body: Path):
    return TASKS.get(request.param)(long_body)


def moved_mask(task, patch: int = PATCH) -> np.ndarray:
    """[Q] bool, computed here from the definition: the joint in B lies more than one patch from the centre of
    the query's patch in A."""
    q = task.queries("test", SIZE)
    xy = task.arrays("test", SIZE)["joints2d"].astype(np.float64)
    g = (SIZE // patch,) * 2
    same = patch_centres(patch, g)[patch_of(xy[q["a"], q["joint"]], patch, g)]
    return np.linalg.norm(same - xy[q["b"], q["joint"]], axis=-1) > patch


def test_pairs_of_a_hand_made_manifest() -> None:
    rows = pd.DataFrame({"sequence": ["s"] * 6 + ["t"] * 2 + ["u"] * 4, "camera": ["c0", "c1"] * 3 + ["c0"] * 6,
                         "frame": [0, 0, 1, 1, 2, 2, 0, 1, 3, 2, 1, 0]})
    v = {tuple(p) for p in view_pairs(rows)}
    assert v == {(0, 1), (1, 0), (2, 3), (3, 2), (4, 5), (5, 4)}  # same instant, every ordered camera pair
    p = pose_pairs(rows)
    # (s, c0): frames 0, 1, 2 at rows 0, 2, 4 -> gap 3 // 2 = 1: every ordered pair; (s, c1) likewise;
    # (t, c0): frames 0, 1, gap 1; (u, c0): frames 0..3 at rows 11, 10, 9, 8 -> gap 2: (0, 2), (0, 3), (1, 3)
    s_c0 = {(0, 2), (0, 4), (2, 4)}
    u = {(11, 9), (11, 8), (10, 8)}
    both = s_c0 | {(a + 1, b + 1) for a, b in s_c0} | {(6, 7)} | u
    assert len(p) == 2 * len(both) and {tuple(q) for q in p} == both | {(b, a) for a, b in both}


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
    assert set(s) == {m.name for m in task.metrics} == {"pck", "pck_2", "pck_moved", "pck_2_moved"}
    assert task.primary_metric == "pck_moved" and task.metrics[0].name == "pck_moved"  # first: tables' fallback
    assert len({len(v) for v in s.values()}) == 1 and len(s["pck"]) == len(task.queries("test", SIZE)["a"]) > 100
    assert s["pck"].mean() > 90 and s["pck_2"].mean() > 95 and set(np.unique(s["pck"])) <= {0.0, 100.0}
    moved = moved_mask(task)
    assert moved.sum() >= 100 and not moved.all()
    # a patch of A that holds several joints is ambiguous to any patch-level feature (its joints may part in B);
    # a query joint alone in its patch of A is matched exactly
    q, xy = task.queries("test", SIZE), a["joints2d"]
    p = patch_of(xy, PATCH, GRID)
    inside = ((xy > -0.5) & (xy < SIZE - 0.5)).all(-1)
    pa = p[q["a"], q["joint"]]
    alone = ((p[q["a"]] == pa[:, None]) & inside[q["a"]]).sum(1) == 1
    assert (moved & alone).sum() >= 50 and (s["pck_moved"][moved & alone] == 100).all()
    assert np.nanmean(s["pck_moved"]) > 80 and np.nanmean(s["pck_2_moved"]) > 90


def test_moved_subset_is_marked_by_nan_and_aggregated_over_it(task) -> None:
    n = len(task.arrays("test", SIZE)["image"])
    t = np.random.default_rng(7).normal(size=(n, 1 + GRID[0] * GRID[1], 16))
    s = task.match_scores(feats(t), "test", SIZE, None)
    moved = moved_mask(task)
    for k in ("pck", "pck_2"):
        assert np.array_equal(np.isnan(s[f"{k}_moved"]), ~moved)
        assert np.array_equal(s[f"{k}_moved"][moved], s[k][moved])
    spec = {m.name: m for m in task.metrics}
    block = summarize_metric(spec["pck_moved"], [s["pck_moved"], s["pck_moved"]])
    assert block["n_per_seed"] == [int(moved.sum())] * 2 and block["unit"] == "%" and block["higher_is_better"]
    assert block["mean"] == pytest.approx(s["pck"][moved].mean())
    assert "n_per_seed" not in summarize_metric(spec["pck"], [s["pck"]])


def test_random_features_score_chance(task) -> None:
    n = len(task.arrays("test", SIZE)["image"])
    chance, scores = [], []
    for seed in range(5):
        t = np.random.default_rng(seed).normal(size=(n, 1 + GRID[0] * GRID[1], 16))
        s = task.match_scores(feats(t), "test", SIZE, None)
        scores.append((s["pck"].mean(), np.nanmean(s["pck_moved"])))
        base = task.match_baseline("test", SIZE, None)
        chance.append((base["pck"], base["pck_moved"]))
    assert len(set(chance)) == 1 and chance[0][0] < 15 and chance[0][1] < 15
    assert abs(np.mean([x[0] for x in scores]) - chance[0][0]) < 3
    assert abs(np.mean([x[1] for x in scores]) - chance[0][1]) < 4


def test_position_features_give_the_same_position_baseline(task) -> None:
    n = len(task.arrays("test", SIZE)["image"])
    g = GRID[0] * GRID[1]
    t = np.concatenate([np.zeros((n, 1, g)), np.tile(np.eye(g), (n, 1, 1))], 1)
    s = task.match_scores(feats(t), "test", SIZE, None)
    base = task.match_baseline("test", SIZE, None, patch_size=PATCH)
    assert s["pck"].mean() == pytest.approx(base["pck@same_position"])
    assert s["pck_2"].mean() == pytest.approx(base["pck_2@same_position"])
    assert np.nanmean(s["pck_moved"]) == 0.0 == base["pck_moved@same_position"]  # by construction
    assert np.nanmean(s["pck_2_moved"]) == pytest.approx(base["pck_2_moved@same_position"])
    assert base["pck@same_position"] > 50  # what pck_moved is for: the crops are person-centred


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
    moved = moved_mask(task, patch)
    if moved.any():  # the moved queries alone (as few as 8): their own chance level, from more draws
        draws = rng.integers(0, g * g, (4000, int(moved.sum())))
        centre = np.stack([(draws % g + 0.5) * patch - 0.5, (draws // g + 0.5) * patch - 0.5], -1)
        d = np.linalg.norm(centre - target[moved][None], axis=-1)
        assert 100 * (d <= patch).mean() == pytest.approx(base["pck_moved"], abs=1.0)
        assert 100 * (d <= 2 * patch).mean() == pytest.approx(base["pck_2_moved"], abs=1.5)
    else:
        assert "pck_moved" not in base


def test_refusals(task, frame_sets, synth_body: Path) -> None:
    n = len(task.arrays("test", SIZE)["image"])
    fresh = type(task)(task.root)
    with pytest.raises(CpcbenchError, match="patch size"):
        fresh.match_baseline("test", SIZE, None)
    with pytest.raises(CpcbenchError, match="do not match"):
        task.match_scores(feats(np.zeros((n - 1, 1 + 64, 4))), "test", SIZE, None)
    with pytest.raises(CpcbenchError, match="do not tile"):
        task.match_scores(SimpleNamespace(tokens=np.zeros((n, 17, 4)), num_prefix=1, grid=(4, 4), patch_size=8),
                          "test", SIZE, None)
    short = TASKS.get("probe-body-xpose")(synth_body)  # 4-frame sequences: no joint moves by an 8 px patch
    t = np.zeros((len(short.arrays("test", SIZE)["image"]), 1 + 64, 4))
    with pytest.raises(DataError, match="none of the .* queries has its joint more than one 8 px patch away"):
        short.match_scores(feats(t), "test", SIZE, None)
    if task.name == "probe-body-xview":  # the test kit's frame sets are filmed by one camera: no cross-view pair
        one_cam = TASKS.get("probe-body-xview")(frame_sets["body"])
        with pytest.raises(DataError, match="no cross-view pair"):
            one_cam.queries("test", 32)
