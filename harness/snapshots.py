"""Backbone snapshots of a pretraining run, the points of a learning curve.

``cpcbench pretrain ... --snapshot-every N`` and/or ``--snapshots 0,100,200`` keep the exported backbone at those
steps as ``<run>/snapshots/step-000100.safetensors`` (+ its JSON sidecar, as ``backbone.safetensors`` has), each
a backbone spec of its own (``--backbone runs/x/snapshots/step-000100.safetensors``). ``--snapshots 0,5%,25%``
names percents of the run's steps (rounded to a step; mixable with steps), so that runs of different lengths under
one FLOP budget (``--flops``) are caught at the same fractions of their compute. The sidecar's config is the
export's plus ``step`` (optimizer steps done; 0 = the run's random init) and ``flops`` (pretraining FLOPs up to that
step: the loop's FLOPs of one step times the step, None when they could not be counted) and ``run`` (the run
directory's name), so a result record reads them as ``backbone.pretrain.step`` / ``.flops`` / ``.run``.

Snapshots are written atomically by rank 0, before the training checkpoint of the same step; a resumed run leaves
finished ones alone, and on the CPU writes the missing ones bit-identical to an uninterrupted run's.
``expand_snapshot_specs`` turns ``snapshots:RUN_DIR`` in ``cpcbench sweep --backbones`` into the run's files.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from core.errors import CpcbenchError

log = logging.getLogger("cpcbench.train")
PREFIX = "snapshots:"
_NAME = re.compile(r"^step-(\d+)\.safetensors$")


def snapshot_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / "snapshots" / f"step-{step:06d}.safetensors"


@dataclass(frozen=True, order=True)
class Percent:
    """A snapshot at ``value`` % of the run's steps (``--snapshots 5%``), resolved once the steps are known."""
    value: Fraction

    def step(self, total: int) -> int:
        """The step ``value`` % of ``total`` rounds to (halves up): 5% of 300 -> 15, 0% -> 0, 100% -> ``total``."""
        return math.floor(self.value * total / 100 + Fraction(1, 2))

    def __str__(self) -> str:
        return f"{float(self.value):g}%"


def parse_steps(text: str, flag: str = "--snapshots") -> tuple[int | Percent, ...]:
    """``"100,200,400"`` -> ``(100, 200, 400)`` (sorted, unique); ``"0,5%,50%"`` -> ``(0, Percent(5), Percent(50))``
    (percent of the run's steps, steps first). Anything but integers >= 0 and percents in 0..100 is refused."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise CpcbenchError(f"{flag} is empty; give a comma list of steps, e.g. 0,100,200 or 0,5%,50%")
    steps, percents = set(), set()
    for t in items:
        if re.fullmatch(r"\d+", t):
            steps.add(int(t))
        elif re.fullmatch(r"\d*\.?\d+\s*%", t):
            value = Fraction(t.rstrip("%").strip())
            if value > 100:
                raise CpcbenchError(f"{flag}: {t} is past the end of the run (100%)")
            percents.add(Percent(value))
        else:
            raise CpcbenchError(f"{flag}: {t!r} is not a step number or a percent of the run; give integers >= 0 "
                                "or percents, e.g. 0,100,200 or 0,5%,50%")
    return (*sorted(steps), *sorted(percents))


def snapshot_steps(every: int, steps: Iterable[int | Percent], total: int) -> tuple[int, ...]:
    """The steps to snapshot in a run of ``total`` steps: every ``every``-th (0: none) plus ``steps`` (each a step,
    or a ``Percent`` of ``total`` rounded to a step)."""
    listed = sorted({s.step(total) if isinstance(s, Percent) else int(s) for s in steps})
    if every < 0:
        raise CpcbenchError(f"--snapshot-every must be a positive number of steps (0: none), got {every}")
    bad = [s for s in listed if s < 0 or s > total]
    if bad:
        raise CpcbenchError(f"--snapshots: step {bad[0]} is outside the run's 0..{total} steps")
    periodic = range(every, total + 1, every) if every > 0 else range(0)
    return tuple(sorted(set(listed) | set(periodic)))


class Snapshotter:
    """Writes the exported backbone at ``steps`` (rank 0 only). ``export(model) -> state_dict`` of the backbone;
    ``config`` is the export's sidecar config; ``meta`` extra top-level sidecar fields."""

    def __init__(self, run_dir: str | Path, steps: Sequence[int], export: Callable[[Any], dict[str, Any]],
                 config: dict[str, Any], rank: int = 0, **meta: Any) -> None:
        self.run_dir, self.steps, self.export = Path(run_dir), frozenset(steps), export
        self.config, self.rank, self.meta = config, rank, meta

    def due(self, step: int) -> bool:
        return self.rank == 0 and step in self.steps

    def write(self, model: Any, step: int, flops_per_step: float) -> Path | None:
        """Write the snapshot of ``step`` unless a finished one is there; its path, or None when kept."""
        from core.checkpoints import save_weights, sha256_file, sidecar

        path = snapshot_path(self.run_dir, step)
        if path.is_file() and sidecar(path).is_file():
            try:
                if json.loads(sidecar(path).read_text()).get("sha256") == sha256_file(path):
                    return None  # written before an interruption: kept as it is
            except json.JSONDecodeError:
                pass  # a torn sidecar: write the snapshot again
        flops = flops_per_step * step if flops_per_step > 0 else (0.0 if step == 0 else None)
        config = {**self.config, "step": step, "flops": flops, "run": self.run_dir.name}
        save_weights(path, self.export(model), config, **self.meta, step=step, flops=flops)
        log.info("snapshot of step %d -> %s", step, path)
        return path


def list_snapshots(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, file) of every snapshot of a run, in step order."""
    d = Path(run_dir) / "snapshots"
    found = [(int(m.group(1)), p) for p in d.glob("step-*.safetensors") if (m := _NAME.match(p.name))]
    return sorted(found)


def run_files(run_dir: str | Path) -> list[str]:
    """Every snapshot of ``run_dir`` in step order, then its final ``backbone.safetensors`` unless that is the last
    snapshot's step again (as paths); a ``CpcbenchError`` if the run has neither."""
    from core.checkpoints import sidecar

    run = Path(run_dir)
    if not str(run_dir).strip() or not run.is_dir():
        raise CpcbenchError(f"snapshots:{run_dir}: no such run directory")
    snaps = list_snapshots(run)
    files = [str(p) for _, p in snaps]
    final = run / "backbone.safetensors"
    if final.is_file():
        step = None
        if sidecar(final).is_file():
            meta = json.loads(sidecar(final).read_text())
            step = (meta.get("config") or {}).get("step", meta.get("steps"))
        if not snaps or step is None or int(step) != snaps[-1][0]:
            files.append(str(final))
    if not files:
        raise CpcbenchError(f"snapshots:{run_dir}: the run has no snapshots/step-*.safetensors and no "
                            "backbone.safetensors; pretrain it with --snapshot-every N or --snapshots 0,100,...")
    return files


def expand_snapshot_specs(specs: Sequence[str]) -> list[str]:
    """``snapshots:RUN_DIR`` -> that run's files (``run_files``); every other spec as it is, order kept."""
    out: list[str] = []
    for spec in specs:
        out.extend(run_files(spec[len(PREFIX):]) if spec.startswith(PREFIX) else [spec])
    return list(dict.fromkeys(out))
