"""``cpcbench sweep``: the backbone x task x fraction x seed grid of ``cpcbench eval`` runs, resumable.

Each cell is one evaluation with one seed (``harness.evaluate.evaluate`` with ``seeds=1, first_seed=S``), so
it writes one record; ``cpcbench tables`` pools the seeds of a cell back together. Before running, every
backbone spec is resolved once per domain (``harness.backbones.resolve_backbone``: name + weights sha256) and
every task's version read from the registry; a cell is **skipped** when ``results/`` already holds a record
for the same task, task version, backbone name + weights sha256, protocol, fraction, seed, smoke limit and
fine-tuning setting (schedule, input size, layer decay, where training statistics come from:
``harness.tables.eval_setting``) and synthetic frame set (``--data-root`` or the task's default set:
``harness.tables.data_setting``), i.e. for the same table cell. A failed or interrupted sweep is therefore
re-run, not restarted: only missing cells run.

Launchers:

- ``local``: cells run one after another in this process, with a rich progress bar over cells; a failing
  cell is logged and the sweep goes on (``fail_fast`` stops it); failures are listed at the end.
- ``slurm``: the pending cells are submitted as one job array through submitit with the resources of a
  recipe (``SlurmRecipe``, a YAML file: partition, gpus, cpus, mem, timeout, ...). ``cluster="local"`` runs
  the same array with submitit's local executor (how it is tested here, without a cluster).
"""

from __future__ import annotations

import logging
import os
import re
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.errors import CpcbenchError
from harness.eval_options import EvalConfig, EvalOverrides

log = logging.getLogger("cpcbench.sweep")


@dataclass(frozen=True)
class Cell:
    """One evaluation of the grid: one backbone spec on one task, protocol, data fraction and seed."""

    backbone: str
    task: str
    protocol: str
    fraction: float
    seed: int
    limit: int | None = None

    @property
    def label(self) -> str:
        return (f"{self.backbone} / {self.task} / {self.protocol} / {self.fraction:g} / seed {self.seed}"
                + (f" / limit {self.limit}" if self.limit is not None else ""))


@dataclass(frozen=True)
class Identity:
    """What a cell's record will say about it, known before running: task version + defaults, backbone id and the
    input size the evaluation will use (``--img-size``, else the backbone's own; None: the task's default)."""

    task_version: str
    backbone_name: str
    weights_sha256: str
    task_defaults: Mapping[str, Any] = field(default_factory=dict)
    img_size: int | None = None
    layered: bool = True  # the backbone has transformer blocks (layer-wise LR decay applies to it)
    data: str = ""  # the synthetic frame set the cell reads (``harness.tables.data_label``); "" for real data


@dataclass(frozen=True)
class SlurmRecipe:
    """Resources of one cell's job (a YAML recipe for ``--recipe``); fields map onto submitit parameters."""

    partition: str = ""
    gpus: int = 1
    cpus: int = 8
    mem_gb: int = 32
    timeout_min: int = 120
    array_parallelism: int = 32
    account: str = ""
    qos: str = ""
    constraint: str = ""
    setup: tuple[str, ...] = ()  # shell lines run before each job (module load ..., source venv)


@dataclass
class SweepReport:
    cells: list[Cell]
    pending: list[Cell] = field(default_factory=list)
    skipped: list[Cell] = field(default_factory=list)
    unresolved: dict[Cell, str] = field(default_factory=dict)  # cell -> why its backbone/task cannot be resolved
    ran: list[Cell] = field(default_factory=list)
    failed: list[tuple[Cell, str]] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)
    wall_time_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"cells": len(self.cells), "pending": len(self.pending), "skipped": len(self.skipped),
                "unresolved": len(self.unresolved), "ran": len(self.ran),
                "failed": [{"cell": asdict(c), "error": e} for c, e in self.failed], "jobs": self.jobs,
                "wall_time_s": round(self.wall_time_s, 3)}


