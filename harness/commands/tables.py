"""``cpcbench tables``: regenerate the comparable tables, plots and the HTML leaderboard from result records."""

from __future__ import annotations

from pathlib import Path

import typer

from harness.cli_util import emit_json, user_errors


def register(app: typer.Typer) -> None:
    @app.command("tables", epilog="Examples:  cpcbench tables  |  cpcbench tables --paper  |  "
                                  "cpcbench tables --paper --results results/ --out /tmp/lb")
    @user_errors
    def tables(
        paper: bool = typer.Option(False, "--paper", help="Also the paper's table layouts (the specs in --specs), "
                                                          "with published reference numbers where a spec asks."),
        out: Path = typer.Option(Path("leaderboards"), "--out", help="Where the tables, plots and index.html go."),
        results: Path = typer.Option(Path("results"), "--results", help="Directory of result records."),
        specs: Path = typer.Option(Path("leaderboards/specs"), "--specs", help="Table specs (YAML) for --paper."),
        published: Path = typer.Option(Path("leaderboards/published.yaml"), "--published",
                                       help="Published reference numbers (with citations) that specs may ask for."),
        include_smoke: bool = typer.Option(False, "--include-smoke",
                                           help="Also tabulate --limit smoke runs, in their own tables labelled "
                                                "SMOKE RUN (never in the paper tables)."),
        json_out: bool = typer.Option(False, "--json", help="Print the written files as JSON."),
    ) -> None:
        """Turn the records in results/ into Markdown/CSV/LaTeX tables, PNG plots and one HTML page.

        Cells pool the per-seed values of records with the same task, task version, protocol and fraction;
        smoke runs never enter a table. The output is a pure function of the records (byte for byte).
        """
        from harness.leaderboard import generate

        board = generate(results, out, paper=paper, specs_dir=specs, published_path=published,
                         include_smoke=include_smoke)
        if json_out:
            emit_json({"tables": [t.name for t in board.tables], "files": [str(p) for p in board.files]})
            return
        from rich.console import Console

        con = Console()
        for line in board.summary:
            con.print(line)
        from harness.table_render import to_rich

        for v in board.views:
            if v.name.startswith("main-"):
                con.print(to_rich(v))
        con.print(f"wrote {len(board.tables)} table(s) x (md, csv, tex), {len(board.plots)} plot(s) and "
                  f"{out / 'index.html'}")
