from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from harness.cli import app

runner = CliRunner()


def test_help_lists_commands():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0 and "ls" in r.output


def test_version():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.startswith("cpcbench ") and "git" in r.output


def test_ls_unknown_kind_is_one_line():
    r = runner.invoke(app, ["ls", "widgets"])
    assert r.exit_code == 2
    assert r.stderr.strip().count("\n") == 0 and "unknown listing 'widgets'" in r.stderr


def test_ls_json():
    r = runner.invoke(app, ["ls", "tasks", "--json"])
    assert r.exit_code == 0, r.output


def test_help_imports_nothing_heavy():
    """`cpcbench --help` must stay instant: importing the CLI pulls in no torch, numpy, pandas or pyrender."""
    code = ("import sys, harness.cli; heavy = [m for m in ('torch', 'numpy', 'pandas', 'pyrender', 'timm') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _commands(cmd, path=()):
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def test_help_texts_keep_their_placeholders():
    """The CLI renders help as Markdown, which drops anything that looks like an HTML tag (``<domain>`` vanished
    from ``data synth --help``): placeholders are written in capitals (DOMAIN, RUN_ID) instead."""
    import re

    import typer.main

    tag = re.compile(r"<[A-Za-z_][\w-]*>")
    found = []
    for path, cmd in _commands(typer.main.get_command(app)):
        texts = [cmd.help or "", cmd.epilog or ""] + [getattr(p, "help", None) or "" for p in cmd.params]
        found += [f"{' '.join(path)}: {m}" for t in texts for m in tag.findall(t)]
    assert not found, found
    r = runner.invoke(app, ["data", "synth", "--help"], terminal_width=200)
    assert "runs/data/DOMAIN-SIZE-SEED" in r.output
