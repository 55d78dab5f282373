"""``-v`` / ``-vv``: each level shows more than the one before (harness.cli_util.setup_logging)."""

from __future__ import annotations

import logging

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.cli_util import setup_logging


@pytest.fixture(autouse=True)
def _reset_logging():
    yield
    setup_logging(0)


def _levels() -> tuple[bool, bool, bool]:
    """(cpcbench INFO shown, cpcbench DEBUG shown, a library's DEBUG shown) - shown = enabled and handled."""
    ours, lib = logging.getLogger("cpcbench.sweep"), logging.getLogger("PIL.PngImagePlugin")
    lib_handled = any(h.level <= logging.DEBUG for h in logging.getLogger().handlers)
    return ours.isEnabledFor(logging.INFO), ours.isEnabledFor(logging.DEBUG), lib.isEnabledFor(logging.DEBUG) and \
        lib_handled


@pytest.mark.parametrize(("flags", "expect"), [
    ([], (True, False, False)),
    (["-v"], (True, True, False)),
    (["-vv"], (True, True, True)),
    (["-v", "-v", "-v"], (True, True, True)),
])
def test_verbose_levels(flags: list[str], expect: tuple[bool, bool, bool]) -> None:
    res = CliRunner().invoke(app, [*flags, "ls", "tasks"])
    assert res.exit_code == 0, res.output
    assert _levels() == expect


def test_verbose_resets_and_adds_one_handler() -> None:
    setup_logging(2)
    setup_logging(2)
    ours = logging.getLogger("cpcbench")
    assert len([h for h in ours.handlers if getattr(h, "_cpcbench", False)]) == 1
    assert logging.getLogger().handlers.count(ours.handlers[0]) == 1
    setup_logging(1)
    assert _levels() == (True, True, False)
    setup_logging(0)
    assert _levels() == (True, False, False)
