"""``python tests/pretrain_stall.py STEP ARGS...``: run ``cpcbench ARGS`` but stall right after the training
checkpoint of step ``STEP`` is on disk, so that a test can SIGKILL the run there (tests/test_pretrain_repro.py).
Not collected by pytest."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    import harness.train_state
    from harness.cli import app

    stall_after, argv = int(sys.argv[1]), sys.argv[2:]
    save = harness.train_state.save_train_state

    def save_then_stall(run_dir: Any, step: int, *args: Any, **kwargs: Any) -> Path:
        path = save(run_dir, step, *args, **kwargs)
        if step == stall_after:
            time.sleep(120)  # the test kills us here
        return path

    harness.train_state.save_train_state = save_then_stall
    app(argv, prog_name="cpcbench")


if __name__ == "__main__":
    main()
