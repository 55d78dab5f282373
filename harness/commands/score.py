"""``cpcbench score``: re-score saved predictions without a model (FreiHAND pred.json, or eval's .npz)."""

from __future__ import annotations

from pathlib import Path

import typer

from harness.cli_util import emit_json, print_table, user_errors

EPILOG = ("Examples:\n\n"
          "  cpcbench score --task freihand --data-root ~/data/freihand --predictions pred.json\n\n"
          "  cpcbench score --task synth-hand-mesh --predictions results/.../RUN_ID.predictions.npz --json")


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "n/a"
    return f"{v:.2f}" if unit == "mm" else f"{v:.3f}"


def _arrow(m: dict) -> str:
    return "" if m["higher_is_better"] is None else ("↑" if m["higher_is_better"] else "↓")


def _print_submission(res: dict, name: str) -> None:
    rows = [[m["label"], _fmt(m["mean"], m["unit"]), m["unit"], _arrow(m)] for m in res["metrics"].values()]
    print_table(f"{res['task']}: {name}", ["metric", "value", "unit", ""], rows)


def _print_saved(res: dict) -> None:
    rows = [[k, _fmt(m["mean"], m["unit"]), "" if m["std"] is None else _fmt(m["std"], m["unit"]),
             "" if m["stderr"] is None else _fmt(m["stderr"], m["unit"]), m["unit"], _arrow(m),
             "" if m["stored_mean"] is None else _fmt(m["stored_mean"], m["unit"])]
            for k, m in res["metrics"].items()]
    print_table(f"{res['task']}: {res['n_samples']} samples, {res['n_seeds']} seed(s)",
                ["metric", "mean", "std (seeds)", "stderr", "unit", "", "stored"], rows)


def register(app: typer.Typer) -> None:
    @app.command("score", epilog=EPILOG)
    @user_errors
    def score(
        predictions: Path = typer.Option(..., "--predictions", "-p",
                                         help="FreiHAND submission pred.json, or a RUN_ID.predictions.npz "
                                              "written by `cpcbench eval`."),
        task: str = typer.Option("", "--task", "-t",
                                 help="Task name (freihand for pred.json; optional for an npz with its record)."),
        data_root: Path = typer.Option(None, "--data-root",
                                       help="FreiHAND folder with evaluation_xyz.json / evaluation_verts.json "
                                            "(default: $CPCBENCH_DATA/freihand)."),
        json_out: bool = typer.Option(False, "--json", help="Print {metric: value} as JSON."),
    ) -> None:
        """Re-score saved predictions: a benchmark's submission file (FreiHAND's pred.json, scored as the official
        script does), or any task's saved eval predictions."""
        from core.errors import CpcbenchError
        from harness.scoring import score_saved, score_submission

        suffix = predictions.suffix.lower()
        if suffix not in (".json", ".npz"):
            raise CpcbenchError(f"{predictions}: expected a FreiHAND pred.json or a .predictions.npz from "
                                f"`cpcbench eval`")
        submission = suffix == ".json"
        res = (score_submission if submission else score_saved)(task or None, predictions, data_root)
        if json_out:
            emit_json({k: m["mean"] for k, m in res["metrics"].items()})
        elif submission:
            _print_submission(res, predictions.name)
        else:
            _print_saved(res)
