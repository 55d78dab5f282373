"""Sweep: the grid, skipping finished cells (an interrupted sweep re-run completes only the missing ones),
failures, the identity a record is matched on, the submitit array (local executor) and one real eval cell."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from core.errors import CpcbenchError
from harness.results import TRAIN_STATS, build_record, load_records, write_record
from harness.sweep import (
    Cell,
    EvalOverrides,
    Identity,
    SlurmRecipe,
    parse_backbones,
    parse_fractions,
    plan,
    sweep,
)

DEFAULTS = {"steps": 300, "batch_size": 32, "base_lr": 0.002, "img_size": 64, "layer_decay": 0.75}
SHA = {"cpc": "c" * 64, "mae": "a" * 64, "scratch": ""}


def fake_identity(cell: Cell) -> Identity:
    if cell.backbone not in SHA:
        raise CpcbenchError(f"no local {cell.backbone!r} backbone: make one with `cpcbench pretrain body`")
    return Identity("1", cell.backbone, SHA[cell.backbone], DEFAULTS)


def fake_runner(cell: Cell, results: str, runs: str | None, overrides: EvalOverrides) -> str:
    """A cheap cell: writes the record `cpcbench eval --seeds 1 --first-seed S` would write."""
    cfg = {"steps": overrides.steps or DEFAULTS["steps"], "batch_size": overrides.batch_size or 32,
           "base_lr": overrides.base_lr or 0.002, "img_size": overrides.img_size or DEFAULTS["img_size"],
           "layer_decay": overrides.layer_decay or DEFAULTS["layer_decay"], "train_stats": TRAIN_STATS,
           "defaults": dict(DEFAULTS)}
    if cell.limit is not None:
        cfg["steps"] = min(cfg["steps"], cell.limit)
    value = 100.0 - 10 * (cell.backbone == "cpc") + cell.seed
    rec = build_record(
        task={"name": cell.task, "version": "1", "domain": "hand" if "hand" in cell.task else "body"},
        backbone={"name": cell.backbone, "weights_sha256": SHA[cell.backbone]}, method=cell.backbone,
        protocol=cell.protocol, seeds=[cell.seed], fraction=cell.fraction, limit=cell.limit,
        metrics={"mpjpe": {"mean": value, "std": None, "stderr": 1.0, "per_seed": [value], "unit": "mm",
                           "higher_is_better": False}},
        n_samples=8, config=cfg, wall_time_s=0.01)
    return str(write_record(rec, results))


class Counting:
    """Runner that records which cells it ran and can be told to stop (Ctrl-C) or fail at some cells."""

    def __init__(self, interrupt_at: int | None = None, fail: set[str] = frozenset()) -> None:
        self.ran: list[Cell] = []
        self.interrupt_at, self.fail = interrupt_at, fail

    def __call__(self, cell: Cell, results: str, runs: str | None, overrides: EvalOverrides) -> str:
        if self.interrupt_at is not None and len(self.ran) == self.interrupt_at:
            raise KeyboardInterrupt
        if cell.task in self.fail:
            raise RuntimeError(f"boom on {cell.task}")
        self.ran.append(cell)
        return fake_runner(cell, results, runs, overrides)


GRID = plan(["cpc", "mae", "scratch"], ["synth-body-mesh", "synth-hand-mesh"], seeds=3, fractions=[1.0, 0.5])


def _sweep(results: Path, runner: Counting, cells: list[Cell] = GRID, **kw: object):
    return sweep(cells, results, identify=fake_identity, runner=runner, progress=False, **kw)


def test_plan_order_and_parsing() -> None:
    assert len(GRID) == 3 * 2 * 2 * 3
    assert GRID[0] == Cell("cpc", "synth-body-mesh", "finetune", 1.0, 0, None)
    assert [c.seed for c in GRID[:4]] == [0, 1, 2, 0]
    assert plan(["x"], ["t"], seeds=2, first_seed=5)[1].seed == 6
    assert parse_fractions("1.0, 0.5,0.1") == [1.0, 0.5, 0.1]
    for bad in ("0", "1.5", "x", ""):
        with pytest.raises(CpcbenchError):
            parse_fractions(bad)


def test_interrupted_sweep_rerun_completes_only_missing(tmp_path: Path) -> None:
    results = tmp_path / "results"
    first = Counting(interrupt_at=13)
    with pytest.raises(KeyboardInterrupt):
        _sweep(results, first)
    assert len(first.ran) == 13 and len(load_records(results)) == 13
    second = Counting()
    report = _sweep(results, second)
    assert len(report.skipped) == 13 and len(second.ran) == len(GRID) - 13
    assert set(second.ran).isdisjoint(first.ran) and set(first.ran) | set(second.ran) == set(GRID)
    assert len(load_records(results)) == len(GRID)
    third = Counting()
    assert _sweep(results, third).skipped == GRID and third.ran == []


def test_failed_cells_reported_and_retried(tmp_path: Path) -> None:
    results = tmp_path / "r"
    report = _sweep(results, Counting(fail={"synth-hand-mesh"}))
    assert len(report.failed) == len(GRID) // 2 and len(report.ran) == len(GRID) // 2
    assert "boom on synth-hand-mesh" in report.failed[0][1]
    retry = Counting()
    report = _sweep(results, retry)
    assert {c.task for c in retry.ran} == {"synth-hand-mesh"} and not report.failed
    stop = Counting(fail={"synth-body-mesh"})
    report = _sweep(tmp_path / "r2", stop, fail_fast=True)
    assert len(report.failed) == 1 and report.ran == []


def test_identity_matching(tmp_path: Path) -> None:
    """A record counts for a cell only with the same task version, weights, protocol, fraction, seed, limit and
    schedule; a multi-seed record covers each of its seeds."""
    results = tmp_path / "r"
    cells = plan(["cpc"], ["synth-body-mesh"], seeds=3)
    _sweep(results, Counting(), cells)
    assert _sweep(results, Counting(), cells).pending == []
    # new pretraining weights: everything pending again
    old = SHA["cpc"]
    try:
        SHA["cpc"] = "d" * 64
        assert len(_sweep(results, Counting(), cells, dry_run=True).pending) == 3
    finally:
        SHA["cpc"] = old
    for variant in (plan(["cpc"], ["synth-body-mesh"], seeds=3, limit=4),
                    plan(["cpc"], ["synth-body-mesh"], seeds=3, protocol="linear"),
                    plan(["cpc"], ["synth-body-mesh"], seeds=3, fractions=[0.5])):
        assert len(_sweep(results, Counting(), variant, dry_run=True).pending) == 3
    assert len(_sweep(results, Counting(), cells, dry_run=True, overrides=EvalOverrides(steps=50)).pending) == 3
    # an explicit override equal to the task default is the default schedule
    assert _sweep(results, Counting(), cells, dry_run=True, overrides=EvalOverrides(steps=300)).pending == []
    # one record with seeds [0, 1, 2] (cpcbench eval --seeds 3) covers three cells
    multi = tmp_path / "m"
    rec = load_records(results)[0]
    rec = {k: v for k, v in rec.items() if k != "_path"} | {"run_id": "x-1", "seeds": [0, 1, 2]}
    rec["metrics"]["mpjpe"] |= {"per_seed": [1.0, 2.0, 3.0], "mean": 2.0, "std": 1.0}
    write_record(rec, multi)
    assert _sweep(multi, Counting(), cells, dry_run=True).pending == []


def test_unresolvable_backbone(tmp_path: Path) -> None:
    cells = plan(["cpc", "dino"], ["synth-body-mesh"], seeds=1)
    report = _sweep(tmp_path, Counting(), cells, dry_run=True)
    assert [c.backbone for c in report.unresolved] == ["dino"] and len(report.pending) == 1
    runner = Counting()
    with pytest.raises(CpcbenchError, match="dino for synth-body-mesh.*cpcbench pretrain"):
        _sweep(tmp_path, runner, cells)
    assert runner.ran == []  # nothing starts before every backbone resolves


def test_slurm_array_with_submitit_local_executor(tmp_path: Path) -> None:
    """The slurm launcher submits one job array; submitit's local executor runs it here (no cluster)."""
    import cloudpickle

    from core.config import load_config

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the fake runner travels by value
    recipe_yaml = tmp_path / "recipe.yaml"
    recipe_yaml.write_text("partition: gpu\ngpus: 0\ncpus: 1\ntimeout_min: 5\nsetup: ['echo hi']\n")
    recipe = load_config(SlurmRecipe, recipe_yaml)
    assert recipe.partition == "gpu" and recipe.setup == ("echo hi",)
    results = tmp_path / "results"
    cells = plan(["cpc"], ["synth-body-mesh"], seeds=3)
    fake_runner(cells[0], str(results), None, EvalOverrides())  # one cell already done
    report = sweep(cells, results, launcher="slurm", cluster="local", recipe=recipe, folder=tmp_path / "submitit",
                   identify=fake_identity, runner=fake_runner, wait=True)
    assert len(report.skipped) == 1 and len(report.jobs) == 2 and not report.failed
    assert sorted(r["seeds"][0] for r in load_records(results)) == [0, 1, 2]
    assert sweep(cells, results, launcher="slurm", cluster="local", identify=fake_identity,
                 runner=fake_runner, folder=tmp_path / "submitit").pending == []


