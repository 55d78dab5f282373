"""docs/diagnostics/facing_probe.py: yaw bins of hand-made bodies, mirrored yaw on flips, and a short run."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import diagnostic


@pytest.fixture(scope="module")
def probe():
    return diagnostic("facing_probe")


def _body(facing_deg: float) -> np.ndarray:
    """[1, 24, 3] camera-frame joints of an upright body (y down, OpenCV) whose front points at yaw ``facing_deg``
    (0: away from the camera along +z, 90: towards +x)."""
    a = np.radians(facing_deg)
    front = np.array([np.sin(a), 0.0, np.cos(a)])
    up = np.array([0.0, -1.0, 0.0])  # the camera's y axis points down
    left = np.cross(up, front)  # a body's left, seen with its up and front
    j = np.zeros((1, 24, 3))
    j[0, 1], j[0, 2], j[0, 12] = 0.1 * left, -0.1 * left, 0.5 * up
    return j


@pytest.mark.parametrize("deg,want", [(0, 4), (60, 5), (100, 6), (170, 7), (-170, 0), (-100, 1), (-20, 3)])
def test_yaw_bins(probe, deg: float, want: int) -> None:
    assert probe.yaw_bins(_body(deg))[0] == want


def test_flip_mirrors_the_yaw_bin(probe) -> None:
    rng = np.random.default_rng(0)
    for deg in (10, 60, 100, 170, -30, -120):
        j = _body(deg)
        img = rng.integers(0, 255, (1, 8, 8, 3), dtype=np.uint8)
        flipped = j * [-1, 1, 1]
        flipped[:, [1, 2]] = flipped[:, [2, 1]]  # mirroring swaps the left and right hips
        b = probe.yaw_bins(j)
        assert probe.yaw_bins(flipped)[0] == probe.BINS - 1 - b[0]
        # batch() with an rng that flips: the image is mirrored and the label with it
        class Flip:
            def random(self):
                return 0.0

            def permutation(self, n):
                return np.arange(n)

            def uniform(self, lo, hi):
                return 1.0

        x, y = probe.batch(img, b, Flip())
        x0, _ = probe.batch(img, b, None)
        assert y[0] == probe.BINS - 1 - b[0]
        assert np.allclose(x.numpy(), x0.numpy()[..., ::-1], atol=1e-6)


def test_short_run(probe, synth_body: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", ["facing_probe", str(synth_body), "--steps", "10", "--size", "32",
                                      "--batch-size", "4", "--augment"])
    probe.main()
    out = capsys.readouterr().out
    assert "facing yaw top-1 test" in out and "chance 12.5 %" in out
