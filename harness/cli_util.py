"""Helpers shared by CLI commands: one-line user errors, logging to stderr, JSON or rich output."""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import typer

from harness.errors import CpcbenchError

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
    level = logging.WARNING - 10 * min(verbose, 2) if verbose else logging.INFO
    root = logging.getLogger("cpcbench")
    if root.handlers:
        root.setLevel(level)
        return
    from rich.console import Console
    from rich.logging import RichHandler

    handler = RichHandler(console=Console(stderr=True), show_path=False, show_time=False, markup=False)
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False


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
