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