# ---------------------------------------------------------------------------------------------- the grid
def parse_list(text: str, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise CpcbenchError(f"--{what} is empty; give a comma-separated list")
    return list(dict.fromkeys(items))


def parse_backbones(text: str) -> list[str]:
    """``--backbones``: a comma list of specs, where a spec's own ``,key=value`` options stay with it:
    ``"cpc,scratch,patch=16,stem=conv"`` -> ``["cpc", "scratch,patch=16,stem=conv"]`` (also ``ARCH,key=value:FILE``)."""
    specs: list[str] = []
    for item in (t.strip() for t in text.split(",")):
        if specs and re.match(r"[A-Za-z_]\w*=", item):
            specs[-1] += f",{item}"
        elif item:
            specs.append(item)
    if not specs:
        raise CpcbenchError("--backbones is empty; give a comma-separated list")
    return list(dict.fromkeys(specs))


def parse_fractions(text: str) -> list[float]:
    out = []
    for t in parse_list(text, "fraction"):
        try:
            f = float(t)
        except ValueError:
            raise CpcbenchError(f"--fraction {t!r} is not a number; use e.g. 1.0,0.5,0.1") from None
        if not 0.0 < f <= 1.0:
            raise CpcbenchError(f"--fraction must be in (0, 1], got {f}")
        out.append(f)
    return out


def plan(backbones: Sequence[str], tasks: Sequence[str], seeds: int, protocol: str = "finetune",
         fractions: Sequence[float] = (1.0,), limit: int | None = None, first_seed: int = 0) -> list[Cell]:
    """The grid in a stable order: backbone, task, fraction, seed (so a backbone's cells run together)."""
    if seeds < 1:
        raise CpcbenchError(f"--seeds must be >= 1, got {seeds}")
    return [Cell(b, t, protocol, float(f), s, limit) for b in backbones for t in tasks for f in fractions
            for s in range(first_seed, first_seed + seeds)]


def resolve_task_names(spec: str) -> list[str]:
    """``body`` / ``hand`` (the synthetic tasks of that domain) or a comma list of task names."""
    import tasks  # noqa: F401  (fills the registry)
    from harness.evaluate import resolve_tasks

    return resolve_tasks(spec)


class RegistryIdentifier:
    """Identity of cells from the task registry and ``resolve_backbone`` (cached per backbone and domain)."""

    def __init__(self, img_size: int | None = None, data_root: str | None = None) -> None:
        self.img_size, self.data_root = img_size, data_root
        self._bb: dict[tuple[str, str], tuple[str, str, int | None, bool]] = {}
        self._data: dict[tuple[str, int | None], str] = {}  # (task, input size) -> its frame set's data_label

    def __call__(self, cell: Cell) -> Identity:
        import tasks  # noqa: F401
        from harness.registries import TASKS

        task = TASKS.get(cell.task)
        key = (cell.backbone, task.domain)
        if key not in self._bb:
            from harness.backbones import resolve_backbone
            from harness.evaluate import backbone_info
            from harness.results import portable_path

            bb, info = resolve_backbone(cell.backbone, task.domain, self.img_size)
            self._bb[key] = (portable_path(str(info.get("name", cell.backbone))), str(info.get("weights_sha256", "")),
                             backbone_info(bb, info)["img_size"],  # what evaluate() will use and record
                             hasattr(bb, "blocks"))
        name, sha, img, layered = self._bb[key]
        if (cell.task, img) not in self._data:  # once per task and size, not once per cell
            self._data[(cell.task, img)] = expected_data(task, self.data_root, img)
        return Identity(str(task.version), name, sha, task.defaults.to_dict(), img, layered,
                        self._data[(cell.task, img)])


def expected_data(task_cls: Any, data_root: str | None, img_size: int | None) -> str:
    """The ``data_label`` a record of ``task_cls`` will carry, known without rendering anything: the frame set that
    ``data_root`` names, else the synthetic task's default set at ``img_size`` (what it would render); "" for
    tasks that do not read a synthetic frame set."""
    if not getattr(task_cls, "synthetic", False):
        return ""
    import json
    from dataclasses import asdict

    from harness.tables import data_label

    task = task_cls(data_root)
    root = getattr(task, "root", None)
    if root is not None:
        try:
            meta = json.loads((Path(root) / "meta.json").read_text())
        except (OSError, json.JSONDecodeError):
            return ""
        from harness.results import portable_path

        return data_label(portable_path(str(root)), meta.get("generator"))
    from humans.world import default_dir, make_config, model_source
    from tasks.synthetic import DEFAULT_SIZE, SYNTH_FRAMES

    cfg = SYNTH_FRAMES.get(task.domain)
    if cfg is None:
        return ""
    size = img_size or DEFAULT_SIZE
    world = make_config(task.domain, cfg["frames"], size, cfg["seed"])
    return data_label(str(default_dir(task.domain, size, cfg["seed"])),
                      {**asdict(world), "model": model_source(task.domain)})


def _fkey(x: float) -> float:
    return round(float(x), 9)


def done_keys(records: Iterable[Mapping[str, Any]]) -> set[tuple]:
    """Keys of the cells that records already cover (one key per seed of each record)."""
    from harness.tables import cell_setting

    keys = set()
    for rec in records:
        bb = rec["backbone"]
        base = (rec["task"]["name"], str(rec["task"]["version"]), str(bb["name"]), str(bb.get("weights_sha256", "")),
                rec["protocol"], _fkey(rec["fraction"]), rec["limit"], cell_setting(rec))
        keys.update((*base, int(s)) for s in rec["seeds"])
    return keys


def cell_key(cell: Cell, ident: Identity, overrides: EvalOverrides) -> tuple:
    from harness.results import TRAIN_STATS
    from harness.tables import setting_string

    # the layer decay as evaluate() records it: the override (else the default, never named) when fine-tuning a
    # backbone with blocks, nothing otherwise
    decay = overrides.layer_decay if cell.protocol == "finetune" and ident.layered else None
    setting = setting_string({"steps": overrides.steps, "batch_size": overrides.batch_size,
                              "base_lr": overrides.base_lr, "img_size": ident.img_size or overrides.img_size,
                              "layer_decay": decay, "train_stats": TRAIN_STATS}, ident.task_defaults, cell.limit,
                             cell.fraction)
    setting = ", ".join(s for s in (setting, ident.data) if s)
    return (cell.task, ident.task_version, ident.backbone_name, ident.weights_sha256, cell.protocol,
            _fkey(cell.fraction), cell.limit, setting, cell.seed)


def split_done(cells: Sequence[Cell], results: str | Path, identify: Callable[[Cell], Identity],
               overrides: EvalOverrides) -> tuple[list[Cell], list[Cell], dict[Cell, str]]:
    """(pending, done, unresolved: cell -> error message of its backbone/task, e.g. no checkpoint yet)."""
    from harness.results import load_records

    root = Path(results)
    done = done_keys(load_records(root)) if root.is_dir() else set()
    pending, finished, unresolved = [], [], {}
    for cell in cells:
        try:
            ident = identify(cell)
        except CpcbenchError as e:
            unresolved[cell] = " ".join(str(e).split())
            continue
        (finished if cell_key(cell, ident, overrides) in done else pending).append(cell)
    return pending, finished, unresolved


# ---------------------------------------------------------------------------------------------- running
def run_cell(cell: Cell, results: str | Path, runs: str | Path | None = None,
             overrides: EvalOverrides = EvalOverrides()) -> str:
    """Evaluate one cell through ``harness.evaluate`` (one seed); returns the record's path."""
    from harness.evaluate import evaluate

    cfg = EvalConfig.of(overrides, backbone=cell.backbone, task=cell.task, protocol=cell.protocol, seeds=1,
                        first_seed=cell.seed, fraction=cell.fraction, limit=cell.limit)
    return str(evaluate(cfg, results_root=results, runs_root=runs)["_path"])


Runner = Callable[[Cell, str, "str | None", EvalOverrides], Any]


def run_local(cells: Sequence[Cell], results: str | Path, runs: str | Path | None = None,
              overrides: EvalOverrides = EvalOverrides(), runner: Runner | None = None, fail_fast: bool = False,
              progress: bool = True) -> tuple[list[Cell], list[tuple[Cell, str]]]:
    """Run ``cells`` here, one after another. Returns (ran, failed). KeyboardInterrupt stops the sweep; the
    records of finished cells stay, so re-running the sweep continues where it stopped."""
    runner = runner or run_cell
    ran: list[Cell] = []
    failed: list[tuple[Cell, str]] = []
    bar = _progress(len(cells)) if progress else None
    old = os.environ.get("CPCBENCH_NO_PROGRESS")
    os.environ["CPCBENCH_NO_PROGRESS"] = "1"  # one live display at a time: the sweep's bar, not the loop's
    try:
        for i, cell in enumerate(cells):
            if bar is not None:
                bar.update(bar.task_ids[0], description=f"sweep: {cell.label}", completed=i)
            t0 = time.perf_counter()
            try:
                runner(cell, str(results), None if runs is None else str(runs), overrides)
            except Exception as e:  # noqa: BLE001  (one failing cell must not lose the others; reported below)
                msg = " ".join(str(e).split()) or type(e).__name__
                log.error("cell failed: %s: %s", cell.label, msg)
                log.debug("%s", traceback.format_exc())
                failed.append((cell, msg))
                if fail_fast:
                    break
                continue
            ran.append(cell)
            log.info("cell done in %.1f s: %s", time.perf_counter() - t0, cell.label)
        if bar is not None:
            bar.update(bar.task_ids[0], completed=len(ran) + len(failed), description="sweep")
    finally:
        if old is None:
            os.environ.pop("CPCBENCH_NO_PROGRESS", None)
        else:
            os.environ["CPCBENCH_NO_PROGRESS"] = old
        if bar is not None:
            bar.stop()
    return ran, failed


def _progress(total: int) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        return None
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=console)
    bar.add_task("sweep", total=total)
    bar.start()
    return bar


