from __future__ import annotations

import json
import multiprocessing as mp

import numpy as np
import pytest

from harness.results import (
    RecordError,
    build_record,
    load_records,
    read_record,
    records_frame,
    summarize,
    summarize_metric,
    write_record,
)
from tasks.base import MetricSpec


def _record(backbone: str = "cpc", limit: int | None = None, seed: int = 0) -> dict:
    metrics = {"mpjpe": {**summarize([[10.0, 12.0], [11.0, 13.0]]), "unit": "mm", "higher_is_better": False}}
    return build_record(task={"name": "synth-body-mesh", "version": "1", "protocol": "synth-smpl24-pelvis"},
                        backbone={"name": backbone, "arch": "vit_tiny"}, method=backbone, protocol="finetune",
                        seeds=[seed], fraction=1.0, limit=limit, metrics=metrics, n_samples=2,
                        config={"steps": 1}, wall_time_s=0.1)


def test_summarize():
    s = summarize([[1.0, 3.0], [3.0, 5.0]])
    assert s["mean"] == 3.0 and s["per_seed"] == [2.0, 4.0] and s["std"] == pytest.approx(1.41421356)
    assert summarize([[1.0]])["std"] is None
    with pytest.raises(RecordError, match="non-finite"):
        summarize([[1.0, float("nan")]])
    with pytest.raises(RecordError, match="no samples"):
        summarize([[]])


def test_summarize_a_subset_metric_leaves_nan_out(tmp_path):
    """``exclude_nan`` (a ``MetricSpec.subset`` metric): NaN = outside the subset, left out of mean, stderr and
    per_seed, counted in ``n_per_seed``; infinities and an empty subset still raise; the block makes a valid record."""
    nan = float("nan")
    s = summarize([[nan, 100.0, 0.0, nan], [100.0, nan, nan, 100.0]], exclude_nan=True)
    assert s["per_seed"] == [50.0, 100.0] and s["mean"] == 75.0 and s["n_per_seed"] == [2, 2]
    assert s["stderr"] == pytest.approx(np.std([100.0, 0.0, 100.0, 100.0], ddof=1) / 2)
    assert "n_per_seed" not in summarize([[1.0, 2.0]])
    with pytest.raises(RecordError, match="non-finite"):
        summarize([[1.0, float("inf"), nan]], exclude_nan=True)
    with pytest.raises(RecordError, match="no samples to score in the metric's subset"):
        summarize([[1.0], [nan, nan]], exclude_nan=True)
    with pytest.raises(RecordError, match="non-finite"):  # only a subset metric may hold NaN
        summarize([[nan, 1.0]])
    spec = MetricSpec("pck_moved", "%", True, subset=True)
    block = summarize_metric(spec, [[nan, 100.0, 0.0]])
    assert block["mean"] == 50.0 and block["n_per_seed"] == [2] and block["unit"] == "%"
    rec = _record()
    rec["metrics"]["pck_moved"] = block
    path = write_record(rec, tmp_path)
    assert read_record(path)["metrics"]["pck_moved"]["n_per_seed"] == [2]
    df = records_frame(tmp_path)
    assert df.set_index("metric").loc["pck_moved", "mean"] == 50.0


def test_write_read_frame(tmp_path):
    path = write_record(_record(), tmp_path)
    assert path.parent == tmp_path / "synth-body-mesh" / "cpc"
    rec = read_record(path)
    assert rec["smoke"] is False and rec["git_commit"] and rec["hardware"]["cores"]
    smoke = write_record(_record(limit=4), tmp_path)
    assert read_record(smoke)["smoke"] is True
    df = records_frame(tmp_path)
    assert len(df) == 2 and set(df["smoke"]) == {True, False} and set(df["metric"]) == {"mpjpe"}


def test_corrupt_record_is_clear(tmp_path):
    path = write_record(_record(), tmp_path)
    path.write_text("{not json")
    with pytest.raises(RecordError, match="cannot read result record"):
        load_records(tmp_path)
    rec = _record()
    rec["smoke"] = True
    with pytest.raises(RecordError, match="smoke flag"):
        write_record(rec, tmp_path)


def _writer(args):
    root, worker = args
    for i in range(50):
        write_record(_record(backbone=f"b{worker % 2}", seed=i), root)


def test_concurrent_writers(tmp_path):
    ctx = mp.get_context("spawn")
    with ctx.Pool(8) as pool:
        pool.map(_writer, [(str(tmp_path), w) for w in range(8)])
    paths = list(tmp_path.glob("*/*/*.json"))
    assert len(paths) == 400
    for p in paths:
        json.loads(p.read_text())  # none torn
    assert not list(tmp_path.rglob("*.tmp"))
    assert len(load_records(tmp_path)) == 400
