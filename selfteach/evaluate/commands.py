"""`selfteach eval accuracy` (and `eval anytime`, registered from anytime_commands)."""

from __future__ import annotations

import importlib
from pathlib import Path

import typer
from rich.console import Console

from selfteach.backends.served import SERVE_HELP
from selfteach.data.loaders import parse_field_map
from selfteach.report.console import render_summary


def register(app: typer.Typer) -> None:
    from selfteach.cli import eval_app

    @eval_app.command("accuracy")
    def accuracy_cmd(
        model: str = typer.Option("smollm2-135m", help="alias, directory, .gguf, hub id, or server URL"),
        data: str = typer.Option("builtin:arithmetic", help="JSONL/parquet/dataset dir, or builtin:arithmetic"),
        limit: int | None = typer.Option(None, min=1, help="first N problems"),
        samples: int = typer.Option(1, min=1, help="k samples per problem (pass@k, maj@k)"),
        temperature: float = typer.Option(0.0, min=0.0, help="0 = greedy (0.7 is used if samples > 1 and this is 0)"),
        top_p: float = typer.Option(1.0, min=0.0, max=1.0),
        max_new_tokens: int = typer.Option(256, min=1),
        batch_size: int = typer.Option(8, min=1),
        seed: int = typer.Option(0),
        field: list[str] = typer.Option([], help="field mapping, e.g. question=Body+Question (repeatable)"),
        out: Path = typer.Option(Path("runs/accuracy"), help="run directory"),
        resume: bool = typer.Option(False, help="continue an interrupted run in --out"),
        serve: bool = typer.Option(False, "--serve", help=SERVE_HELP),
    ) -> None:
        """Accuracy, pass@k and maj@k with bootstrap 95% intervals; per-item outputs in OUT."""
        from selfteach.evaluate.accuracy import AccuracyConfig, run_accuracy, summary_tables

        config = AccuracyConfig(model=model, data=data, limit=limit, samples=samples, temperature=temperature,
                                top_p=top_p, max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed,
                                fields=parse_field_map(field), serve=serve)
        result = run_accuracy(config, out, resume=resume)
        render_summary(summary_tables(config, result))
        Console().print(f"run directory: {out}")

    try:
        anytime = importlib.import_module("selfteach.evaluate.anytime_commands")
    except ModuleNotFoundError as e:
        if e.name != "selfteach.evaluate.anytime_commands":
            raise
    else:
        anytime.register(app)
