"""`selfteach eval accuracy | anytime`: options generated from AccuracyConfig / AnytimeConfig."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from selfteach.cliconfig import RESUME, config_command, out_option
from selfteach.evaluate.accuracy import AccuracyConfig
from selfteach.evaluate.anytime_commands import anytime

eval_app = typer.Typer(no_args_is_help=True, help="Evaluate a model: accuracy, anytime curves.")


@eval_app.command("accuracy")
@config_command(AccuracyConfig, options=[out_option("runs/accuracy"), RESUME], server=True)
def accuracy(config: AccuracyConfig, out: Path, resume: bool) -> None:
    """Accuracy, pass@k and maj@k with bootstrap 95% intervals; per-item outputs in OUT."""
    from selfteach.evaluate.accuracy import run_accuracy, summary_tables
    from selfteach.report.console import render_summary

    result = run_accuracy(config, out, resume=resume)
    render_summary(summary_tables(config, result))
    Console().print(f"run directory: {out}")


eval_app.command("anytime")(anytime)
