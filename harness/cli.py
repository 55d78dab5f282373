"""The ``cpcbench`` command line (typer). Commands live one per module in ``harness/commands/``.

Each command module defines ``register(app)`` and keeps heavy imports (torch, pyrender, pandas) inside
its functions, so ``cpcbench --help`` answers at once. A command is registered only once its feature is
real: there are no placeholders.
"""

from __future__ import annotations

import importlib

import typer

from harness import __version__

COMMAND_MODULES = ["ls", "data", "tables", "pretrain", "score", "eval", "sweep"]

app = typer.Typer(
    name="cpcbench",
    help="Benchmark human-centric pretraining: pretrain ViTs by cross-view/cross-pose completion (CPC) and "
         "baselines (MAE, DINO, supervised, scratch), fine-tune them on body and hand tasks, compare honestly.",
    epilog="Examples:\n\n  cpcbench ls tasks\n\n  cpcbench --version",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


def _version(value: bool) -> None:
    if value:
        from core.io import git_commit

        typer.echo(f"cpcbench {__version__} (git {git_commit()})")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and git commit, then exit."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True,
                                help="-v: debug messages on stderr; -vv: also those of the libraries used."),
) -> None:
    from harness.cli_util import setup_logging

    setup_logging(verbose)


for _name in COMMAND_MODULES:
    importlib.import_module(f"harness.commands.{_name}").register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
