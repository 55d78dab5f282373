"""The study's compute ledger (``python -m harness.reproduce --ledger``): pretraining time read back from the runs'
logs, cell time from the records, stages packed onto the workers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import CpcbenchError
from harness import ledger, reproduce, study


def fake_run(out: Path, rates: list[tuple[int, float]], batch: int = 64, compile_s: float | None = None) -> None:
    out.mkdir(parents=True)
    (out / "config.yaml").write_text(f"loop:\n  batch_size: {batch}\n")
    (out / "log.jsonl").write_text("".join(json.dumps({"step": s, "img_per_s": r, "loss": 1.0}) + "\n"
                                           for s, r in rates))
    if compile_s is not None:
        (out / "backbone.json").write_text(json.dumps({"compile": {"seconds": compile_s}}))
        (out / "backbone.safetensors").touch()


def test_pretraining_time_from_the_log_counts_resumed_steps_once(tmp_path: Path) -> None:
    # 10 steps x 64 at 64 img/s = 10 s, then 10 more at 32 img/s = 20 s; a resume re-logs step 20 (faster): the last
    # logged rate of a step is the one its steps ran at
    fake_run(tmp_path / "r", [(10, 64.0), (20, 16.0), (20, 32.0)], compile_s=5.0)
    seconds, step = ledger.pretrain_seconds(tmp_path / "r")
    assert step == 20
    assert seconds == pytest.approx(10 + 20 + 5)
    assert ledger.pretrain_seconds(tmp_path / "none") is None


def test_a_run_without_a_batch_size_is_refused(tmp_path: Path) -> None:
    fake_run(tmp_path / "r", [(10, 64.0)], batch=0)
    with pytest.raises(CpcbenchError, match="batch_size"):
        ledger.pretrain_seconds(tmp_path / "r")


def test_packing_puts_the_longest_items_first() -> None:
    items = [("a", 5.0), ("b", 4.0), ("c", 3.0), ("d", 3.0), ("e", 3.0)]
    assert ledger.packed(items, 1) == 18.0
    assert ledger.packed(items, 2) == 10.0  # {5, 3} {4, 3, 3}: LPT, not the 9 of the best split; an upper bound
    assert ledger.packed([], 2) == 0.0
    with pytest.raises(CpcbenchError):
        ledger.packed(items, 0)


def test_stages_gather_their_runs_and_cells(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    body = study.PRETRAININGS["body"]
    fake_run(body[0].out(runs), [(100, 64.0)], compile_s=1.0)  # finished: 100 s + 1
    fake_run(body[1].out(runs), [(50, 64.0)])  # still going at step 50
    records = [
        {"task": {"name": "synth-body-2d"}, "backbone": {"name": "cpc"}, "protocol": "finetune", "fraction": 0.05,
         "wall_time_s": 60.0},
        {"task": {"name": "probe-body-facing"}, "backbone": {"name": "cpc"}, "protocol": "linear", "fraction": 1.0,
         "wall_time_s": 7.0},
        {"task": {"name": "synth-body-2d"}, "backbone": {"name": "cpc"}, "protocol": "finetune", "fraction": 1.0,
         "wall_time_s": 9.0, "smoke": True},  # a smoke run is no part of the study
    ]
    by = {st.stage: st for st in ledger.ledger(runs, records)}
    assert [n for n, _ in by["pretrain-body"].items] == [body[0].out(runs).name, body[1].out(runs).name]
    assert by["pretrain-body"].seconds == pytest.approx(101 + 50)
    assert by["pretrain-body"].missing == [f"{body[1].out(runs).name} (unfinished at step 50)",
                                           *(p.out(runs).name for p in body[2:])]
    assert by["finetune"].seconds == 60.0 and by["probes"].seconds == 7.0
    assert len(by["pretrain-hand"].missing) == len(study.PRETRAININGS["hand"]) + len(study.PRETRAININGS["ablations"])


def test_the_ledger_flag_runs_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CPCBENCH_RUNS", str(tmp_path / "runs"))
    (tmp_path / "results").mkdir()
    assert reproduce.main(["--ledger", "--results", str(tmp_path / "results")]) == []
    out = capsys.readouterr().out
    assert "pretrain-body" in out and "total" in out and "incomplete: the missing items" in out
    assert "body-pre (no render.json)" in out
    tasks = sum(len(t) for t in study.MAIN_TASKS.values())
    cells = len(study.main_backbones()) * tasks * sum(study.seeds(f) for f in study.fractions()) + len(
        study.PRETRAININGS["ablations"]) * len(study.ABLATION_TASKS) * study.seeds(study.LOW)
    assert f"finetune           0      0.00       0.00  {cells} of {cells} cells not run yet" in out
    assert "sweep(s) whose inputs are not made yet" in out  # the learning curves: snapshots of runs not made
    assert not (tmp_path / "runs").exists()


def test_rendering_is_timed_beside_the_frames(tmp_path: Path) -> None:
    """``data synth`` logs each rendering's wall time and workers beside the frames (``render.json``, no part of the
    frames' meta); the data stage counts it once per worker (each kept a core busy); a complete set renders nothing
    and logs nothing."""
    from humans.world import RENDER_LOG, generate, render_log

    runs = tmp_path / "runs"
    fs = study.FRAME_SETS[2]  # objects-pre: the cheapest domain to render
    root = generate(fs.domain, 8, size=32, seed=fs.seed, out=fs.path(runs), workers=1, cameras=1, seq_len=2)
    (first,) = render_log(root)
    assert first["workers"] == 1 and first["sequences"] == 4 and first["seconds"] > 0
    generate(fs.domain, 8, size=32, seed=fs.seed, out=root, workers=1, cameras=1, seq_len=2)
    assert render_log(root) == [first]
    assert RENDER_LOG not in (root / "meta.json").read_text()
    json.dump({"runs": [first, {**first, "workers": 2}]}, (root / RENDER_LOG).open("w"))
    st = ledger.data_stage(runs)
    assert st.items == [(fs.name, first["seconds"])] * 3 and st.lanes(2) == pytest.approx(2 * first["seconds"])
    assert [m.split()[0] for m in st.missing] == [f.name for f in study.FRAME_SETS if f is not fs]
    (root / RENDER_LOG).write_text("{not json")
    assert render_log(root) is None
