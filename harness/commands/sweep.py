"""``cpcbench sweep``: run the backbone x task x fraction x seed grid of evaluations, skipping finished cells."""

from __future__ import annotations

from pathlib import Path

import typer

from harness.cli_util import emit_json, print_table, user_errors
from harness.eval_options import EvalOverrides, cli_options


def register(app: typer.Typer) -> None:
    @app.command("sweep", epilog="Examples:  cpcbench sweep --backbones cpc,mae,dino,supervised,scratch --tasks body "
                                 "--seeds 3  |  cpcbench sweep --backbones cpc,mae --tasks synth-hand-mesh --seeds 3 "
                                 "--fraction 1.0,0.5,0.1 --dry-run  |  cpcbench sweep ... --launcher slurm "
                                 "--recipe slurm.yaml")
    @user_errors
    @cli_options(exclude=("num_workers",))
    def sweep_cmd(
        backbones: str = typer.Option(..., "--backbones", "-b", help="Comma list of backbone specs (cpc, mae, dino, "
                                                                      "supervised, scratch[,patch=16,stem=conv], "
                                                                      "timm:NAME.TAG, cnn:NAME (a random-init "
                                                                      "reference CNN), a file; "
                                                                      "snapshots:RUN_DIR = every snapshot of a "
                                                                      "pretraining run + its final backbone)."),
        tasks: str = typer.Option(..., "--tasks", "-t", help="body | hand (the synthetic tasks) | task list."),
        seeds: int = typer.Option(3, "--seeds", help="Seeds per cell (first-seed .. first-seed+N-1)."),
        first_seed: int = typer.Option(0, "--first-seed", help="First seed."),
        protocol: str = typer.Option("finetune", "--protocol", help="finetune | linear | attentive | knn | match"),
        fraction: str = typer.Option("1.0", "--fraction", help="Training-set fractions, e.g. 1.0,0.5,0.1."),
        launcher: str = typer.Option("local", "--launcher", help="local (here, one cell after another) | slurm "
                                                                  "(a submitit job array)"),
        results: Path = typer.Option(Path("results"), "--results", help="Where records go (and are looked up)."),
        runs: Path | None = typer.Option(None, "--runs", help="Training runs (default $CPCBENCH_RUNS or runs/)."),
        limit: int | None = typer.Option(None, "--limit", help="Smoke sweep: --limit for every cell (never tabled)."),
        overrides: EvalOverrides = EvalOverrides(),  # becomes --steps, --batch-size, ... --device (cli_options)
        recipe: Path | None = typer.Option(None, "--recipe", help="slurm: YAML with partition, gpus, cpus, mem_gb, "
                                                                   "timeout_min, array_parallelism, account, qos, "
                                                                   "constraint, setup."),
        folder: Path | None = typer.Option(None, "--folder", help="slurm: submitit logs [runs/sweeps/submitit]."),
        cluster: str = typer.Option("slurm", "--cluster", help="slurm: submitit cluster (slurm | local | debug)."),
        wait: bool = typer.Option(False, "--wait", help="slurm: wait for the array and report failures."),
        fail_fast: bool = typer.Option(False, "--fail-fast", help="local: stop at the first failing cell."),
        dry_run: bool = typer.Option(False, "--dry-run", help="List the cells and which are done; run nothing."),
        json_out: bool = typer.Option(False, "--json", help="Machine-readable summary."),
    ) -> None:
        """Evaluate every backbone on every task, fraction and seed (one record per cell); finished cells are
        skipped, so re-running a failed or interrupted sweep runs only the missing cells."""
        from core.config import load_config
        from core.errors import CpcbenchError
        from harness.snapshots import expand_snapshot_specs
        from harness.sweep import (
            Cell,
            SlurmRecipe,
            parse_backbones,
            parse_fractions,
            plan,
            resolve_task_names,
            sweep,
        )

        if launcher not in ("local", "slurm"):
            raise CpcbenchError(f"unknown launcher {launcher!r}; use local or slurm")
        specs = expand_snapshot_specs(parse_backbones(backbones))
        cells = plan(specs, resolve_task_names(tasks), seeds, protocol, parse_fractions(fraction), limit, first_seed)
        rec = load_config(SlurmRecipe, recipe) if recipe else SlurmRecipe()
        report = sweep(cells, results, launcher=launcher, runs=runs, overrides=overrides, fail_fast=fail_fast,
                       recipe=rec, folder=folder, cluster=cluster, wait=wait, dry_run=dry_run)
        if json_out:
            emit_json(report.as_dict() | ({"pending_cells": [c.label for c in report.pending]} if dry_run else {}))
        elif dry_run:
            done = set(report.skipped)

            def status(c: Cell) -> str:
                if c in report.unresolved:
                    return "cannot run: " + report.unresolved[c]
                return "done" if c in done else "todo"

            print_table(f"sweep plan: {len(report.pending)} to run, {len(done)} done, "
                        f"{len(report.unresolved)} cannot run yet",
                        ["backbone", "task", "protocol", "fraction", "seed", "status"],
                        [[c.backbone, c.task, c.protocol, f"{c.fraction:g}", c.seed, status(c)] for c in report.cells])
        else:
            typer.echo(f"sweep: {len(report.cells)} cell(s): {len(report.skipped)} already done, {len(report.ran)} ran"
                       + (f", {len(report.jobs)} submitted" if report.jobs else "")
                       + f", {len(report.failed)} failed ({report.wall_time_s:.0f} s)")
        if report.failed:
            first = report.failed[0]
            raise CpcbenchError(f"{len(report.failed)} cell(s) failed, first: {first[0].label}: {first[1]}; fix it and "
                                "re-run the same command: finished cells are skipped")