def _job(cell: Cell, results: str, runs: str | None, overrides: EvalOverrides, runner: Runner | None) -> str:
    """What one array job runs (module level so that submitit can pickle it)."""
    return (runner or run_cell)(cell, results, runs, overrides)


def make_executor(folder: str | Path, recipe: SlurmRecipe, cluster: str | None = "slurm") -> Any:
    """A submitit ``AutoExecutor`` with the recipe's resources (slurm_* keys only on a slurm cluster)."""
    import submitit

    ex = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    params: dict[str, Any] = {"timeout_min": recipe.timeout_min, "cpus_per_task": recipe.cpus,
                              "gpus_per_node": recipe.gpus, "mem_gb": recipe.mem_gb, "tasks_per_node": 1,
                              "nodes": 1, "name": "cpcbench-sweep"}
    if ex.cluster == "slurm":
        params["slurm_array_parallelism"] = recipe.array_parallelism
        for key, value in (("slurm_partition", recipe.partition), ("slurm_account", recipe.account),
                           ("slurm_qos", recipe.qos), ("slurm_constraint", recipe.constraint)):
            if value:
                params[key] = value
        if recipe.setup:
            params["slurm_setup"] = list(recipe.setup)
    ex.update_parameters(**params)
    return ex


def submit_slurm(cells: Sequence[Cell], results: str | Path, folder: str | Path, recipe: SlurmRecipe,
                 runs: str | Path | None = None, overrides: EvalOverrides = EvalOverrides(),
                 runner: Runner | None = None, cluster: str | None = "slurm", wait: bool = False,
                 ) -> tuple[list[str], list[tuple[Cell, str]]]:
    """Submit ``cells`` as one job array. Returns (job ids, failures if ``wait``)."""
    results = str(Path(results).resolve())
    runs = None if runs is None else str(Path(runs).resolve())
    try:
        ex = make_executor(folder, recipe, cluster)
    except RuntimeError as e:  # submitit: no srun/sbatch here
        raise CpcbenchError(f"cannot submit to {cluster}: {e}; run on the cluster's login node, or use "
                            "--launcher local") from None
    n = len(cells)
    jobs = ex.map_array(_job, list(cells), [results] * n, [runs] * n, [overrides] * n, [runner] * n)
    ids = [str(j.job_id) for j in jobs]
    log.info("submitted %d cell(s) as job array %s (logs in %s)", n, ids[0].split("_")[0] if ids else "-", folder)
    failed: list[tuple[Cell, str]] = []
    if wait:
        for cell, job in zip(cells, jobs, strict=True):
            try:
                job.result()
            except Exception as e:  # noqa: BLE001  (submitit re-raises the job's error; collect and report)
                failed.append((cell, " ".join(str(e).split())[-500:]))
    return ids, failed


