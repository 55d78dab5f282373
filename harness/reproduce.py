"""``make reproduce``: the committed CPU-scale reproduction of the paper's comparisons on the embedded world.

What it runs (every step a ``cpcbench`` command, echoed as a user would type it; scale in ``SCALE``):

1. pretraining, ViT-Tiny/16 at 64 px on the synthetic frame sets: CPC (cross-view + cross-pose, human-aware
   masking), MAE and DINO per domain (body, hand), supervised once on synth-objects; for the ablations three
   more body CPC runs (cross-view only, cross-pose only, uniform masking);
2. the main grid (``cpcbench sweep``): cpc, mae, dino, supervised, scratch x the ``TASKS`` x 3 seeds, each
   fine-tuned for ``finetune_steps`` (half the tasks' default schedule, to fit 2 CPU cores);
3. the ablations (fine-tuned on ``ABLATION_TASK``) and the data-efficiency fractions (``FRACTIONS``);
4. the frozen-feature probes (``PROBES``: every grid backbone x probe task x protocol x 3 seeds, on cached
   features) and the learning curve: the body CPC run keeps ``CURVE_SNAPSHOTS``, each probed on ``CURVE_TASKS``
   (``--only probes`` runs just the pretraining and this step);
5. ``cpcbench tables --paper``: ``leaderboards/`` from ``results/``.

Two lanes (body, hand) run side by side, one thread each (``--jobs 1`` runs them one after the other). Every
step is resumable: a pretraining run whose backbone exists is skipped, and the sweeps skip cells whose record
exists, so an interrupted reproduction is re-run, not restarted. Pretraining runs go under
``$CPCBENCH_RUNS`` (default ``runs/repro``), records into ``results/``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

SCALE = {"img_size": 64, "pretrain_steps": 400, "finetune_steps": 150, "seeds": 3}
TASKS = {"body": ["synth-body-mesh", "synth-body-2d"], "hand": ["synth-hand-mesh", "synth-hand-gesture"]}
BACKBONES = "cpc,mae,dino,supervised,scratch"
FRACTIONS = ("synth-hand-mesh", "cpc,mae,scratch", "0.1,0.5")  # task, backbones, fractions (1.0: the main grid)
#: body CPC ablations: name -> config overrides (the main `cpc` run is "both pairs, human-aware masking")
ABLATIONS = {"crossview": ["data.pair_mix=1.0"], "crosspose": ["data.pair_mix=0.0"],
             "uniform": ["cpc.mask_strategy=uniform"]}
ABLATION_TASK = "synth-body-2d"
#: frozen-feature probes (issue 15): task -> protocols, per domain; every backbone of the grid, 3 seeds
PROBES = {"body": {"probe-body-facing": ("linear", "attentive", "knn"), "probe-body-depth": ("linear",),
                   "probe-body-xview": ("match",), "probe-body-xpose": ("match",)},
          "hand": {"probe-hand-orient": ("linear", "attentive"), "probe-hand-artic": ("linear", "attentive")}}
#: the learning curve: the body CPC run keeps these snapshots (plus its final step), each probed on CURVE_TASKS
CURVE_SNAPSHOTS = "0,25,50,100,200,300"
CURVE_TASKS = {"probe-body-facing": "linear", "probe-body-depth": "linear", "probe-body-xview": "match"}


class Lane:
    """A sequence of cpcbench commands run one after another (one thread, one CPU core)."""

    def __init__(self, name: str, runs: Path, threads: int, dry_run: bool = False) -> None:
        self.name, self.runs, self.threads, self.dry_run = name, runs, threads, dry_run
        self.failed: list[str] = []
        self.commands: list[str] = []

    def run(self, args: list[str]) -> bool:
        cmd = f"cpcbench {shlex.join(args)}"
        print(f"[{self.name}] $ {cmd}", flush=True)
        self.commands.append(cmd)
        if self.dry_run:
            return True
        t0 = time.time()
        env = {**os.environ, "CPCBENCH_RUNS": str(self.runs), "OMP_NUM_THREADS": str(self.threads),
               "MKL_NUM_THREADS": str(self.threads)}
        log = self.runs / "logs" / f"{self.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as fh:
            fh.write(f"\n$ {cmd}\n")
            fh.flush()
            rc = subprocess.run([sys.executable, "-m", "harness.cli", *args], env=env, stdout=fh,
                                stderr=subprocess.STDOUT).returncode
        print(f"[{self.name}]   exit {rc} after {time.time() - t0:.0f} s", flush=True)
        if rc != 0:
            self.failed.append(cmd)
        return rc == 0

    def pretrain(self, domain: str, method: str, out: Path, overrides: list[str] = (), extra: list[str] = ()) -> None:
        if (out / "backbone.safetensors").is_file():
            print(f"[{self.name}] skip: {out} has its backbone", flush=True)
            return
        args = ["pretrain", domain, "--method", method, "--img-size", str(SCALE["img_size"]),
                "--steps", str(SCALE["pretrain_steps"]), "--out", str(out), *extra]
        for o in overrides:
            args += ["--set", o]
        if (out / "checkpoints" / "latest.json").is_file():  # --resume needs a checkpoint to continue
            args.append("--resume")
        self.run(args)

    def sweep(self, backbones: str, tasks: list[str], results: Path, fractions: str = "1.0") -> None:
        self.run(["sweep", "--backbones", backbones, "--tasks", ",".join(tasks), "--seeds", str(SCALE["seeds"]),
                  "--fraction", fractions, "--img-size", str(SCALE["img_size"]),
                  "--steps", str(SCALE["finetune_steps"]), "--results", str(results)])


    def probes(self, backbones: str, domain: str, results: Path,
               tasks: dict[str, tuple[str, ...]] | None = None) -> None:
        """The frozen-feature probes of ``domain`` (``PROBES``), one sweep per protocol (features cached once)."""
        for task, protocols in (tasks or PROBES[domain]).items():
            for protocol in protocols:
                self.run(["sweep", "--backbones", backbones, "--tasks", task, "--protocol", protocol,
                          "--seeds", str(SCALE["seeds"]), "--img-size", str(SCALE["img_size"]),
                          "--results", str(results)])


def pretrain_domain(lane: Lane, domain: str) -> None:
    """The domain's pretraining runs (body: + supervised on synth-objects; the body CPC run keeps snapshots)."""
    pre = lane.runs / "pretrain"
    for method in ("cpc", "mae", "dino") + (("supervised",) if domain == "body" else ()):
        extra = ["--snapshots", CURVE_SNAPSHOTS] if (domain, method) == ("body", "cpc") else []
        lane.pretrain(domain, method, pre / f"{domain}-{method}-vit_tiny-repro", extra=extra)
    while domain == "hand" and not lane.dry_run and not any(pre.glob("*-supervised-*/backbone.safetensors")):
        time.sleep(10)  # made by the body lane (synth-objects serve every domain)


