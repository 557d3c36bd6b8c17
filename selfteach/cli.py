"""The `selfteach` command line: demo, models, elicit, improve, train, judge, eval, report.

Each method package contributes its commands through a `commands.py` with a
`register(app)` function, so this file stays a table of contents. A `SelfteachError`
(bad input) prints one line and exits 2; Ctrl-C exits 130 without a traceback.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from selfteach.errors import SelfteachError

try:  # typer >= 0.26 vendors click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException, NoArgsIsHelpError, UsageError

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


def _guard(t: typer.Typer, path: str) -> None:
    """Wrap every registered command so that, whoever invokes the app (`run`, typer's
    CliRunner), `--out` and model specs are checked before its body runs
    (selfteach.validate.check_params) and a config ValidationError becomes one
    "--option value: reason" SelfteachError (selfteach.validate.config_error)."""
    for info in t.registered_commands:
        body = info.callback
        if body is None or getattr(body, "_guarded", False):
            continue
        name = info.name or body.__name__.replace("_", "-")
        info.callback = _guarded(body, f"{path} {name}")
    for group in t.registered_groups:
        _guard(group.typer_instance, f"{path} {group.name}")


def _guarded(body, path: str):
    def checked(*args, **kwargs):
        from pydantic import ValidationError

        from selfteach.validate import check_params, config_error

        check_params(path, kwargs)
        try:
            return body(*args, **kwargs)
        except ValidationError as e:
            raise config_error(e) from None

    checked._guarded = True  # type: ignore[attr-defined]
    return functools.update_wrapper(checked, body)


_guard(app, "selfteach")

_BUILT: dict[int, object] = {}


def _command():
    """The click command tree, built once per set of registered commands (building it
    costs ~45 ms, which a test running hundreds of commands in-process would pay each time)."""
    def size(t: typer.Typer) -> int:
        return len(t.registered_commands) + sum(1 + size(g.typer_instance) for g in t.registered_groups)

    key = size(app)
    if key not in _BUILT:
        _BUILT.clear()
        _guard(app, "selfteach")
        _BUILT[key] = typer.main.get_command(app)
    return _BUILT[key]


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _usage_message(e: Exception) -> str:
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
        if name in _NON_EMPTY and (eq and not value.strip() or not eq and i + 1 < len(argv)
                                   and not argv[i + 1].strip()):
            raise SelfteachError(f"{name} '': empty; give a value (see --help)")


_NON_EMPTY = {"--out", "--data", "--model", "--claims", "--pairs", "--problems", "--judgments", "--from-run",
              "--label-model", "--eval-problems", "--icm-model", "--backbone", "--meta-rm", "--prompts"}


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
        console.print("[red]error:[/red] " + escape(_usage_message(e)), highlight=False, soft_wrap=True)
        return e.exit_code
    except ClickException as e:
        console.print("[red]error:[/red] " + escape(_one_line(e.format_message())), highlight=False,
                      soft_wrap=True)
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