def sweep(cells: Sequence[Cell], results: str | Path, *, launcher: str = "local", runs: str | Path | None = None,
          overrides: EvalOverrides = EvalOverrides(), identify: Callable[[Cell], Identity] | None = None,
          runner: Runner | None = None, fail_fast: bool = False, progress: bool = True,
          recipe: SlurmRecipe | None = None, folder: str | Path | None = None, cluster: str | None = None,
          wait: bool = False, dry_run: bool = False) -> SweepReport:
    """Run (or, with ``dry_run``, only plan) the cells that ``results`` does not hold yet."""
    t0 = time.perf_counter()
    identify = identify or RegistryIdentifier(overrides.img_size, overrides.data_root)
    pending, finished, unresolved = split_done(cells, results, identify, overrides)
    report = SweepReport(list(cells), pending=pending, skipped=finished, unresolved=unresolved)
    if unresolved and not dry_run:
        pairs = dict.fromkeys((c.backbone, c.task) for c in unresolved)
        first = next(iter(unresolved.values()))
        raise CpcbenchError(f"cannot resolve {len(pairs)} backbone/task pair(s) of the sweep "
                            f"({', '.join(f'{b} for {t}' for b, t in list(pairs)[:6])}); first: {first}")
    log.info("sweep: %d cell(s), %d already in %s, %d to run", len(cells), len(finished), results, len(pending))
    if dry_run or not pending:
        report.wall_time_s = time.perf_counter() - t0
        return report
    if launcher == "local":
        report.ran, report.failed = run_local(pending, results, runs, overrides, runner, fail_fast, progress)
    elif launcher == "slurm":
        folder = folder or Path(os.environ.get("CPCBENCH_RUNS", "runs")) / "sweeps" / "submitit"
        report.jobs, report.failed = submit_slurm(pending, results, folder, recipe or SlurmRecipe(), runs, overrides,
                                                  runner, cluster or "slurm", wait)
        if wait:
            bad = {c for c, _ in report.failed}
            report.ran = [c for c in pending if c not in bad]
    else:
        raise CpcbenchError(f"unknown launcher {launcher!r}; use local or slurm")
    report.wall_time_s = time.perf_counter() - t0
    return report
