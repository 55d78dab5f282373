"""Frame-set format: writer/reader round-trip, pair sampling rules, corrupt shards."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import DataError
from humans.frames import FrameStore, FrameWriter, PairSampler


def _write(root, shard_size=5, seqs=2, cams=3, frames=6):
    w = FrameWriter(root, {"domain": "body"}, shard_size=shard_size)
    for s in range(seqs):
        for c in range(cams):
            for f in range(frames):
                rgb = np.full((8, 8, 3), s * 100 + c * 10 + f, np.uint8)
                w.add({"rgb": rgb, "bbox": np.array([1, 2, 3, 4], np.float32)},
                      dict(sequence=f"s{s}", camera=f"c{c}", frame=f, subject=f"p{s}",
                           split="train" if s == 0 else "test"))
    return w.close()


def test_roundtrip_and_select(tmp_path):
    store = FrameStore(_write(tmp_path))
    assert len(store) == 36 and store.meta["domain"] == "body"
    for i in (0, 7, 35):
        row = store.manifest.iloc[i]
        expect = int(row["sequence"][1:]) * 100 + int(row["camera"][1:]) * 10 + int(row["frame"])
        assert store.load(i)["rgb"][0, 0, 0] == expect
        np.testing.assert_array_equal(store.load(i)["bbox"], [1, 2, 3, 4])
    test = store.select(split="test")
    assert len(test) == 18 and set(test.manifest["subject"]) == {"p1"}
    assert list(store.indices("train")) == list(range(18))


@pytest.mark.parametrize("mix", [0.0, 0.5, 1.0])
def test_pair_rules(tmp_path, mix):
    store = FrameStore(_write(tmp_path))
    sampler = PairSampler(store.manifest, mix=mix, min_gap=2, max_gap=3)
    rng = np.random.default_rng(0)
    kinds = set()
    for _ in range(200):
        i, j, kind = sampler.sample(rng)
        a, b = store.manifest.iloc[i], store.manifest.iloc[j]
        kinds.add(kind)
        assert a["sequence"] == b["sequence"]
        if kind == "cross_view":
            assert a["frame"] == b["frame"] and a["camera"] != b["camera"]
        else:
            assert a["camera"] == b["camera"] and 2 <= abs(a["frame"] - b["frame"]) <= 3
    assert kinds == {0.0: {"cross_pose"}, 0.5: {"cross_view", "cross_pose"}, 1.0: {"cross_view"}}[mix]


def test_no_pairs_is_clear(tmp_path):
    store = FrameStore(_write(tmp_path, cams=1, frames=2))
    with pytest.raises(DataError, match="no cross-view pairs"):
        PairSampler(store.manifest, mix=0.5)


def test_corrupt_shard_names_file(tmp_path):
    store = FrameStore(_write(tmp_path))
    shard = tmp_path / "shards" / store.manifest.iloc[0]["shard"]
    shard.write_bytes(shard.read_bytes()[:40])
    with pytest.raises(DataError, match=shard.name):
        FrameStore(tmp_path).load(0)


def test_missing_manifest(tmp_path):
    with pytest.raises(DataError, match="cpcbench data synth"):
        FrameStore(tmp_path)
