"""``make reproduce``: the study of issue #16 on the embedded world, as ``cpcbench`` commands in resumable stages.

The study itself (frame sets, pretraining runs, grid, probes, curves, ablations and the numbers the lead sets:
``BUDGET``, ``ARCH``, ``LOW``, ``FT_STEPS``, ``ABLATION_TASKS``) is defined in ``harness.study``; this module
runs it. Every step is a ``cpcbench`` command, echoed as a user would type it.

Stages (``--stage NAME``, repeatable or a comma list; none: all, in this order; each fits one sitting of < 3 h on
2 CPU cores):

1. ``data``: render the five frame sets at 64 px (``cpcbench data synth``, ``RENDER_WORKERS`` render processes:
   they are the parallelism) into ``<runs>/data/<name>``: unlabeled pretraining sets ``body-pre``, ``hand-pre``
   (seed 100), the supervised set ``objects-pre``, and the labeled sets ``body-lab``, ``hand-lab`` (seed 11:
   other people than the pretraining ones);
2. ``pretrain-body``: body CPC, MAE, DINO and supervised (on ``objects-pre``); each run under the same FLOP
   budget (``--flops``), architecture (``--set``) and percent snapshots, into
   ``<runs>/pretrain/<domain>-<method>-vit_tiny-study``;
3. ``pretrain-hand``: hand CPC, MAE, DINO and the four body CPC ablation runs at ``ABLATION_SHARE`` of the budget
   (the main recipe, cross-view pairs only, cross-pose pairs only, uniform masking) into
   ``<runs>/ablations/body-cpc-<name>``;
4. ``finetune``: the main grid (``cpcbench sweep``: cpc, mae, dino, supervised and the random init of the same
   architecture x the main tasks x fractions ``LOW`` and 1.0 (``FT_STEPS`` steps each) x ``SEEDS_LOW`` (5) and
   ``SEEDS`` (3) seeds, on the labeled sets through ``--data-root``) and the ablations (their four backbones on
   ``ABLATION_TASKS`` at ``LOW``);
5. ``probes``: the frozen-feature probes (every main backbone x probe task x protocol x 3 seeds, on cached
   features) and the learning curves (every snapshot of the body CPC, MAE, DINO and supervised runs on
   ``CURVE_TASKS``: one FLOPs axis for every method), and the ablation runs on the correspondence probes;
6. ``tables``: ``cpcbench tables --paper``: ``leaderboards/`` from ``results/``.

The pretraining, fine-tuning and probe stages run two workers side by side, one thread each, that take the next
command from one queue (measured on this 2-core machine: two one-thread CPC/MAE runs side by side do 77 + 61 = 138
GFLOP/s, one two-thread run 108 or 83; ``--jobs 1``: one after the other, two threads each); the data stage renders
one set after another with ``RENDER_WORKERS`` processes. Each stage prints what it runs, what it skips and its
minutes. Re-running skips finished work: a frame set that is complete for the study's config
(``humans.world.is_complete``), a pretraining run whose backbone exists (a run with a checkpoint resumes, with the
same ``--flops``/``--snapshots``), sweep cells whose record exists. A run made with another budget or architecture
is refused (choose a new ``$CPCBENCH_RUNS``). A stage whose inputs are missing names the stage to run first.
Pretraining runs and frame sets go under ``$CPCBENCH_RUNS`` (default ``runs/study``), records into ``--results``
(``results/``), logs under ``<runs>/logs``. ``--dry-run`` prints (and returns) the commands that would run, skipping
what is done, and how many of a sweep stage's cells are still to run; ``--ledger`` prints the compute the finished
work measured, per stage (``harness.ledger``), and what is not done yet.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import CpcbenchError
from harness import study

STAGES = ("data", "pretrain-body", "pretrain-hand", "finetune", "probes", "tables")
#: the stages made of ``cpcbench sweep`` commands (cells, one record each)
SWEEP_STAGES = ("finetune", "probes")


class StageError(CpcbenchError):
    """A stage that cannot start (missing inputs, a finished run of another config), or an unknown stage."""


@dataclass
class Lane:
    """A named group of cpcbench commands (a domain's runs, the ablations); ``run_lanes`` deals them to workers."""

    name: str
    steps: list[list[str]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def add(self, args: list[str]) -> None:
        self.steps.append(args)

    def log(self, runs: Path, k: int) -> Path:
        """The log of the lane's ``k``-th command (one file each: two workers may run one lane's commands at once)."""
        return runs / "logs" / (f"{self.name}.log" if len(self.steps) == 1 else f"{self.name}-{k + 1}.log")

    def run_step(self, k: int, runs: Path, threads: int) -> None:
        env = {**os.environ, "CPCBENCH_RUNS": str(runs), "OMP_NUM_THREADS": str(threads),
               "MKL_NUM_THREADS": str(threads)}
        cmd, log = command(self.steps[k]), self.log(runs, k)
        log.parent.mkdir(parents=True, exist_ok=True)
        print(f"[{self.name}] $ {cmd}  (log: {log})", flush=True)
        t0 = time.time()
        with open(log, "a") as fh:
            fh.write(f"\n$ {cmd}\n")
            fh.flush()
            rc = subprocess.run([sys.executable, "-m", "harness.cli", *self.steps[k]], env=env, stdout=fh,
                                stderr=subprocess.STDOUT).returncode
        print(f"[{self.name}]   exit {rc} after {time.time() - t0:.0f} s: {cmd}", flush=True)
        if rc != 0:
            self.failed.append(cmd)


def command(args: list[str]) -> str:
    return f"cpcbench {shlex.join(args)}"


@dataclass
class Plan:
    """What one invocation does: where things go, and what was skipped (printed as it is decided)."""

    runs: Path
    results: Path
    out: Path
    workers: int = study.RENDER_WORKERS
    skipped: list[str] = field(default_factory=list)

    def skip(self, lane: str, why: str) -> None:
        print(f"[{lane}] skip: {why}", flush=True)
        self.skipped.append(why)


# ---------------------------------------------------------------------------------------------- inputs
def frames_complete(fs: study.FrameSet, runs: Path) -> bool:
    from humans.world import is_complete, make_config

    return is_complete(fs.path(runs), make_config(fs.domain, fs.frames, study.IMG_SIZE, fs.seed, **fs.world()))


def _differs(have: object, want: object) -> bool:
    if isinstance(have, int | float) and isinstance(want, int | float) and not isinstance(have, bool):
        return abs(float(have) - float(want)) > 1e-9 * max(abs(float(want)), 1.0)
    return str(have) != str(want)


def check_run_config(run: study.Pretraining, runs: Path) -> None:
    """Refuse a run directory pretrained (or begun) with another budget, architecture or ablation setting."""
    from core.config import load_yaml, parse_override

    path = run.out(runs) / "config.yaml"
    if not path.is_file():
        return
    cfg = load_yaml(path)
    want = {"flops_budget": run.budget, "img_size": study.IMG_SIZE, "method": run.method}
    want |= {".".join(k): v for k, v in map(parse_override, run.settings())}
    for key, value in want.items():
        have: object = cfg
        for part in key.split("."):
            have = have.get(part) if isinstance(have, dict) else None
        if _differs(have, value):
            raise StageError(f"{run.out(runs)} was pretrained with {key}={have}, the study asks for {key}={value}: "
                             "set CPCBENCH_RUNS to a new directory (or move that run away)")


def requirements(stage: str, runs: Path) -> list[tuple[str, Callable[[], bool], str]]:
    """The inputs of ``stage``: (what, is it there, the stage that makes it)."""
    def frames(name: str) -> tuple[str, Callable[[], bool], str]:
        fs = study.frame_set(name)
        return f"the frame set {fs.path(runs)}", lambda: frames_complete(fs, runs), "data"

    def backbones(group: str, stage: str) -> list[tuple[str, Callable[[], bool], str]]:
        return [(str(p.backbone(runs)), p.backbone(runs).is_file, stage) for p in study.PRETRAININGS[group]]

    labeled = [frames(study.labeled_set(d).name) for d in study.MAIN_TASKS]
    if stage == "pretrain-body":
        return [frames(n) for n in dict.fromkeys(p.frames for p in study.PRETRAININGS["body"])]
    if stage == "pretrain-hand":
        groups = study.PRETRAININGS["hand"] + study.PRETRAININGS["ablations"]
        return [frames(n) for n in dict.fromkeys(p.frames for p in groups)]
    if stage == "finetune":
        return (labeled + backbones("body", "pretrain-body") + backbones("hand", "pretrain-hand")
                + backbones("ablations", "pretrain-hand"))
    if stage == "probes":
        probed = [frames(n) for n in dict.fromkeys(study.PROBE_FRAMES.values())]
        return (labeled + probed + backbones("body", "pretrain-body") + backbones("hand", "pretrain-hand")
                + backbones("ablations", "pretrain-hand"))
    return []


# ---------------------------------------------------------------------------------------------- the stages
def data_lanes(plan: Plan) -> list[Lane]:
    lane = Lane("data")
    for fs in study.FRAME_SETS:
        if frames_complete(fs, plan.runs):
            plan.skip(lane.name, f"{fs.path(plan.runs)} is complete")
            continue
        args = ["data", "synth", fs.domain, "--frames", str(fs.frames), "--seed", str(fs.seed), "--size",
                str(study.IMG_SIZE)]
        for flag, value in (("--cameras", fs.cameras), ("--seq-len", fs.seq_len),
                            ("--motions-per-subject", fs.motions_per_subject), ("--view", fs.view)):
            if value is not None:
                args += [flag, str(value)]
        lane.add([*args, "--workers", str(plan.workers), "--out", str(fs.path(plan.runs))])
    return [lane]


def pretrain(lane: Lane, run: study.Pretraining, plan: Plan) -> None:
    """One pretraining run: skipped when its backbone exists, resumed when it has a checkpoint."""
    out = run.out(plan.runs)
    check_run_config(run, plan.runs)
    if run.backbone(plan.runs).is_file():
        plan.skip(lane.name, f"{out} has its backbone")
        return
    budget = f"{run.budget:g}".replace("e+", "e")  # 2e14
    args = ["pretrain", run.domain, "--method", run.method, "--img-size", str(study.IMG_SIZE), "--data",
            str(study.frame_set(run.frames).path(plan.runs)), "--flops", budget, "--snapshots", study.SNAPSHOTS,
            "--compile", "--out", str(out)]
    for setting in (*run.settings(), f"loop.ckpt_every={study.CHECKPOINT_EVERY}"):
        args += ["--set", setting]
    if (out / "checkpoints" / "latest.json").is_file():  # --resume needs a checkpoint to continue
        args.append("--resume")
    lane.add(args)


def split_lanes(plan: Plan, groups: dict[str, tuple[study.Pretraining, ...]]) -> list[Lane]:
    lanes = []
    for name, runs in groups.items():
        lane = Lane(name)
        for run in runs:
            pretrain(lane, run, plan)
        lanes.append(lane)
    return lanes


def pretrain_body_lanes(plan: Plan) -> list[Lane]:
    body = study.PRETRAININGS["body"]
    half = (len(body) + 1) // 2
    return split_lanes(plan, {"body-1": body[:half], "body-2": body[half:]})


def pretrain_hand_lanes(plan: Plan) -> list[Lane]:
    return split_lanes(plan, {"hand": study.PRETRAININGS["hand"], "ablations": study.PRETRAININGS["ablations"]})


def sweep_args(backbones: list[str], tasks: list[str], domain: str, plan: Plan, *extra: str,
               frames: study.FrameSet | None = None, seeds: int = study.SEEDS) -> list[str]:
    """A ``cpcbench sweep`` on ``frames`` (default: the domain's labeled set)."""
    return ["sweep", "--backbones", ",".join(backbones), "--tasks", ",".join(tasks), *extra, "--seeds",
            str(seeds), "--img-size", str(study.IMG_SIZE), "--data-root",
            str((frames or study.labeled_set(domain)).path(plan.runs)), "--results", str(plan.results)]


def finetune_lanes(plan: Plan) -> list[Lane]:
    """One lane per domain's main grid and one for the ablations. A sweep per backbone and fraction (each fraction
    has its own steps): the workers' queue deals out commands, so one sweep of every backbone would keep a worker
    busy for an hour while the other idles."""
    lanes = {d: Lane(d) for d in study.MAIN_TASKS}
    for domain, tasks in study.MAIN_TASKS.items():
        for fraction, steps in study.schedule():
            for backbone in study.main_backbones():
                lanes[domain].add(sweep_args([backbone], list(tasks), domain, plan, "--fraction",
                                             str(float(fraction)), "--steps", str(steps),
                                             seeds=study.seeds(fraction)))
    ablations = Lane("ablations")
    backbones = [str(p.backbone(plan.runs)) for p in study.PRETRAININGS["ablations"]]
    for fraction, steps in study.ablation_schedule():
        for task in study.ABLATION_TASKS:
            ablations.add(sweep_args(backbones, [task], "body", plan, "--fraction", str(float(fraction)), "--steps",
                                     str(steps), seeds=study.seeds(fraction)))
    return [*lanes.values(), ablations]


def probe_lanes(plan: Plan) -> list[Lane]:
    """Probes per domain (one sweep per task and protocol: features cached once); the learning curves (every
    snapshot of the body runs) go to the hand lane, which has fewer probes."""
    lanes = {d: Lane(d) for d in study.PROBES}
    for domain, probes in study.PROBES.items():
        for task, protocols in probes.items():
            for protocol in protocols:
                lanes[domain].add(sweep_args(list(study.main_backbones()), [task], domain, plan, "--protocol",
                                             protocol, frames=study.probe_set(task, domain)))
    curves = [f"snapshots:{p.out(plan.runs)}" for p in study.curve_runs()]
    for task, protocol in study.CURVE_TASKS.items():
        lanes["hand"].add(sweep_args(curves, [task], "body", plan, "--protocol", protocol,
                                     frames=study.probe_set(task, "body")))
    ablations = [str(p.backbone(plan.runs)) for p in study.PRETRAININGS["ablations"]]
    for task, protocol in study.ABLATION_PROBES.items():
        lanes["hand"].add(sweep_args(ablations, [task], "body", plan, "--protocol", protocol,
                                     frames=study.probe_set(task, "body")))
    return list(lanes.values())


def sweep_cells(args: list[str], runs: Path) -> tuple[int, int]:
    """(cells, cells still to run) of one of the study's ``cpcbench sweep`` commands: that command's own dry run,
    in this process (so a cell counts as done exactly when the sweep would skip it; the cells of a backbone not
    pretrained yet count as to run). A sweep that cannot be planned yet (e.g. ``snapshots:`` of a run not made):
    ``CpcbenchError`` with the sweep's message."""
    import contextlib
    import io
    import json
    import logging

    import typer

    from harness.cli import app

    out, err, env = io.StringIO(), io.StringIO(), os.environ.get("CPCBENCH_RUNS")
    quiet = logging.getLogger("cpcbench.sweep")
    os.environ["CPCBENCH_RUNS"], level = str(runs), quiet.level
    quiet.setLevel(logging.WARNING)  # the sweep's own "N cells, M done" line, once per command: the caller sums them
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = typer.main.get_command(app).main([*args, "--dry-run", "--json"], prog_name="cpcbench",
                                                  standalone_mode=False)
    finally:
        quiet.setLevel(level)
        if env is None:
            os.environ.pop("CPCBENCH_RUNS", None)
        else:
            os.environ["CPCBENCH_RUNS"] = env
    if rc or not out.getvalue().strip():
        raise CpcbenchError(" ".join(err.getvalue().split()) or f"{command(args)} could not be planned")
    got = json.loads(out.getvalue())
    return int(got["cells"]), int(got["pending"]) + int(got["unresolved"])


def stage_cells(stage: str, plan: Plan) -> tuple[int, int, int]:
    """(cells, cells still to run, sweeps that cannot be planned yet: their inputs are missing) of a sweep stage
    (``finetune``, ``probes``)."""
    cells = todo = unplanned = 0
    for lane in BUILD[stage](plan):
        for args in lane.steps:
            try:
                c, t = sweep_cells(args, plan.runs)
            except CpcbenchError:
                unplanned += 1
                continue
            cells, todo = cells + c, todo + t
    return cells, todo, unplanned


def table_lanes(plan: Plan) -> list[Lane]:
    lane = Lane("tables")
    lane.add(["tables", "--paper", "--results", str(plan.results), "--out", str(plan.out)])
    return [lane]


BUILD: dict[str, Callable[[Plan], list[Lane]]] = {
    "data": data_lanes, "pretrain-body": pretrain_body_lanes, "pretrain-hand": pretrain_hand_lanes,
    "finetune": finetune_lanes, "probes": probe_lanes, "tables": table_lanes}


# ---------------------------------------------------------------------------------------------- the runner
def parse_stages(given: list[str] | None) -> list[str]:
    """``--stage`` values (repeatable, comma lists) -> stages in the study's order; none -> all."""
    names = [s.strip() for g in given or [] for s in g.split(",") if s.strip()]
    unknown = [s for s in names if s not in STAGES]
    if unknown:
        raise StageError(f"unknown stage {unknown[0]!r}; choose from {', '.join(STAGES)}")
    return [s for s in STAGES if s in names] if names else list(STAGES)


def check_inputs(stage: str, plan: Plan, made: set[str]) -> None:
    """One line naming the stage to run first when an input of ``stage`` is missing (inputs that a stage of
    ``made``, planned earlier in a dry run, would make count as there)."""
    for what, there, producer in requirements(stage, plan.runs):
        if producer not in made and not there():
            raise StageError(f"stage {stage} needs {what}: run `python -m harness.reproduce --stage {producer}` "
                             "first")


def run_lanes(lanes: list[Lane], runs: Path, jobs: int) -> None:
    """Run every lane's commands: ``jobs`` workers of one thread each take the next command from one queue (the
    lanes' commands in turn, so every lane advances and no worker idles while work is left); ``jobs`` 1, or a stage
    of one lane: one after the other, two threads each."""
    depth = max((len(lane.steps) for lane in lanes), default=0)
    queue = [(lane, k) for k in range(depth) for lane in lanes if k < len(lane.steps)]
    workers = min(jobs, len(queue)) if len(lanes) > 1 else 1  # a stage of one lane (data) is sequential
    if workers <= 1:
        for lane, k in queue:
            lane.run_step(k, runs, 2)
        return
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                if not queue:
                    return
                lane, k = queue.pop(0)
            lane.run_step(k, runs, 1)

    ts = [threading.Thread(target=work) for _ in range(workers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def main(argv: list[str] | None = None) -> list[str]:
    """Run (or with ``--dry-run`` list) the chosen stages; returns the commands run (or to run) in order."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stage", action="append", help=f"stage(s) to run, repeatable or a comma list: "
                                                     f"{', '.join(STAGES)} [all, in order]")
    ap.add_argument("--jobs", type=int, default=2, help="lanes run side by side (2: two lanes of one thread)")
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--out", type=Path, default=Path("leaderboards"))
    ap.add_argument("--dry-run", action="store_true", help="print the commands that would run, run nothing")
    ap.add_argument("--ledger", action="store_true",
                    help="print the compute the study's runs and records measured, per stage, and run nothing")
    a = ap.parse_args(argv)
    stages = parse_stages(a.stage)
    plan = Plan(Path(os.environ.get("CPCBENCH_RUNS", "runs/study")), a.results, a.out)
    if a.ledger:
        from harness.ledger import report

        print(report(plan.runs, plan.results, a.jobs, {s: stage_cells(s, plan) for s in SWEEP_STAGES}), flush=True)
        return []
    commands: list[str] = []
    made: set[str] = set()
    for stage in stages:
        t0 = time.time()
        check_inputs(stage, plan, made)
        print(f"== stage {stage}", flush=True)
        skipped = len(plan.skipped)
        lanes = BUILD[stage](plan)
        cmds = [command(s) for lane in lanes for s in lane.steps]
        commands += cmds
        if a.dry_run:
            for lane in lanes:
                for s in lane.steps:
                    print(f"[{lane.name}] $ {command(s)}", flush=True)
            what = f"{len(cmds)} to run"
            if stage in SWEEP_STAGES:
                total, todo, unplanned = stage_cells(stage, plan)
                what = f"{len(cmds)} sweeps, {todo} of their {total} cells to run (a sweep skips its finished cells" + (
                    f"; {unplanned} sweep(s) planned once the stages before have run" if unplanned else "") + ")"
            print(f"== stage {stage}: {what}, {len(plan.skipped) - skipped} skipped (dry run)", flush=True)
            made.add(stage)
            continue
        run_lanes(lanes, plan.runs, a.jobs)
        failed = [c for lane in lanes for c in lane.failed]
        print(f"== stage {stage}: ran {len(cmds)}, skipped {len(plan.skipped) - skipped}, failed {len(failed)}, "
              f"{(time.time() - t0) / 60:.1f} min (logs under {plan.runs / 'logs'})", flush=True)
        if failed:
            raise StageError(f"stage {stage}: {len(failed)} command(s) failed (re-run the stage to retry only what "
                             "is missing): " + " | ".join(failed))
    return commands


def cli(argv: list[str] | None = None) -> None:
    try:
        main(argv)
    except CpcbenchError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    cli()
