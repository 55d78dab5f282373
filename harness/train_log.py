"""What the training loop reports: the step log (history and ``log.jsonl``), progress, and held-out evaluation.

Steps accumulate in a window; every ``loop.log_every`` steps, at an evaluation and at the last step the window
becomes one history entry: ``{"step", "epoch", "loss", "parts", "lr", "grad_norm", "img_per_s"}``, plus
``"gflops_per_s"`` when the FLOPs of a step were counted and ``"eval"`` on rank 0 at an evaluation. Loss, parts
and gradient norm are means over the window's steps (a part over the steps that report it); throughput leaves
out the time spent counting FLOPs, checkpointing and evaluating. Rank 0 appends each entry to
``run_dir/log.jsonl`` and shows a progress bar on a terminal, or logs a line per entry otherwise.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.errors import CpcbenchError
from harness.train_state import preserved_rng

log = logging.getLogger("cpcbench.train")


def empty_window() -> dict[str, Any]:
    return {"loss": 0.0, "parts": {}, "part_counts": {}, "count": 0}


class TrainLog:
    """History, open window, throughput clock and progress display of one run (``loop``: its ``LoopConfig``).

    ``history`` and ``window`` come from the checkpoint a run resumes from; ``step`` is where it starts.
    """

    def __init__(self, run_dir: Path, desc: str, loop: Any, per_epoch: int, rank: int, step: int,
                 history: list[dict[str, Any]], window: dict[str, Any] | None) -> None:
        self.path, self.desc, self.loop, self.per_epoch, self.rank = run_dir / "log.jsonl", desc, loop, per_epoch, rank
        self.history, self.window = history, window if window is not None else empty_window()
        self.bar = _progress(desc, loop.steps, step) if rank == 0 else None
        self.t_window, self.steps_window = time.perf_counter(), 0
        self.t_loop, self.first_step = self.t_window, step

    def due(self, step: int) -> bool:
        log_every = self.loop.log_every
        return step == self.loop.steps or (log_every > 0 and step % log_every == 0)

    def pause(self, seconds: float) -> None:
        """Leave ``seconds`` (FLOP counting, checkpointing) out of the window's throughput."""
        self.t_window += seconds

    def add(self, loss: float, parts: dict[str, float], grad_norm: float) -> None:
        """One more step in the window."""
        w = self.window
        self.steps_window += 1
        w["loss"] += loss
        w["grad_norm"] = w.get("grad_norm", 0.0) + grad_norm
        w["count"] += 1
        for k, v in parts.items():
            w["parts"][k] = w["parts"].get(k, 0.0) + v
            w["part_counts"][k] = w["part_counts"].get(k, 0) + 1

    def close_window(self, step: int, lr: float, flops_per_step: float) -> dict[str, Any]:
        """The history entry of the window that ends at ``step`` (timed now, before any evaluation)."""
        dt = max(time.perf_counter() - self.t_window, 1e-9)
        w, c = self.window, max(self.window["count"], 1)
        entry = {"step": step, "epoch": (step - 1) // self.per_epoch, "loss": w["loss"] / c,
                 "parts": {k: v / w["part_counts"][k] for k, v in w["parts"].items()},
                 "lr": lr,
                 "grad_norm": w.get("grad_norm", 0.0) / c,
                 "img_per_s": self.loop.batch_size * self.steps_window / dt}
        if flops_per_step > 0:  # not counted (count_flops=False, fine-tuning) or not countable: omitted
            entry["gflops_per_s"] = flops_per_step * self.steps_window / dt / 1e9
        self.window = empty_window()
        return entry

    def record(self, entry: dict[str, Any]) -> None:
        """Append ``entry`` to the history (and on rank 0 to ``log.jsonl`` and the console); restart the clock."""
        self.history.append(entry)
        self.t_window, self.steps_window = time.perf_counter(), 0
        if self.rank != 0:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(entry) + "\n")
        if self.bar is None:
            step, steps = entry["step"], self.loop.steps
            eta = (steps - step) * (time.perf_counter() - self.t_loop) / max(step - self.first_step, 1)
            gf = f" {entry['gflops_per_s']:.1f} GFLOP/s" if "gflops_per_s" in entry else ""
            log.info("%s step %d/%d loss %.4f lr %.2e %.1f img/s%s eta %s", self.desc, step, steps, entry["loss"],
                     entry["lr"], entry["img_per_s"], gf, _hms(eta))

    def progress(self, step: int, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(self.bar.task_ids[0], completed=step, loss=f"{loss:.4f}",
                            speed=f"{self.history[-1]['img_per_s']:.1f} img/s" if self.history else "")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


class HeldOut:
    """``eval_fn(model, step) -> dict`` every ``every`` steps and at the last of ``total`` (none without eval_fn).

    It runs in eval mode under ``no_grad`` (and autocast ``amp`` on ``device_type``) with every RNG state
    preserved, so that evaluating does not change training; the result must be numbers (or dicts/lists of them).
    """

    def __init__(self, eval_fn: Callable[[Any, int], dict] | None, every: int, total: int, amp: Any,
                 device_type: str) -> None:
        self.eval_fn, self.every, self.total, self.amp, self.device_type = eval_fn, every, total, amp, device_type

    def due(self, step: int) -> bool:
        return self.eval_fn is not None and self.every > 0 and (step % self.every == 0 or step == self.total)

    def __call__(self, model: Any, step: int) -> dict[str, Any]:
        import torch

        model.eval()
        with preserved_rng(), torch.no_grad(), (torch.autocast(self.device_type, dtype=self.amp)
                                                if self.amp is not None else contextlib.nullcontext()):
            result = self.eval_fn(model, step)  # type: ignore[misc]  (called only when due)
        if not isinstance(result, dict):
            raise CpcbenchError(f"eval_fn must return a dict of numbers, got {type(result).__name__}")
        model.train()
        return _plain(result)


def _plain(x: Any) -> Any:
    """JSON-able copy of an eval result: tensors/numpy scalars become floats."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if hasattr(x, "item") and getattr(x, "ndim", 0) == 0:
        return x.item()
    if x is None or isinstance(x, bool | int | float | str):
        return x
    raise CpcbenchError(f"eval_fn returned a {type(x).__name__}; return numbers (or dicts/lists of numbers)")


def _progress(desc: str, total: int, done: int) -> Any:
    """A rich progress bar on stderr, or None when stderr is no terminal or CPCBENCH_NO_PROGRESS=1."""
    if os.environ.get("CPCBENCH_NO_PROGRESS") == "1" or not sys.stderr.isatty():
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]}  {task.fields[speed]}"), TimeRemainingColumn(),
                   console=Console(stderr=True))
    bar.start()
    bar.add_task(desc, total=total, completed=done, loss="-", speed="")
    return bar


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
