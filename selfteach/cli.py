"""The `selfteach` command line: demo, models, elicit, improve, train, judge, eval, report.

Each method package contributes its commands through a `commands.py` with a
`register(app)` function, so this file stays a table of contents. A `SelfteachError`
(bad input) prints one line and exits 2; Ctrl-C exits 130 without a traceback.
"""

from __future__ import annotations

import importlib
import os
import sys

import typer
from rich.console import Console
from rich.table import Table

from selfteach.errors import SelfteachError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Improve a language model with its own signals, and measure whether it worked.")
eval_app = typer.Typer(no_args_is_help=True, help="Evaluate a model: accuracy, anytime curves.")
train_app = typer.Typer(no_args_is_help=True, help="Train: sft (DEFT family), dpo, grpo.")
judge_app = typer.Typer(no_args_is_help=True, help="Generative reward model (SPCT): judge, eval, rft-data, train-meta.")
app.add_typer(eval_app, name="eval")
app.add_typer(train_app, name="train")
app.add_typer(judge_app, name="judge")
console = Console(stderr=True)

# Modules that add commands; a missing one (work in progress) is skipped.
COMMAND_MODULES = [
    "selfteach.evaluate.commands",
    "selfteach.elicit.commands",
    "selfteach.improve.commands",
    "selfteach.train.commands",
    "selfteach.judge.commands",
    "selfteach.report.commands",
    "selfteach.demo",
]


@app.command()
def models() -> None:
    """List the model aliases (usable wherever --model is taken)."""
    from selfteach.backends.models import ALIASES

    table = Table(title="model aliases (also: a local directory, a .gguf file, a hub id, or an http URL of an "
                        "OpenAI-compatible server)")
    for col in ("alias", "model", "size", "license", "weights from"):
        table.add_column(col)
    for a in ALIASES.values():
        table.add_row(a.name, a.description, a.size, a.license, a.source)
    Console().print(table)


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            importlib.import_module(name).register(app)
        except ModuleNotFoundError as e:
            if e.name != name:
                _warn_broken(name, e)
        except Exception as e:  # one broken command group must not take the whole CLI down
            _warn_broken(name, e)


def _warn_broken(name: str, e: Exception) -> None:
    console.print(f"[yellow]warning:[/yellow] commands from {name} unavailable: {type(e).__name__}: {e}")


_register_all()


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app()
    except SelfteachError as e:
        console.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        console.print("interrupted; rerun with --resume to continue")
        sys.exit(130)


if __name__ == "__main__":
    main()
