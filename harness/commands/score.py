"""``cpcbench score``: re-score saved predictions without a model (FreiHAND pred.json, or eval's .npz)."""

from __future__ import annotations

from pathlib import Path

import typer

from harness.cli_util import emit_json, print_table, user_errors

EPILOG = ("Examples:\n\n"
          "  cpcbench score --task freihand --data-root ~/data/freihand --predictions pred.json\n\n"
          "  cpcbench score --task synth-hand-mesh --predictions results/.../<run_id>.predictions.npz --json")


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "n/a"
    return f"{v:.2f}" if unit == "mm" else f"{v:.3f}"


def register(app: typer.Typer) -> None:
    @app.command("score", epilog=EPILOG)
    @user_errors
    def score(
        predictions: Path = typer.Option(..., "--predictions", "-p",
                                         help="FreiHAND submission pred.json, or a <run_id>.predictions.npz "
                                              "written by `cpcbench eval`."),
        task: str = typer.Option("", "--task", "-t",
                                 help="Task name (freihand for pred.json; optional for an npz with its record)."),
        data_root: Path = typer.Option(None, "--data-root",
                                       help="FreiHAND folder with evaluation_xyz.json / evaluation_verts.json "
                                            "(default: $CPCBENCH_DATA/freihand)."),
        json_out: bool = typer.Option(False, "--json", help="Print {metric: value} as JSON."),
    ) -> None:
        """Re-score saved predictions: FreiHAND's official aligned metrics, or any task's saved eval predictions."""
        from core.errors import CpcbenchError
        from harness.scoring import FREIHAND_UNITS, score_freihand, score_saved

        if predictions.suffix.lower() == ".json":
            if task not in ("freihand", ""):
                raise CpcbenchError(f"a .json submission is scored with --task freihand (FreiHAND's [xyz, verts] "
                                    f"format), not {task!r}; for other tasks pass the eval .predictions.npz")
            res = score_freihand(data_root, predictions)
            if json_out:
                emit_json(res)
                return
            names = {"pa_mpjpe": "PA-MPJPE (keypoints)", "pa_mpvpe": "PA-MPVPE (mesh)", "f5": "F@5mm (aligned)",
                     "f15": "F@15mm (aligned)", "auc": "AUC 0-50 mm (aligned keypoints)"}
            rows = [[names[k], _fmt(v, FREIHAND_UNITS[k][0]), FREIHAND_UNITS[k][0],
                     "↑" if FREIHAND_UNITS[k][1] else "↓"] for k, v in res.items()]
            print_table(f"FreiHAND: {predictions.name}", ["metric", "value", "unit", ""], rows)
            return
        if predictions.suffix.lower() != ".npz":
            raise CpcbenchError(f"{predictions}: expected a FreiHAND pred.json or a .predictions.npz from "
                                f"`cpcbench eval`")
        res = score_saved(task or None, predictions, data_root)
        if json_out:
            emit_json({k: m["mean"] for k, m in res["metrics"].items()})
            return
        rows = []
        for k, m in res["metrics"].items():
            unit = m["unit"]
            arrow = "" if m["higher_is_better"] is None else ("↑" if m["higher_is_better"] else "↓")
            rows.append([k, _fmt(m["mean"], unit), "" if m["std"] is None else _fmt(m["std"], unit),
                         "" if m["stderr"] is None else _fmt(m["stderr"], unit), unit, arrow,
                         "" if m["stored_mean"] is None else _fmt(m["stored_mean"], unit)])
        print_table(f"{res['task']}: {res['n_samples']} samples, {res['n_seeds']} seed(s)",
                    ["metric", "mean", "std (seeds)", "stderr", "unit", "", "stored"], rows)
