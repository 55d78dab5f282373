"""docs/diagnostics/pose_baseline.py: the Procrustes mean recovers a shape seen under random similarity
transforms (where the camera-frame mean does not), and the script scores both constants on a frame set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import diagnostic
from scipy.spatial.transform import Rotation


@pytest.fixture(scope="module")
def pb():
    return diagnostic("pose_baseline")


def test_procrustes_mean_undoes_rotations_and_scales(pb) -> None:
    from tasks import metrics

    rng = np.random.default_rng(0)
    shape = rng.normal(size=(21, 3))
    rot = Rotation.random(200, random_state=1).as_matrix()
    scale = rng.uniform(0.5, 2.0, size=(200, 1, 1))
    poses = scale * np.einsum("nij,kj->nki", rot, shape) + rng.normal(size=(200, 1, 3))
    from tasks.procrustes import procrustes_mean

    gpa = procrustes_mean(poses)[0]
    tiled = lambda c: np.broadcast_to(c, poses.shape).copy()  # noqa: E731
    assert np.mean(metrics.pa_mpjpe(tiled(gpa), poses)) < 1e-6 * np.abs(poses).max()
    # the camera-frame mean of bodies facing every way is a blur: far from the shape after alignment
    assert np.mean(metrics.pa_mpjpe(tiled(poses.mean(0)), poses)) > 0.1


def test_scores_both_constants(pb, synth_hand: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = pb.main([str(synth_hand)])
    assert set(out) == {"camera-frame mean (the tables' baseline)", "Procrustes mean"}
    assert all(np.isfinite(v) for m in out.values() for v in m.values())
    assert "PA-MPJPE" in capsys.readouterr().out
