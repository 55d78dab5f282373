"""harness.features: the frozen-feature cache (hit, miss, what the key depends on, atomic writes, corrupt entries,
LRU eviction) on a tiny ViT and a tiny in-memory task."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from task_kit import tiny_backbone

from harness import features as F


class Images(torch.utils.data.Dataset):
    def __init__(self, n: int, size: int, seed: int = 0) -> None:
        self.x = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.x[i], "label": torch.tensor(i % 3)}


class ImageTask:
    """Just what the cache reads of a task: name, version, data_info, build_dataset."""

    name, version = "toy-images", "1"

    def __init__(self, n: int = 5, data: str = "a") -> None:
        self.n, self.data, self.built = n, data, 0

    def data_info(self) -> dict:
        return {"frames": self.data}

    def build_dataset(self, split: str, img_size: int, limit: int | None = None) -> Images:
        self.built += 1
        n = self.n if limit is None else min(self.n, limit)
        return Images(n, img_size, seed=0 if split == "train" else 1)


@pytest.fixture
def bb() -> torch.nn.Module:
    torch.manual_seed(0)
    return tiny_backbone(32)


def extract(bb, tmp_path: Path, task=None, split: str = "train", img_size: int = 32, limit=None, binfo=None):
    return F.extract_features(bb, binfo or {}, task or ImageTask(), split, img_size, limit=limit,
                              cache_root=tmp_path / "features", batch_size=2)


def entries(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "features").iterdir())


def test_tokens_are_forward_features_in_float16(bb, tmp_path):
    bb.train()
    fs = extract(bb, tmp_path)
    assert bb.training  # the caller's mode is restored
    bb.eval()
    with torch.no_grad():
        want = bb.forward_features(ImageTask().build_dataset("train", 32).x).numpy()
    assert isinstance(fs.tokens, np.memmap) and fs.tokens.dtype == np.float16 and not fs.tokens.flags.writeable
    assert fs.tokens.shape == (5, 1 + 16, 32) and fs.num_prefix == 1 and fs.grid == (4, 4) and fs.patch_size == 8
    np.testing.assert_allclose(fs.tokens.astype(np.float32), want, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(fs.pooled("cls"), want[:, 0], rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(fs.pooled("mean"), want[:, 1:].mean(1), rtol=2e-3, atol=2e-3)


def test_hit_reuses_and_touches(bb, tmp_path, monkeypatch):
    a = extract(bb, tmp_path)
    meta = tmp_path / "features" / a.key / "meta.json"
    os.utime(meta, (1, 1))
    monkeypatch.setattr(F, "_compute", lambda *a, **k: pytest.fail("a hit must not recompute"))
    b = extract(bb, tmp_path)
    assert b.key == a.key and np.array_equal(a.tokens, b.tokens) and meta.stat().st_mtime > 1
    assert entries(tmp_path) == [a.key]


def test_key_depends_on_weights_size_split_limit_data_and_norm(bb, tmp_path):
    base = extract(bb, tmp_path).key
    assert extract(bb, tmp_path).key == base
    torch.manual_seed(1)
    keys = [extract(tiny_backbone(32), tmp_path).key,  # another random init: a scratch backbone of another seed
            extract(bb, tmp_path, split="test").key, extract(bb, tmp_path, limit=3).key,
            extract(bb, tmp_path, task=ImageTask(data="b")).key,
            extract(bb, tmp_path, binfo={"input_norm": {"mean": [0.5] * 3, "std": [0.5] * 3}}).key,
            F.cache_key(F.weights_digest(bb), bb, {}, ImageTask(), "train", 48, None)]
    assert F.cache_key(F.weights_digest(bb), bb, {}, ImageTask(), "train", 32, None) == base
    assert len(set(keys)) == len(keys) and base not in keys
    with torch.no_grad():
        bb.blocks[0].mlp.fc1.weight[0, 0] += 1e-3
    assert extract(bb, tmp_path).key != base


def test_weights_digest_sees_every_byte(bb):
    d = F.weights_digest(bb)
    assert d == F.weights_digest(bb) and len(d) == 64
    with torch.no_grad():
        bb.norm.bias[3] = 1.0
    assert F.weights_digest(bb) != d


def test_leftover_tmp_dir_is_ignored_and_removed(bb, tmp_path):
    root = tmp_path / "features"
    root.mkdir()
    dead = root / f"{F.TMP_PREFIX}0123456789abcdef-999999999-deadbeef"  # a pid that cannot be alive
    dead.mkdir()
    (dead / "tokens.npy").write_bytes(b"garbage")
    fs = extract(bb, tmp_path)
    assert entries(tmp_path) == [fs.key] and fs.tokens.shape[0] == 5


def test_half_written_entry_is_recomputed(bb, tmp_path, caplog):
    key = extract(bb, tmp_path).key
    (tmp_path / "features" / key / "meta.json").unlink()  # as if the process died before meta.json
    with caplog.at_level(logging.WARNING, logger="cpcbench.features"):
        fs = extract(bb, tmp_path)
    assert "half-written" in caplog.text and fs.tokens.shape == (5, 17, 32)


@pytest.mark.parametrize("damage", ["truncate", "shape", "meta", "targets"])
def test_corrupt_entry_is_recomputed_never_used(bb, tmp_path, caplog, damage):
    good = extract(bb, tmp_path)
    want = np.array(good.tokens)
    entry = tmp_path / "features" / good.key
    if damage == "truncate":
        data = (entry / "tokens.npy").read_bytes()
        (entry / "tokens.npy").write_bytes(data[: len(data) // 2])
    elif damage == "shape":
        np.save(entry / "tokens.npy", np.zeros((5, 17, 31), np.float16))
    elif damage == "meta":
        (entry / "meta.json").write_text("{not json")
    else:
        np.savez(entry / "targets.npz", label=np.zeros(4, np.int64))  # another length than the tokens
    with caplog.at_level(logging.WARNING, logger="cpcbench.features"):
        fs = extract(bb, tmp_path)
    assert "unusable" in caplog.text
    np.testing.assert_array_equal(np.array(fs.tokens), want)


def test_entry_for_another_split_length_is_refused(bb, tmp_path, caplog):
    fs = extract(bb, tmp_path)
    # the same key over a dataset of another length (e.g. the frame set changed under the same path)
    with caplog.at_level(logging.WARNING, logger="cpcbench.features"):
        fs2 = F.extract_features(bb, {}, ImageTask(), "train", 32, cache_root=tmp_path / "features",
                                 dataset=Images(4, 32))
    assert fs2.key == fs.key and fs2.tokens.shape[0] == 4 and "unusable" in caplog.text


def test_lru_eviction_over_a_tiny_budget(bb, tmp_path, monkeypatch):
    one = extract(bb, tmp_path, split="train")
    size = sum(f.stat().st_size for f in (tmp_path / "features" / one.key).iterdir())
    monkeypatch.setenv(F.CACHE_ENV, str(2.5 * size / 1e9))  # room for two entries
    two = extract(bb, tmp_path, split="test")
    os.utime(tmp_path / "features" / two.key / "meta.json", (time.time() - 100,) * 2)
    os.utime(tmp_path / "features" / one.key / "meta.json", (time.time() - 50,) * 2)  # one used more recently
    three = extract(bb, tmp_path, limit=5 - 1)
    assert entries(tmp_path) == sorted([one.key, three.key])  # "two" was the least recently used
    monkeypatch.setenv(F.CACHE_ENV, "0")  # over budget on its own: the new entry stays, the rest goes
    four = extract(bb, tmp_path, limit=2)
    assert entries(tmp_path) == [four.key]


def test_bad_budget_is_a_clear_error(monkeypatch):
    from core.errors import CpcbenchError

    monkeypatch.setenv(F.CACHE_ENV, "lots")
    with pytest.raises(CpcbenchError, match="CPCBENCH_FEATURE_CACHE_GB"):
        F.cache_budget_bytes()


def test_meta_describes_the_entry(bb, tmp_path):
    fs = extract(bb, tmp_path)
    meta = json.loads((tmp_path / "features" / fs.key / "meta.json").read_text())
    assert meta["key"] == fs.key and meta["shape"] == [5, 17, 32] and meta["dtype"] == "float16"
    assert meta["task"] == "toy-images" and meta["split"] == "train" and meta["img_size"] == 32


def test_tokens_beyond_float16_are_refused(bb, tmp_path):
    from core.errors import CpcbenchError

    with torch.no_grad():
        bb.norm.bias.fill_(1e6)
    with pytest.raises(CpcbenchError, match="not finite in float16"):
        extract(bb, tmp_path)
    assert entries(tmp_path) == []  # nothing half-written is left behind


def test_hit_reads_no_image_and_keeps_targets(bb, tmp_path):
    """A warm entry answers without building the dataset (the training images are never loaded)."""
    fs = extract(bb, tmp_path)
    calls = []
    hit = F.extract_features(bb, {}, ImageTask(), "train", 32, cache_root=tmp_path / "features",
                             dataset=lambda: calls.append(1) or pytest.fail("a hit must not build the dataset"))
    assert calls == [] and hit.key == fs.key
    np.testing.assert_array_equal(hit.targets["label"], np.arange(5) % 3)


def test_compiled_extraction_equals_eager(bb, tmp_path: Path) -> None:
    """``compile=True`` (blocks compiled, the last of 5 items padded into a full batch of 2) gives the eager tokens."""
    from harness import fast

    if fast.compiler_problem() is not None:
        pytest.skip("no C++ compiler for torch.compile")
    eager = extract(bb, tmp_path / "a")
    compiled = F.extract_features(bb, {}, ImageTask(), "train", 32, cache_root=tmp_path / "b" / "features",
                                  batch_size=2, compile=True)
    assert compiled.tokens.shape == eager.tokens.shape == (5, *eager.tokens.shape[1:])
    np.testing.assert_allclose(np.asarray(compiled.tokens, np.float32), np.asarray(eager.tokens, np.float32),
                               rtol=2e-3, atol=2e-3)
    assert all(getattr(m, "_compiled_call_impl", None) is None for m in bb.modules())  # left as it was
