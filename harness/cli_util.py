"""Helpers shared by CLI commands: one-line user errors, logging to stderr, JSON or rich output."""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import typer

from core.errors import CpcbenchError

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("cpcbench")


def user_errors(fn: F) -> F:
    """Turn a ``CpcbenchError`` into ``error: <message>`` on stderr and exit status 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CpcbenchError as e:
            msg = " ".join(str(e).split())  # exactly one line
            typer.echo(f"error: {msg}", err=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def setup_logging(verbose: int = 0) -> None:
    """Log to stderr: cpcbench's INFO and above by default; ``-v`` (1) adds cpcbench's DEBUG messages; ``-vv`` (2+)
    also shows the DEBUG messages of the libraries it calls (torch, PIL, matplotlib, ...). Idempotent: a later
    call with another ``verbose`` resets the levels."""
    root = logging.getLogger("cpcbench")
    root.setLevel(logging.DEBUG if verbose >= 1 else logging.INFO)
    handler = next((h for h in root.handlers if getattr(h, "_cpcbench", False)), None)
    if handler is None:
        from rich.console import Console
        from rich.logging import RichHandler

        handler = RichHandler(console=Console(stderr=True), show_path=False, show_time=False, markup=False)
        handler._cpcbench = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        root.propagate = False
    top = logging.getLogger()  # the libraries' loggers propagate here
    if verbose >= 2 and handler not in top.handlers:
        top.addHandler(handler)
        top.setLevel(logging.DEBUG)
    elif verbose < 2 and handler in top.handlers:
        top.removeHandler(handler)
        top.setLevel(logging.WARNING)


def emit_json(obj: Any) -> None:
    """``obj`` as one JSON document on stdout (from rank 0 only under ``torchrun``)."""
    if speaks():
        sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*[str(x) for x in r])
    Console().print(table)


def speaks() -> bool:
    """Whether this process prints results: always, except the ranks other than 0 under ``torchrun``."""
    from harness.distributed import env_info

    return env_info().is_main


def echo(message: str) -> None:
    """``typer.echo`` on rank 0 only."""
    if speaks():
        typer.echo(message)
