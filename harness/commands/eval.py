"""``cpcbench eval``: fine-tune (or linear-probe) a backbone on a task, score it, write a result record."""

from __future__ import annotations

from pathlib import Path

import typer

from harness.cli_util import emit_json, print_table, user_errors
from harness.eval_options import EvalConfig, EvalOverrides, cli_options

EPILOG = ("Examples:  cpcbench eval --backbone cpc --task synth-body-mesh  |  "
          "cpcbench eval --backbone mae --task body --protocol linear --seeds 3  |  "
          "cpcbench eval --backbone timm:vit_small_patch16_224.dino --task 3dpw --data-root ~/data  |  "
          "cpcbench eval --backbone vit_base,pos=rope:croco_encoder.safetensors --task hand  |  "
          "cpcbench eval --backbone mae --task synth-hand-gesture --protocol knn  |  "
          "cpcbench eval --backbone cnn:resnet18 --task synth-body-mesh  (reference CNN, random init)  |  "
          "cpcbench eval --backbone scratch --task synth-hand-mesh --limit 8  (smoke run)")


def _fmt(m: dict) -> str:
    s = f"{m['mean']:.2f}"
    if m.get("std") is not None:
        s += f" ± {m['std']:.2f}"
    return s


def register(app: typer.Typer) -> None:
    @app.command("eval", epilog=EPILOG)
    @user_errors
    @cli_options()
    def eval_cmd(
        backbone: str = typer.Option(..., "--backbone", "-b",
                                     help="cpc | mae | dino | supervised (newest local export, resolved once "
                                          "for all seeds) | scratch | timm:NAME.TAG | cnn:NAME (a random-init "
                                          "timm CNN as a reference, e.g. cnn:resnet18) | checkpoint file (ours, "
                                          "CroCo) | ARCH[,pos=..,img=..,norm=..]:FILE (a plain weights file, "
                                          "e.g. vit_small:w.safetensors)"),
        task: str = typer.Option(..., "--task", "-t",
                                 help="A task name (cpcbench ls tasks), a comma list, or a group: body | hand "
                                      "(the synthetic tasks of that domain)."),
        protocol: str = typer.Option("finetune", "--protocol", help="finetune (all weights, layer-wise LR decay) | "
                                                                    "linear (frozen backbone, head only) | "
                                                                    "attentive (cross-attention query + linear) | "
                                                                    "knn (DINO weighted k-NN) | match "
                                                                    "(correspondence, no training); the last four on "
                                                                    "cached features"),
        seeds: int = typer.Option(1, "--seeds", help="Number of seeds (0..N-1); the record has mean and std."),
        fraction: float = typer.Option(1.0, "--fraction", help="Fraction of the training set (data efficiency)."),
        limit: int | None = typer.Option(None, "--limit", help="Smoke run: at most N train/test samples and N steps; "
                                                               "the record is marked smoke."),
        overrides: EvalOverrides = EvalOverrides(),  # becomes --steps, --batch-size, ... --workers (cli_options)
        results: Path = typer.Option(Path("results"), "--results", help="Where result records go."),
        runs: Path | None = typer.Option(None, "--runs", help="Training runs (default $CPCBENCH_RUNS or runs/)."),
        visualize: bool = typer.Option(False, "--visualize", help="Also render a few test predictions into a PNG "
                                                                  "beside the record."),
        json_out: bool = typer.Option(False, "--json", help="Print the records as JSON."),
    ) -> None:
        """Fine-tune a backbone on a task with the task's fixed protocol, score the test split, write a record."""
        from harness.evaluate import evaluate, resolve_tasks

        records = []
        for name in resolve_tasks(task):
            cfg = EvalConfig.of(overrides, backbone=backbone, task=name, protocol=protocol, seeds=seeds,
                                fraction=fraction, limit=limit)
            cfg.check()
            records.append(evaluate(cfg, results, runs, visualize=visualize))
        if json_out:
            emit_json(records)
            return
        rows = []
        for rec in records:
            base = rec.get("baseline_mean") or {}
            for metric, m in rec["metrics"].items():
                arrow = "↑" if m["higher_is_better"] else "↓"
                b = f"{base[metric]:.2f}" if metric in base else ""
                rows.append([rec["task"]["name"], f"{metric} {arrow}", m["unit"], _fmt(m), b, rec["n_samples"]])
        smoke = " (SMOKE RUN: --limit)" if limit is not None else ""
        print_table(f"{backbone} · {protocol} · seeds {seeds} · fraction {fraction}{smoke}",
                    ["task", "metric", "unit", "value", "mean-predictor", "n"], rows)
        for rec in records:
            typer.echo(f"record: {rec['_path']}")
            if rec.get("submission"):
                typer.echo(f"submission: {Path(rec['_path']).parent / rec['submission']}  "
                           f"{rec.get('submission_note', '')}".rstrip())
