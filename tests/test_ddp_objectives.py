"""DDP with 2 gloo processes gives the same losses as one process on the same global batch, for every
pretraining method (issue 5), through the real loop and the real objectives."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.registries import METHODS

WORKER = str(Path(__file__).with_name("ddp_objective_worker.py"))


def _run(cmd: list[str], out: Path) -> list[float]:
    env = {**os.environ, "CPCBENCH_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    subprocess.run(["timeout", "180", *cmd, "--out", str(out)], check=True, env=env, capture_output=True)
    return json.loads((out / "result.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS.names())
def test_two_gloo_processes_match_one(tmp_path: Path, method: str) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    assert torchrun, "torchrun not found next to the python running the tests"
    one = _run([sys.executable, WORKER, "--method", method], tmp_path / "one")
    two = _run([torchrun, "--standalone", "--nproc_per_node=2", WORKER, "--method", method], tmp_path / "two")
    assert len(one) == len(two) == 3
    assert two == pytest.approx(one, rel=1e-4, abs=1e-5)
