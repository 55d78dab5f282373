"""``cpcbench eval`` through the CLI (typer's CliRunner) on tiny frame sets with a tiny ViT: smoke runs, JSON and
table output, groups, --visualize, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from harness.cli import app

runner = CliRunner()
SIZE = 32


def fake_resolve(spec: str, domain: str = "body", img_size: int | None = None):
    from pretraining.vit import build_vit

    torch.manual_seed(0)
    bb = build_vit("vit_tiny", img_size=img_size or SIZE, patch_size=8, embed_dim=32, depth=2, num_heads=2)
    return bb, {"name": spec, "arch": "vit_tiny-test", "method": "scratch", "weights": "", "weights_sha256": "",
                "img_size": bb.img_size, "pretrain": {}}


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> dict[str, Path]:
    from synth_frames import make_frames

    base = tmp_path_factory.mktemp("cli-frames")
    return {d: make_frames(base / d, d, size=SIZE, seqs=4, frames_per_seq=2) for d in ("body", "hand")}


@pytest.fixture
def tiny(monkeypatch):
    import harness.evaluate as ev

    monkeypatch.setattr(ev, "_resolve_backbone", fake_resolve)


def _args(tmp_path: Path, root: Path, task: str, *extra: str) -> list[str]:
    return ["eval", "--backbone", "tiny", "--task", task, "--data-root", str(root), "--limit", "3", "--steps", "2",
            "--batch-size", "2", "--device", "cpu", "--results", str(tmp_path / "results"), "--runs",
            str(tmp_path / "runs"), *extra]


def test_eval_json_smoke_record(tmp_path, frames, tiny):
    r = runner.invoke(app, _args(tmp_path, frames["body"], "synth-body-2d", "--json"))
    assert r.exit_code == 0, r.output
    recs = json.loads(r.stdout)
    assert len(recs) == 1 and recs[0]["smoke"] and recs[0]["task"]["name"] == "synth-body-2d"
    path = Path(recs[0]["_path"])
    assert path.is_file() and path.with_name(recs[0]["predictions"]).is_file()
    assert path.parent == tmp_path / "results" / "synth-body-2d" / "tiny"
    assert set(recs[0]["baseline_mean"]) == {"pck05", "pck10"}
    assert (tmp_path / "runs" / "eval" / "synth-body-2d").is_dir()  # training runs go to --runs, not ./runs


def test_eval_table_and_group(tmp_path, frames, tiny):
    r = runner.invoke(app, _args(tmp_path, frames["hand"], "hand", "--protocol", "linear"))
    assert r.exit_code == 0, r.output
    assert "SMOKE RUN" in r.stdout and "linear" in r.stdout
    for task in ("synth-hand-gesture", "synth-hand-mesh"):
        assert task in r.stdout
        assert len(list((tmp_path / "results" / task / "tiny").glob("*.json"))) == 1


def test_visualize_writes_png(tmp_path, frames, tiny):
    r = runner.invoke(app, _args(tmp_path, frames["body"], "synth-body-mesh,synth-body-parts", "--visualize"))
    assert r.exit_code == 0, r.output
    for task in ("synth-body-mesh", "synth-body-parts"):
        pngs = list((tmp_path / "results" / task / "tiny").glob("*.png"))
        assert len(pngs) == 1 and pngs[0].stat().st_size > 1000


def test_missing_real_data_is_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("CPCBENCH_DATA", raising=False)
    r = runner.invoke(app, ["eval", "--backbone", "scratch", "--task", "3dpw", "--results", str(tmp_path)])
    assert r.exit_code == 2
    err = r.stderr.strip()
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in r.output
    assert "3dpw" in err.lower() and ("--data-root" in err or "CPCBENCH_DATA" in err)
    assert not list(tmp_path.rglob("*.json"))


@pytest.mark.parametrize("args, needle", [
    (["--task", "synth-body-msh"], "Did you mean"),
    (["--task", "synth-body-mesh", "--protocol", "probe"], "unknown protocol"),
    (["--task", "synth-body-mesh", "--fraction", "1.5"], "--fraction"),
    (["--task", "synth-body-mesh", "--layer-decay", "1.5"], "--layer-decay"),
])
def test_bad_arguments_are_one_line(args, needle):
    r = runner.invoke(app, ["eval", "--backbone", "scratch", *args])
    assert r.exit_code == 2 and needle in r.stderr and r.stderr.strip().count("\n") == 0


def test_eval_and_sweep_options_come_from_one_definition(tmp_path, monkeypatch):
    """Every flagged field of EvalOverrides is an option of both commands and reaches the evaluation unchanged."""
    from dataclasses import fields

    import harness.evaluate as ev
    import harness.sweep as sw
    from harness.eval_options import EvalConfig, EvalOverrides

    flags = {f.name: f.metadata["flag"] for f in fields(EvalOverrides) if "flag" in f.metadata}
    values = {"steps": "7", "batch_size": "3", "base_lr": "0.5", "img_size": "48", "layer_decay": "0.9",
              "data_root": str(tmp_path),
              "device": "cpu", "num_workers": "2", "feature_cache": "off", "compile": None}  # None: a bare flag
    assert set(flags) == set(values)
    want = EvalOverrides(steps=7, batch_size=3, base_lr=0.5, img_size=48, layer_decay=0.9, data_root=str(tmp_path),
                         device="cpu",
                         num_workers=2, feature_cache="off", compile=True)
    seen: dict[str, object] = {}

    def fake_evaluate(cfg, *args, **kwargs):
        seen["eval"] = cfg
        return {"metrics": {}, "task": {"name": cfg.task}, "n_samples": 0, "_path": str(tmp_path / "r.json")}

    def fake_sweep(cells, results, **kwargs):
        seen["sweep"] = kwargs["overrides"]
        return sw.SweepReport(list(cells))

    monkeypatch.setattr(ev, "evaluate", fake_evaluate)
    monkeypatch.setattr(sw, "sweep", fake_sweep)
    def args(k: str, v: str | None) -> tuple[str, ...]:
        return (flags[k],) if v is None else (flags[k], v)

    opts = [x for k, v in values.items() for x in args(k, v)]
    r = runner.invoke(app, ["eval", "--backbone", "b", "--task", "synth-body-2d", *opts])
    assert r.exit_code == 0, r.output
    assert seen["eval"] == EvalConfig.of(want, backbone="b", task="synth-body-2d")
    sweep_opts = [x for k, v in values.items() if k != "num_workers" for x in args(k, v)]
    r = runner.invoke(app, ["sweep", "--backbones", "b", "--tasks", "synth-body-2d", *sweep_opts])
    assert r.exit_code == 0, r.output
    assert seen["sweep"] == EvalOverrides(**{**want.__dict__, "num_workers": 0})  # sweep has no --workers
    for cmd in ("eval", "sweep"):
        help_text = runner.invoke(app, [cmd, "--help"], env={"COLUMNS": "200"}).stdout
        assert all(flag in help_text for k, flag in flags.items() if (cmd, k) != ("sweep", "num_workers")), cmd


def test_eval_frozen_feature_protocols(tmp_path, frames, tiny):
    """``--protocol knn`` end to end from the CLI; the second run reads the cache it left; a refusal is one line."""
    recs = []
    for _ in range(2):
        r = runner.invoke(app, _args(tmp_path, frames["hand"], "synth-hand-gesture", "--protocol", "knn", "--json"))
        assert r.exit_code == 0, r.output
        recs.append(json.loads(r.stdout)[0])
    assert recs[0]["protocol"] == "knn" and recs[0]["config"]["feature_cache"] == "on"
    assert recs[0]["config"]["features"] == recs[1]["config"]["features"]
    assert len(list((tmp_path / "runs" / "features").iterdir())) == 2  # train + test tokens, computed once
    r = runner.invoke(app, _args(tmp_path, frames["body"], "synth-body-2d", "--protocol", "attentive"))
    assert r.exit_code == 2 and "does not support --protocol attentive; it supports finetune, linear" in r.output
    r = runner.invoke(app, _args(tmp_path, frames["body"], "synth-body-2d", "--protocol", "linear",
                                 "--feature-cache", "off"))
    assert r.exit_code == 0, r.output