def test_backbone_list_keeps_spec_options() -> None:
    """``scratch,patch=16,stem=conv`` (the random-init twin of a run with arch options) is one spec of the list."""
    assert parse_backbones("cpc, mae,scratch,patch=16,stem=conv") == ["cpc", "mae", "scratch,patch=16,stem=conv"]
    assert parse_backbones("scratch,patch=8,dino,vit_small,pos=learned:w.safetensors,runs/a/backbone.safetensors") == [
        "scratch,patch=8", "dino", "vit_small,pos=learned:w.safetensors", "runs/a/backbone.safetensors"]
    for bad in ("", " , "):
        with pytest.raises(CpcbenchError, match="empty"):
            parse_backbones(bad)


def test_cli_dry_run_json(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from harness.cli import app

    res = CliRunner().invoke(app, ["sweep", "--backbones", "scratch", "--tasks", "synth-hand-gesture", "--seeds", "2",
                                   "--results", str(tmp_path), "--dry-run", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output[res.output.index("{"):])
    assert out["cells"] == 2 and out["pending"] == 2 and out["ran"] == 0
    res = CliRunner().invoke(app, ["sweep", "--backbones", "scratch,patch=16,stem=conv", "--tasks",
                                   "synth-hand-gesture", "--seeds", "1", "--results", str(tmp_path), "--dry-run",
                                   "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output[res.output.index("{"):])
    assert out["cells"] == 1 and "scratch,patch=16,stem=conv / " in out["pending_cells"][0]
    res = CliRunner().invoke(app, ["sweep", "--backbones", "scratch", "--tasks", "synth-hand-gesture",
                                   "--launcher", "pbs", "--results", str(tmp_path)])
    assert res.exit_code == 2 and "unknown launcher" in res.output


@pytest.mark.slow
def test_real_eval_cell_then_skipped(tmp_path: Path) -> None:
    """One real cell through harness.evaluate (scratch, smoke limit); re-running skips it."""
    cells = plan(["scratch"], ["synth-hand-gesture"], seeds=1, limit=2)
    results = tmp_path / "results"
    report = sweep(cells, results, runs=tmp_path / "runs", progress=False, overrides=EvalOverrides(device="cpu"))
    assert len(report.ran) == 1 and not report.failed
    (rec,) = load_records(results)
    assert rec["seeds"] == [0] and rec["limit"] == 2 and rec["backbone"]["name"] == "scratch"
    again = sweep(cells, results, runs=tmp_path / "runs", progress=False, overrides=EvalOverrides(device="cpu"))
    assert again.skipped == cells and again.ran == []


def test_slurm_recipe_becomes_sbatch_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The recipe's resources reach the sbatch script submitit would submit (a fake srun stands in for slurm)."""
    from harness.sweep import make_executor

    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")
    recipe = SlurmRecipe(partition="gpu", gpus=2, cpus=4, mem_gb=16, timeout_min=30, account="proj", qos="high",
                         setup=("module load cuda",))
    ex = make_executor(tmp_path / "logs", recipe, cluster="slurm")
    text = ex._executor._make_submission_file_text("python -c pass", "0")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=2", "#SBATCH --cpus-per-task=4",
                 "#SBATCH --mem=16GB", "#SBATCH --time=30", "#SBATCH --account=proj", "#SBATCH --qos=high",
                 "module load cuda"):
        assert line in text, line


def test_slurm_without_cluster_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun/sbatch anywhere
    with pytest.raises(CpcbenchError, match="cannot submit to slurm.*--launcher local"):
        sweep(plan(["cpc"], ["synth-body-mesh"], seeds=1), tmp_path / "r", launcher="slurm",
              identify=fake_identity, runner=fake_runner, folder=tmp_path / "logs")


def test_new_image_size_runs_its_cells(tmp_path: Path) -> None:
    """A sweep at another --img-size is another set of cells: it runs them, and then skips them."""
    results = tmp_path / "r"
    cells = plan(["cpc", "mae"], ["synth-body-mesh"], seeds=2)
    assert len(_sweep(results, Counting(), cells).ran) == 4
    assert _sweep(results, Counting(), cells, overrides=EvalOverrides(img_size=64)).pending == []  # the default
    at96 = Counting()
    assert len(_sweep(results, at96, cells, overrides=EvalOverrides(img_size=96)).ran) == 4 and at96.ran == cells
    assert {r["config"]["img_size"] for r in load_records(results)} == {64, 96}
    assert _sweep(results, Counting(), cells, overrides=EvalOverrides(img_size=96)).pending == []
    assert _sweep(results, Counting(), cells).pending == []


def test_identity_knows_the_input_size_eval_will_use() -> None:
    """Without --img-size an evaluation runs at the backbone's own size (scratch: 128 px), which the sweep must
    know to match records."""
    from harness.backbones import SCRATCH
    from harness.sweep import RegistryIdentifier

    cell = Cell("scratch", "synth-body-2d", "finetune", 1.0, 0)
    assert RegistryIdentifier()(cell).img_size == SCRATCH["img_size"]
    assert RegistryIdentifier(img_size=96)(cell).img_size == 96


def test_a_layer_decay_override_is_its_own_cell(tmp_path: Path) -> None:
    """--layer-decay is part of a cell: records at the default decay do not cover a sweep at another one, and a
    sweep at that decay, once done, is skipped when re-run (not re-run forever)."""
    results = tmp_path / "r"
    cells = plan(["cpc"], ["synth-hand-mesh"], seeds=2)
    _sweep(results, Counting(), cells)
    other = EvalOverrides(layer_decay=1.0)
    first = Counting()
    _sweep(results, first, cells, overrides=other)
    assert len(first.ran) == 2
    again = Counting()
    _sweep(results, again, cells, overrides=other)
    assert again.ran == []


def test_pre_fix_fraction_records_are_not_done(tmp_path: Path) -> None:
    """Records made before head statistics came from the fraction alone do not cover a fraction < 1 cell (the
    sweep re-runs it); at fraction 1 nothing changed and they still count."""
    results = tmp_path / "r"
    cells = plan(["cpc"], ["synth-hand-mesh"], seeds=1, fractions=[1.0, 0.1])
    _sweep(results, Counting(), cells)
    for rec in load_records(results):  # as the committed records were written
        path = Path(rec.pop("_path"))
        del rec["config"]["train_stats"]
        path.write_text(json.dumps(rec))
    rerun = Counting()
    _sweep(results, rerun, cells)
    assert [c.fraction for c in rerun.ran] == [0.1]


def test_a_cell_on_another_frame_set_is_not_done(synth_hand: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A record measured on one synthetic frame set does not cover the same cell on another (``--data-root``); the
    default set is identified without rendering it."""
    import json

    from harness.sweep import RegistryIdentifier, cell_key, done_keys

    monkeypatch.setenv("CPCBENCH_RUNS", str(tmp_path / "runs"))
    cell = Cell("scratch", "synth-hand-gesture", "finetune", 1.0, 0, None)
    on_set = RegistryIdentifier(32, str(synth_hand))(cell)
    default = RegistryIdentifier(32, None)(cell)
    assert on_set.data.startswith(f"data={synth_hand.name}@") and default.data.startswith("data=hand-32-0@")
    assert not (tmp_path / "runs").exists()  # nothing rendered to identify the default set
    gen = json.loads((synth_hand / "meta.json").read_text())["generator"]
    rec = build_record(task={"name": cell.task, "version": on_set.task_version, "domain": "hand"},
                       backbone={"name": "scratch", "weights_sha256": ""}, method="scratch", protocol="finetune",
                       seeds=[0], fraction=1.0, limit=None, metrics={}, n_samples=1,
                       config={"img_size": 32, "train_stats": TRAIN_STATS, "defaults": dict(on_set.task_defaults)},
                       wall_time_s=0.0)
    rec["data"] = {"frames": str(synth_hand), "generator": gen}
    keys = done_keys([rec])
    over = EvalOverrides(img_size=32)
    assert cell_key(cell, on_set, over) in keys and cell_key(cell, default, over) not in keys
