"""Session-wide fixtures: tiny synthetic frame sets rendered once per test session (a few seconds).

``synth_body``: 3 subjects x 2 motions x 3 cameras x 4 frames at 64 px (subject 2 is the test subject);
``synth_hand``: the same layout with MANO hands; ``synth_objects``: 10 object instances x 3 cameras x 2 frames.
Each fixture returns the frame-set directory (``humans.frames.FrameStore(path)`` reads it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

TINY = {
    "body": {"frames": 72, "size": 64, "cameras": 3, "seq_len": 4, "motions_per_subject": 2},
    "hand": {"frames": 72, "size": 64, "cameras": 3, "seq_len": 4, "motions_per_subject": 2},
    "objects": {"frames": 60, "size": 64, "cameras": 3, "seq_len": 2, "motions_per_subject": 1},
}


def tiny_frames(root: Path, domain: str, seed: int = 0) -> Path:
    """Render the tiny frame set of ``domain`` into ``root`` (deterministic for ``seed``)."""
    from humans.world import generate

    return generate(domain, seed=seed, out=root, workers=1, **TINY[domain])


@pytest.fixture(scope="session")
def synth_body(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_frames(tmp_path_factory.mktemp("synth_body"), "body")


@pytest.fixture(scope="session")
def synth_hand(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_frames(tmp_path_factory.mktemp("synth_hand"), "hand")


@pytest.fixture(scope="session")
def synth_objects(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_frames(tmp_path_factory.mktemp("synth_objects"), "objects")
