"""Write the whole leaderboard: every table as Markdown, CSV and LaTeX, plots, a README and one HTML page.

``write_leaderboard(results, out, paper=...)`` is what ``cpcbench tables`` runs. Layout of ``out``::

    out/README.md                    every table in Markdown (GitHub shows it when browsing the folder)
    out/index.html                   one self-contained page: tables + plots inline (harness.html)
    out/tables/<name>.md|.csv|.tex   each table in three formats (CSV in long form: one line per cell)
    out/plots/<name>*.png            per-task bars with std error bars; data-efficiency curves

Every generated file is a pure function of the records (no timestamps, stable ordering, fixed float
formatting), so deleting them and re-running regenerates them byte for byte. Generated files in
``tables/`` and ``plots/`` that the current run did not write (a table that no longer exists) are removed;
inputs (``specs/``, ``published.yaml``) are never touched.

Each table is laid out once (``harness.table_view``) and written by the renderers of ``harness.table_render``;
the CSV (here) is the long-form data behind the cells, one line per cell at full precision.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import CpcbenchError
from core.io import atomic_write_bytes
from harness import plots as P
from harness import tables as T
from harness.html import page
from harness.results import load_records
from harness.table_curves import learning_tables, probes_table
from harness.table_render import GENERATED_NOTE, to_latex, to_markdown
from harness.table_view import TableView, table_view
from harness.tables import Table, TableError

log = logging.getLogger("cpcbench.tables")


# ---------------------------------------------------------------------------------------------- CSV
CSV_FIELDS = ("table", "row", "source", "backbone", "weights_sha256", "task", "task_version", "task_protocol",
              "protocol", "fraction", "limit", "metric", "unit", "higher_is_better", "mean", "std", "n_seeds",
              "seeds", "per_seed", "best", "worse_than_best", "p_value", "beats_baseline", "baseline_p",
              "beats_random_init", "random_init_p", "citation")


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.10g}"


def to_csv(table: Table) -> str:
    """Long form: one line per filled cell, full precision (10 significant digits): ``worse_than_best`` is the †
    of the rendered tables, ``beats_baseline`` the ‡ (a baseline row lists the per-seed values it was tested with),
    ``beats_random_init`` the §.
    A learning-curve table adds each row's pretraining step and FLOPs."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    learning = table.plot == "learning"
    w.writerow(CSV_FIELDS + (("pretrain_step", "pretrain_flops") if learning else ()))
    for row in table.rows:
        for c, col in zip(row.cells, table.columns, strict=True):
            if c is None:
                continue
            k = col.key
            w.writerow([table.name, row.label, row.source, row.backbone, c.weights_sha256 or row.weights_sha256,
                        k.task, k.version, k.task_protocol, k.protocol, f"{k.fraction:g}" if col.measured else "",
                        "" if k.limit is None else k.limit, k.metric, col.unit, str(col.higher_is_better).lower(),
                        _num(c.mean), _num(c.std), c.n if c.per_seed else "",
                        " ".join(str(s) for s in c.per_seed), " ".join(_num(v) for v in c.per_seed.values()),
                        str(c.best).lower(), str(c.worse).lower(), _num(c.p_value),
                        str(c.beats_baseline).lower(), _num(c.baseline_p), str(c.beats_random_init).lower(),
                        _num(c.random_init_p), row.citation]
                       + ([("" if row.step is None else row.step), _num(row.flops)] if learning else []))
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------- writing
@dataclass
class Leaderboard:
    tables: list[Table]
    plots: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG bytes
    plot_index: dict[str, list[str]] = field(default_factory=dict)  # table name -> its plot file names
    summary: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    views: list[TableView] = field(init=False)  # each table laid out once, for every format

    def __post_init__(self) -> None:
        self.views = [table_view(t) for t in self.tables]


