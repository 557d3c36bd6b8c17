"""The `selfteach` command line: demo, models, elicit, improve, train, judge, eval, report.

The command table below is the whole tree: each method package defines its commands (and
sub-apps) in its `commands.py`, with options generated from its config by
`selfteach.cliconfig`; nothing is loaded by name and no error is swallowed, so a broken
command group fails at import (and in the tests). A `SelfteachError` (bad input) prints
one line and exits 2; Ctrl-C exits 130 without a traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer._click.exceptions import (
    ClickException,
    NoArgsIsHelpError,
    UsageError,
)  # typer vendors click

from selfteach.demo import demo
from selfteach.elicit.commands import elicit
from selfteach.errors import SelfteachError
from selfteach.evaluate.commands import eval_app
from selfteach.improve.commands import improve
from selfteach.judge.commands import judge_app
from selfteach.report.commands import report
from selfteach.train.commands import train_app

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Improve a language model with its own signals, and measure whether it worked.",
)
console = Console(stderr=True)


def models() -> None:
    """List the model aliases (usable wherever --model is taken)."""
    from selfteach.backends.models import ALIASES

    table = Table(
        title="model aliases (also: a local directory, a .gguf file, a hub id, or an http URL "
        "of an OpenAI-compatible server)"
    )
    for col in ("alias", "model", "size", "license", "weights from"):
        table.add_column(col)
    for a in ALIASES.values():
        table.add_row(a.name, a.description, a.size, a.license, a.source)
    Console().print(table)


# ---- the command table ------------------------------------------------------------------
COMMANDS = {"demo": demo, "models": models, "elicit": elicit, "improve": improve, "report": report}
GROUPS = {"eval": eval_app, "train": train_app, "judge": judge_app}
for _name, _body in COMMANDS.items():
    app.command(_name)(_body)
for _name, _group in GROUPS.items():
    app.add_typer(_group, name=_name)

_BUILT: list[Any] = []


def _command() -> Any:
    """The click command tree, built once (building it costs ~45 ms, which a test running
    hundreds of commands in-process would pay each time)."""
    if not _BUILT:
        _BUILT.append(typer.main.get_command(app))
    return _BUILT[0]


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _usage_message(e: Any) -> str:
    """One line for a click usage error, naming the option and the value given when known
    (typer validates option values with pydantic and chains its error)."""
    from pydantic import ValidationError

    from selfteach.validate import config_error

    param, cause = getattr(e, "param", None), e.__cause__
    where = f" (see {e.ctx.command_path} --help)" if getattr(e, "ctx", None) else ""
    if param is not None and isinstance(cause, ValidationError):
        name = max(param.opts, key=len) if param.opts else param.name
        return _one_line(config_error(cause, {"": name}).args[0]) + where
    return _one_line(e.format_message()) + where


def _empty_values(argv: list[str]) -> None:
    """An empty path or model (`--out ''`) would silently mean the current directory."""
    for i, arg in enumerate(argv):
        name, eq, value = arg.partition("=")
        if name in _NON_EMPTY and (
            eq and not value.strip() or not eq and i + 1 < len(argv) and not argv[i + 1].strip()
        ):
            raise SelfteachError(f"{name} '': empty; give a value (see --help)")


_NON_EMPTY = {
    "--out",
    "--data",
    "--model",
    "--claims",
    "--pairs",
    "--problems",
    "--judgments",
    "--from-run",
    "--label-model",
    "--eval-problems",
    "--icm-model",
    "--backbone",
    "--meta-rm",
    "--prompts",
}


def run(argv: list[str] | None = None) -> int:
    """Run the CLI on `argv` (default sys.argv[1:]) and return the exit code. Bad input of
    any kind (a SelfteachError, a config ValidationError, a click usage error) prints one
    line on stderr and returns 2; Ctrl-C returns 130. Never a traceback for these."""
    from pydantic import ValidationError

    from selfteach.validate import config_error

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    command = _command()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        try:
            _empty_values(argv)
            rv = command.main(args=argv, prog_name="selfteach", standalone_mode=False)
        except ValidationError as e:
            raise config_error(e) from None
        except RecursionError:
            raise SelfteachError("input nested too deeply to process") from None
    except SelfteachError as e:
        console.print("[red]error:[/red] " + escape(_one_line(e)), highlight=False, soft_wrap=True)
        return e.exit_code
    except NoArgsIsHelpError:  # typer has printed the help
        return 2
    except UsageError as e:
        console.print(
            "[red]error:[/red] " + escape(_usage_message(e)), highlight=False, soft_wrap=True
        )
        return e.exit_code
    except ClickException as e:
        console.print(
            "[red]error:[/red] " + escape(_one_line(e.format_message())),
            highlight=False,
            soft_wrap=True,
        )
        return e.exit_code
    except (KeyboardInterrupt, typer.Abort):
        console.print("interrupted; rerun with --resume to continue")
        return 130
    return rv if isinstance(rv, int) else 0


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    # `python -m selfteach.cli`: run the package module's app, the one whose sub-apps (judge, eval,
    # train) the command modules fill; this __main__ copy's sub-apps stay empty
    from selfteach.cli import main as package_main

    package_main()
