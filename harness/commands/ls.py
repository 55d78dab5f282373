"""``cpcbench ls tasks|backbones|methods|datasets``: what the registries hold."""

from __future__ import annotations

from typing import Any

import typer

from harness.cli_util import emit_json, print_table, user_errors

KINDS = ("tasks", "backbones", "methods", "datasets")


def _summary(obj: Any) -> str:
    doc = getattr(obj, "__doc__", None) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def list_kind(kind: str) -> list[dict[str, Any]]:
    from core.errors import CpcbenchError
    from harness.registries import BACKBONES, METHODS, TASKS

    if kind == "backbones":
        return [{"name": n, "about": _summary(BACKBONES.get(n))} for n in BACKBONES.names()]
    if kind == "methods":
        return [{"name": n, "about": _summary(METHODS.get(n))} for n in METHODS.names()]
    if kind in ("tasks", "datasets"):
        rows = []
        for n in TASKS.names():
            task = TASKS.get(n)()  # a Task class; the instance reads $CPCBENCH_DATA (no I/O)
            status = task.data_status() if hasattr(task, "data_status") else {}
            row = {"name": n, "version": str(getattr(task, "version", "")), "about": _summary(task),
                   "protocols": ",".join(getattr(task, "protocols", ())), **status}
            rows.append(row)
        return rows
    raise CpcbenchError(f"unknown listing {kind!r}; choose one of {', '.join(KINDS)}")


def register(app: typer.Typer) -> None:
    @app.command("ls", epilog="Examples:  cpcbench ls tasks  |  cpcbench ls backbones --json")
    @user_errors
    def ls(
        kind: str = typer.Argument(..., help="tasks | backbones | methods | datasets"),
        json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
    ) -> None:
        """List registered tasks, backbones, pretraining methods or data sets (with their data status)."""
        rows = list_kind(kind)
        if json_out:
            emit_json(rows)
            return
        if not rows:
            typer.echo(f"no {kind} registered yet")
            return
        cols = list(dict.fromkeys(k for r in rows for k in r))
        print_table(f"cpcbench {kind}", cols, [[r.get(c, "") for c in cols] for r in rows])