def probe_lane(lane: Lane, domain: str, results: Path) -> None:
    """Probes of every grid backbone; for body also the learning curve over the CPC run's snapshots."""
    lane.probes(BACKBONES, domain, results)
    if domain == "body":
        run = lane.runs / "pretrain" / "body-cpc-vit_tiny-repro"
        lane.probes(f"snapshots:{run},scratch", domain, results, {t: (p,) for t, p in CURVE_TASKS.items()})


def ablation_backbones(runs: Path) -> list[Path]:
    return [runs / "ablations" / f"body-cpc-{name}" for name in ABLATIONS]


def body_lane(lane: Lane, results: Path) -> None:
    """Body pretraining (+ supervised on synth-objects), the body grid, then the ablations' fine-tuning."""
    pretrain_domain(lane, "body")
    lane.sweep(BACKBONES, TASKS["body"], results)
    probe_lane(lane, "body", results)
    outs = ablation_backbones(lane.runs)
    while not lane.dry_run and not all((o / "backbone.safetensors").is_file() for o in outs):
        time.sleep(10)  # pretrained by the hand lane, which has less to do
    lane.sweep(",".join(str(o / "backbone.safetensors") for o in outs), [ABLATION_TASK], results)


def hand_lane(lane: Lane, results: Path) -> None:
    """Hand pretraining, the body ablations' pretraining, the hand grid, then the data-efficiency fractions."""
    for method in ("cpc", "mae", "dino"):
        lane.pretrain("hand", method, lane.runs / "pretrain" / f"hand-{method}-vit_tiny-repro")
    for overrides, out in zip(ABLATIONS.values(), ablation_backbones(lane.runs), strict=True):
        lane.pretrain("body", "cpc", out, overrides)
    pretrain_domain(lane, "hand")  # waits for the body lane's supervised run
    lane.sweep(BACKBONES, TASKS["hand"], results)
    probe_lane(lane, "hand", results)
    task, backbones, fractions = FRACTIONS
    lane.sweep(backbones, [task], results, fractions=fractions)


def main(argv: list[str] | None = None) -> list[str]:
    """Run (or with ``--dry-run`` list) the reproduction; returns the commands in order."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=2, help="lanes run side by side (2: body and hand at once)")
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--out", type=Path, default=Path("leaderboards"))
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    ap.add_argument("--only", choices=("all", "probes"), default="all",
                    help="probes: pretraining + the frozen-feature probes and the learning curve only")
    a = ap.parse_args(argv)
    runs = Path(os.environ.get("CPCBENCH_RUNS", "runs/repro"))
    t0 = time.time()
    threads = 1 if a.jobs > 1 else 2
    lanes = [(body_lane, Lane("body", runs, threads, a.dry_run)), (hand_lane, Lane("hand", runs, threads, a.dry_run))]
    if a.only == "probes":
        def only_probes(domain: str) -> Any:
            return lambda lane, results: (pretrain_domain(lane, domain), probe_lane(lane, domain, results))
        lanes = [(only_probes(lane.name), lane) for _, lane in lanes]
    if a.jobs > 1 and not a.dry_run:
        ts = [threading.Thread(target=fn, args=(lane, a.results)) for fn, lane in lanes]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    else:
        for fn, lane in lanes:
            fn(lane, a.results)
    final = Lane("tables", runs, 2, a.dry_run)
    final.run(["tables", "--paper", "--results", str(a.results), "--out", str(a.out)])
    if a.dry_run:
        return [c for _, lane in lanes for c in lane.commands] + final.commands
    failed = [c for _, lane in lanes for c in lane.failed] + final.failed
    print(f"\nreproduction finished in {(time.time() - t0) / 60:.1f} min; logs under {runs / 'logs'}")
    if failed:
        sys.exit("failed steps (re-run `make reproduce` to retry only what is missing):\n  " + "\n  ".join(failed))
    return [c for _, lane in lanes for c in lane.commands] + final.commands


if __name__ == "__main__":
    main()
