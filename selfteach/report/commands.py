"""`selfteach report RUN [--compare RUN ...]`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from selfteach.cliconfig import checked


@checked("selfteach report")
def report(
    run: Path = typer.Argument(..., help="run directory"),
    compare: list[Path] = typer.Option(
        [], "--compare", help="more run directories to compare with RUN"
    ),
    out: Path | None = typer.Option(
        None, help="output HTML (default RUN/report.html or runs/compare.html)"
    ),
) -> None:
    """Write an HTML report of a run (tables, plots, config, versions), or compare runs."""
    from selfteach.report.html import write_report

    runs = [run, *compare]
    extra = []
    if compare and all(
        (r / "anytime.json").exists() for r in runs
    ):  # anytime runs: curves in one plot
        from selfteach.evaluate.anytime import compare_plot

        png = (out.parent if out else Path("runs")) / "compare_anytime.png"
        extra.append(compare_plot([*runs], png))
    path = write_report(runs, out, extra)
    Console().print(f"report: {path}")