def build_leaderboard(records: Sequence[Mapping[str, Any]], paper: bool = False, specs_dir: str | Path | None = None,
                      published_path: str | Path | None = None, include_smoke: bool = False,
                      plots: bool = True) -> Leaderboard:
    """Tables (+ PNGs) for ``records``: the main tables and, with ``paper``, one table per spec."""
    full, smoke = T.split_records(records)
    if not full and not (include_smoke and smoke):
        if smoke:
            raise TableError(f"all {len(smoke)} result records are smoke runs (--limit): they never enter a table; "
                             "run cpcbench eval/sweep without --limit (or pass --include-smoke for a labelled preview)")
        raise TableError("no result records to tabulate; run `cpcbench eval --backbone NAME --task NAME` or "
                         "`cpcbench sweep ...` first (or point --results at the records)")
    tables = T.main_tables(records, include_smoke=include_smoke)
    probes = probes_table(records)
    tables += ([probes] if probes is not None else []) + learning_tables(records)
    if paper:
        if specs_dir is None:
            raise TableError("--paper needs the spec directory (--specs)")
        published = T.load_published(published_path) if published_path and Path(published_path).exists() else {}
        specs = T.load_specs(specs_dir)
        if any(s.published for s in specs) and not published:
            raise TableError(f"table specs ask for published numbers but {published_path} is missing")
        tables += [T.spec_table(s, records, published) for s in specs]
    board = Leaderboard(tables)
    commits = sorted({str(r["git_commit"]) for r in full})
    board.summary.append(f"{len(full)} result record(s) from {len(commits)} git commit(s)"
                         + (f" ({', '.join(c[:12] for c in commits[:5])}{', ...' if len(commits) > 5 else ''})"
                            if commits else "") + ".")
    if smoke:
        board.summary.append(f"{len(smoke)} smoke record(s) (--limit runs) "
                             + ("shown only in tables labelled SMOKE RUN." if include_smoke else "excluded."))
    if plots:
        for t in tables:
            files = P.table_plots(t)
            board.plots.update(files)
            board.plot_index[t.name] = sorted(files)
    return board


def readme_markdown(board: Leaderboard) -> str:
    lines = ["# cpcbench leaderboard", "", GENERATED_NOTE, ""]
    for line in board.summary:
        lines += [line, ""]
    lines += [f"- [{t.title}](#{t.name}) ([md](tables/{t.name}.md), [csv](tables/{t.name}.csv), "
              f"[tex](tables/{t.name}.tex))" for t in board.tables]
    lines.append("")
    for v in board.views:
        lines += [f'<a id="{v.name}"></a>', "", to_markdown(v, level=2)]
        lines += [f"![{p}](plots/{p})" for p in board.plot_index.get(v.name, [])]
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def write_leaderboard(board: Leaderboard, out: str | Path) -> list[Path]:
    """Write every file of ``board`` under ``out``; remove stale generated tables/plots. Returns the paths."""
    out = Path(out)
    files: dict[Path, bytes] = {}
    for t, v in zip(board.tables, board.views, strict=True):
        files[out / "tables" / f"{t.name}.md"] = to_markdown(v).encode("utf-8")
        files[out / "tables" / f"{t.name}.csv"] = to_csv(t).encode("utf-8")
        files[out / "tables" / f"{t.name}.tex"] = to_latex(v).encode("utf-8")
    for name, data in board.plots.items():
        files[out / "plots" / name] = data
    files[out / "README.md"] = readme_markdown(board).encode("utf-8")
    files[out / "index.html"] = page(board.views, board.summary, board.plots, board.plot_index).encode("utf-8")
    for path, data in sorted(files.items()):
        if not (path.exists() and path.read_bytes() == data):
            atomic_write_bytes(path, data)
    for sub, exts in (("tables", (".md", ".csv", ".tex")), ("plots", (".png",))):
        for stale in sorted((out / sub).glob("*")) if (out / sub).is_dir() else []:
            if stale.suffix in exts and stale not in files:
                log.info("removing stale %s", stale)
                stale.unlink()
    board.files = sorted(files)
    return board.files


def generate(results: str | Path, out: str | Path, paper: bool = False, specs_dir: str | Path | None = None,
             published_path: str | Path | None = None, include_smoke: bool = False, plots: bool = True,
             load: Callable[[str | Path], list[dict[str, Any]]] | None = None) -> Leaderboard:
    """Load the records under ``results`` and write the leaderboard into ``out``."""
    root = Path(results)
    if not root.is_dir():
        raise CpcbenchError(f"results directory {root} not found; run `cpcbench eval` or `cpcbench sweep` first, "
                            "or pass --results DIR")
    records = (load or load_records)(root)
    board = build_leaderboard(records, paper=paper, specs_dir=specs_dir, published_path=published_path,
                              include_smoke=include_smoke, plots=plots)
    write_leaderboard(board, out)
    return board
