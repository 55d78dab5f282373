"""How long the study's compute took, stage by stage, read back from what its runs left behind.

``python -m harness.reproduce --ledger`` prints it. The study runs in resumable stages across sittings, often with
other work on the cores, so a stage's wall clock says little; the work's own measurements do:

- a pretraining run: the time of its steps (``log.jsonl`` logs images per second every few steps: steps x batch /
  rate; after a resume the re-done steps count once) plus its compile time (``backbone.json``); a run still going
  counts what it has logged;
- a fine-tuning or probe cell: the ``wall_time_s`` of its record (training, scoring, feature extraction); the
  study's cells without a record yet are listed as missing;
- a frame set: the wall time of each ``data synth`` call that rendered into it (``render.json`` beside the frames,
  ``humans.world.log_render``), once per worker process it ran (each kept one core busy); frame sets rendered
  before the log existed are listed as missing.

Each item's time was measured by a one-thread process; ``two lanes`` packs a stage's items onto ``workers``
one-thread workers, longest first (what ``run_lanes``' queue does at best), the stage's wall time on an otherwise
idle machine where the items were measured so. Items measured while more processes than cores ran are slower than
that, so the ledger is an upper bound of an uncontended run.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from core.errors import CpcbenchError
from harness import study
from harness.results import load_records


@dataclass
class StageTime:
    """One stage's measured items (name, seconds) and what is missing from it."""

    stage: str
    items: list[tuple[str, float]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(s for _, s in self.items)

    def lanes(self, workers: int) -> float:
        return packed(self.items, workers)


def packed(items: Sequence[tuple[str, float]], workers: int) -> float:
    """Makespan of ``items`` on ``workers`` lanes, longest first onto the least loaded lane."""
    if workers < 1:
        raise CpcbenchError(f"workers must be >= 1, got {workers}")
    loads = [0.0] * workers
    for _, s in sorted(items, key=lambda it: -it[1]):
        heapq.heapreplace(loads, loads[0] + s)
    return max(loads)


def pretrain_seconds(out: Path) -> tuple[float, int] | None:
    """(seconds, last step) of the pretraining run in ``out`` from its log, or None when it has not logged."""
    log = out / "log.jsonl"
    if not log.is_file():
        return None
    cfg = yaml.safe_load((out / "config.yaml").read_text()) or {}
    batch = int((cfg.get("loop") or {}).get("batch_size", 0))
    if batch <= 0:
        raise CpcbenchError(f"{out / 'config.yaml'} has no loop.batch_size: not a cpcbench pretraining run")
    rate: dict[int, float] = {}
    for line in log.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            if row.get("img_per_s"):
                rate[int(row["step"])] = float(row["img_per_s"])  # a resumed run re-logs steps: the last one counts
    seconds, prev = 0.0, 0
    for step in sorted(rate):
        seconds += (step - prev) * batch / rate[step]
        prev = step
    meta = out / "backbone.json"
    if meta.is_file():
        seconds += float((json.loads(meta.read_text()).get("compile") or {}).get("seconds", 0.0))
    return seconds, prev


def record_stage(rec: dict) -> str:
    return "finetune" if rec.get("protocol") == "finetune" else "probes"


def data_stage(runs: Path) -> StageTime:
    """The data stage: every frame set's renderings, one item per worker process of each."""
    from humans.world import render_log

    st = StageTime("data")
    for fs in study.FRAME_SETS:
        log = render_log(fs.path(runs))
        if log is None:
            st.missing.append(f"{fs.name} (no render.json)")
            continue
        for r in log:
            st.items += [(fs.name, float(r["seconds"]))] * max(1, int(r.get("workers", 1)))
    return st


def ledger(runs: Path, records: Iterable[dict]) -> list[StageTime]:
    """The measured time of every study stage: frame sets and pretraining runs under ``runs``, cells from
    ``records``."""
    stages = {"data": data_stage(runs)}
    stages.update({name: StageTime(name) for name in ("pretrain-body", "pretrain-hand", "finetune", "probes")})
    groups = {"pretrain-body": study.PRETRAININGS["body"],
              "pretrain-hand": (*study.PRETRAININGS["hand"], *study.PRETRAININGS["ablations"])}
    for stage, runs_of in groups.items():
        for p in runs_of:
            got = pretrain_seconds(p.out(runs))
            name = p.out(runs).name
            if got is None:
                stages[stage].missing.append(name)
                continue
            stages[stage].items.append((name, got[0]))
            if not p.backbone(runs).is_file():
                stages[stage].missing.append(f"{name} (unfinished at step {got[1]})")
    for rec in records:
        if rec.get("smoke"):  # a --limit run (records keep smoke and limit in step)
            continue
        name = f"{rec['task']['name']}/{rec['backbone']['name']}/{rec['protocol']}/{rec.get('fraction')}"
        stages[record_stage(rec)].items.append((name, float(rec["wall_time_s"])))
    return list(stages.values())


def report(runs: Path, results: Path, workers: int = 2, cells: Mapping[str, tuple[int, int, int]] | None = None) -> str:
    """The ledger as text: per stage the items, one-lane and ``workers``-lane hours, and the total. ``cells``: per
    sweep stage (cells, cells without a record yet, sweeps that cannot be planned yet), listed as missing
    (``harness.reproduce.stage_cells``)."""
    rows = ledger(runs, load_records(results))
    for st in rows:
        total, todo, unplanned = (cells or {}).get(st.stage, (0, 0, 0))
        if todo:
            st.missing.append(f"{todo} of {total} cells not run yet")
        if unplanned:
            st.missing.append(f"the cells of {unplanned} sweep(s) whose inputs are not made yet")
    lines = [f"{'stage':<14} {'items':>5} {'1 lane h':>9} {f'{workers} lanes h':>10}  missing"]
    for st in rows:
        lines.append(f"{st.stage:<14} {len(st.items):>5} {st.seconds / 3600:>9.2f} {st.lanes(workers) / 3600:>10.2f}"
                     f"  {', '.join(st.missing) or '-'}")
    total = sum(st.lanes(workers) for st in rows)
    incomplete = any(st.missing for st in rows)
    lines.append(f"{'total':<14} {sum(len(st.items) for st in rows):>5} {sum(st.seconds for st in rows) / 3600:>9.2f} "
                 f"{total / 3600:>10.2f}  " + ("(incomplete: the missing items above are not counted)"
                                              if incomplete else "-"))
    return "\n".join(lines)
