"""``make demo``: the short version of the benchmark on the embedded synthetic world.

Pretrains CPC and MAE briefly on synthetic humans (body and hand), fine-tunes both on one body and one
hand task, and prints the comparison table. Every step is a ``cpcbench`` command, echoed as a user would
type it. Records and runs go under ``runs/demo/`` (not the committed ``results/``): these are tiny runs,
good for seeing the pipeline work, not for conclusions. Sizes can be raised with environment variables
``DEMO_PRETRAIN_STEPS``, ``DEMO_EVAL_STEPS`` and ``DEMO_IMG_SIZE``.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(os.environ.get("DEMO_OUT", "runs/demo"))


def run(args: list[str]) -> None:
    print(f"\n$ cpcbench {shlex.join(args)}", flush=True)
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "harness.cli", *args], env={**os.environ, "CPCBENCH_RUNS": str(OUT)})
    if proc.returncode != 0:
        sys.exit(f"demo step failed (exit {proc.returncode}): cpcbench {shlex.join(args)}")
    print(f"  ({time.time() - t0:.0f} s)", flush=True)


def main() -> None:
    from harness.cli import COMMAND_MODULES

    have = set(COMMAND_MODULES)
    needed = ["data", "pretrain", "eval", "tables"]
    missing = [c for c in needed if c not in have]
    t0 = time.time()
    if missing:
        print(f"cpcbench demo: commands not built yet: {', '.join(missing)}. Running what is real so far.")
    run(["ls", "tasks"])
    if missing:
        return
    pre_steps = os.environ.get("DEMO_PRETRAIN_STEPS", "150")
    eval_steps = os.environ.get("DEMO_EVAL_STEPS", "200")
    size = os.environ.get("DEMO_IMG_SIZE", "64")  # 64 px keeps the demo within minutes on 2 CPU cores
    results = str(OUT / "results")
    for domain in ("body", "hand"):
        for method in ("cpc", "mae"):
            run(["pretrain", domain, "--method", method, "--steps", pre_steps, "--img-size", size])
    for task in ("synth-body-mesh", "synth-hand-mesh"):
        for backbone in ("cpc", "mae"):
            run(["eval", "--backbone", backbone, "--task", task, "--steps", eval_steps, "--results", results])
    run(["tables", "--results", results, "--out", str(OUT / "leaderboards")])
    for md in sorted((OUT / "leaderboards" / "tables").glob("main-*.md")):
        print(f"\n{md}:\n{md.read_text()}")
    print(f"\ndemo finished in {(time.time() - t0) / 60:.1f} min; runs, records and tables are under {OUT}/")


if __name__ == "__main__":
    main()
