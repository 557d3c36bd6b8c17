"""Command-line options generated from a command's pydantic config (TRL's `TrlParser`
idea on typer): each default, help text and choice list lives once, on the config field.

`config_command(Config, ...)` turns `def body(config: Config, out, resume, ...)` into a
typer command whose options are

- one per config field: `learning_rate` -> `--learning-rate` (or a name from `names`),
  `bool` -> `--x/--no-x`, `Literal` -> a choice, a list of numbers -> "a,b,c", a
  `dict[str, str]` field map -> repeatable `--field T=S`; the help is the field's
  description and the default shown is the field's default (or the command's override);
- the command-only options passed in `options` (`--out`, `--resume`, ... declared once
  below), and `--request-timeout` / `--max-retries` with `server=True`;
- `--config FILE`: replay a run. FILE is the `config.yaml` a run directory holds (or the
  directory itself, or any YAML of these settings); flags given on the command line
  override it. An unknown key or a bad value is one line naming the file, line and key.

Before the body runs, `--out` and every model spec are checked (selfteach.validate), the
config is built (a bad value is one "--option value: reason" line) and the server
options are applied.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import typer
from pydantic import BaseModel, TypeAdapter, ValidationError
from typer._click.core import ParameterSource  # typer vendors click
from typer._click.exceptions import UsageError

from selfteach.errors import SelfteachError

# help panels, in the order they print
MODEL, DATA, METHOD, RUN, SERVER = "Model", "Data", "Method", "Run", "Server"
_PANELS = {
    "model": MODEL,
    "backend": MODEL,
    "serve": MODEL,
    "label_model": MODEL,
    "backbone": MODEL,
    "icm_model": MODEL,
    "data": DATA,
    "fields": DATA,
    "limit": DATA,
    "problems": DATA,
    "claims": DATA,
    "task": DATA,
    "eval_problems": DATA,
    "train_size": DATA,
    "eval_size": DATA,
    "pairs": DATA,
    "judgments": DATA,
    "from_run": DATA,
}
# config fields whose option is not `--` + the name with dashes, in every command
NAMES = {"fields": "--field", "learning_rate": "--lr"}


@dataclass(frozen=True)
class Opt:
    """A command-only option (not a config field). With a `key`, the command writes it to
    config.yaml, so `--config` may set it too."""

    name: str
    annotation: Any
    default: Any
    help: str
    flags: tuple[str, ...] = ()
    panel: str = RUN
    key: str | None = None  # its key in config.yaml, when the command records it there
    metavar: str | None = None

    def but(self, **changes: Any) -> Opt:
        return dataclasses.replace(self, **changes)


def out_option(default: str | None, help: str = "run directory") -> Opt:
    return Opt("out", Path, ... if default is None else Path(default), help)


RESUME = Opt("resume", bool, False, "continue an interrupted run in --out", ("--resume",))
PROGRESS = Opt("progress", bool, True, "show progress bars", ("--progress/--no-progress",))


def server_opts() -> list[Opt]:
    from selfteach.backends.options import SERVER_OPTIONS

    return [Opt(name, ann, None, text, (flag,), SERVER) for name, flag, ann, text in SERVER_OPTIONS]


@dataclass
class _Field:
    """One config field on the command line."""

    key: str  # dotted path in the config, e.g. "dpo.beta"
    name: str  # python parameter name
    flag: str
    annotation: Any  # what typer parses
    default: Any  # in config form
    help: str
    parse: Callable[[Any], Any]  # command-line value -> config value
    shown: str | None = None  # default as shown in --help
    multiple: bool = False
    metavar: str | None = None


@dataclass
class CommandSpec:
    """Everything a generated command knows: its fields, command-only options and names."""

    model: type[BaseModel]
    fields: list[_Field]
    options: list[Opt]
    path: str = "selfteach"
    accepted: set[str] = field(default_factory=set)  # keys a --config file may set


def _strip_optional(ann: Any) -> tuple[Any, bool]:
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return ann, False


def _is_model(ann: Any) -> bool:
    return isinstance(ann, type) and issubclass(ann, BaseModel)


def comma_list(kind: type, flag: str) -> Callable[[str | None], list | None]:
    """Parse "a,b,c" into [kind(a), kind(b), kind(c)]; a bad item is one line naming the flag."""

    def parse(text: str | None) -> list | None:
        if text is None:
            return None
        try:
            items = [kind(x.strip()) for x in text.split(",") if x.strip()]
        except ValueError:
            example = {int: "32,64,128", float: "0.3,0.6,0.9"}.get(kind, "a,b")
            raise SelfteachError(
                f"{flag} {text!r}: expected comma-separated numbers, e.g. {example}"
            ) from None
        if not items:
            raise SelfteachError(f"{flag} {text!r}: empty; give comma-separated values")
        return items

    return parse


def key_values(flag: str) -> Callable[[list[str] | None], dict]:
    """["alpha=30", "scoring=exact"] -> {"alpha": 30, "scoring": "exact"} (values read as YAML)."""

    def parse(items: list[str] | None) -> dict:
        import yaml

        out = {}
        for item in items or []:
            k, eq, v = item.partition("=")
            if not eq or not k.strip():
                raise SelfteachError(f"{flag} {item!r}: expected KEY=VALUE, e.g. alpha=30")
            out[k.strip()] = yaml.safe_load(v)
        return out

    return parse


def _field_map(items: list[str] | None) -> dict[str, str]:
    from selfteach.data.loaders import parse_field_map

    return parse_field_map(items or [])


def _show(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, str):
        return value.encode("unicode_escape").decode()
    return str(value)


def short_help(description: str) -> str:
    """--help shows a field's description up to its first "; " outside parentheses (the
    whole text stays on the config field, the reference for library users)."""
    depth = 0
    for i, ch in enumerate(description):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0 and description.startswith("; ", i):
            return description[:i]
    return description


def _make_field(
    key: str, info: Any, default: Any, flag: str, parse: Callable | None, repeat: bool = False
) -> _Field | None:
    """The command-line form of one config field, or None for fields only a file sets
    (nested models such as ICM's prompt template)."""
    ann, optional = _strip_optional(info.annotation)
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    item = args[0] if args else None
    if typing.get_origin(item) is typing.Annotated:
        item = typing.get_args(item)[0]
    name = flag.lstrip("-").replace("-", "_")
    f = _Field(
        key,
        name,
        flag,
        info.annotation,
        default,
        short_help(info.description or ""),
        parse or (lambda v: v),
    )
    if parse is not None and not repeat:  # the command's own text form ("1,8,32", "\\n", ...)
        f.annotation = str | None
    elif repeat:  # a repeatable option; `parse` gets the list
        f.annotation, f.multiple = list[str] | None, True
    elif ann in (bool, int, float, str) or origin is Literal:
        f.annotation = ann | None if optional else ann
    elif origin is list and item in (int, float):
        f.annotation, f.parse = str | None, parse or comma_list(item, flag)
    elif origin is list and item is str:
        f.annotation, f.multiple = list[str] | None, True
        f.parse = parse or (lambda v: v or None)
    elif origin is dict:
        f.annotation, f.multiple = list[str] | None, True
        f.parse = parse or (_field_map if args == (str, str) else key_values(flag))
    else:
        return None
    escaped = isinstance(default, str) and ("\n" in default or "\t" in default)
    if isinstance(default, list) and default or escaped:
        f.shown = _show(default)  # "32,64,128", "\\n" escapes: as typed on the command line
    if f.multiple:
        f.metavar = (
            "TARGET=SOURCE" if args == (str, str) else "KEY=VALUE" if origin is dict else "TEXT"
        )
    elif f.annotation == str | None and isinstance(default, list) or origin is list:
        f.metavar = "A,B,..."
    return f


def command_fields(
    model: type[BaseModel],
    names: dict[str, str] | None = None,
    defaults: dict[str, Any] | None = None,
    exclude: tuple[str, ...] = (),
    parse: dict[str, Callable] | None = None,
    nested: dict[str, dict[str, str]] | None = None,
    repeat: tuple[str, ...] = (),
) -> list[_Field]:
    """The options of `model`'s fields: top-level fields, plus the sub-fields named in
    `nested` ({"dpo": {"beta": "--beta"}}) of nested-model fields. `parse` reads a field's
    own text form; for the fields in `repeat` the option repeats and `parse` gets the list."""
    names, defaults, parse = {**NAMES, **(names or {})}, defaults or {}, parse or {}
    out: list[_Field] = []
    for key, info in model.model_fields.items():
        if key in exclude:
            continue
        if key in (nested or {}):
            parent = info.get_default(call_default_factory=True)
            sub_model = type(parent)
            for sub, flag in nested[key].items():  # type: ignore[index]
                dotted = f"{key}.{sub}"
                f = _make_field(
                    dotted,
                    sub_model.model_fields[sub],
                    defaults.get(dotted, getattr(parent, sub)),
                    flag,
                    parse.get(dotted),
                )
                if f is not None:
                    out.append(f)
            continue
        default = defaults[key] if key in defaults else info.get_default(call_default_factory=True)
        f = _make_field(
            key,
            info,
            default,
            names.get(key, "--" + key.replace("_", "-")),
            parse.get(key),
            key in repeat,
        )
        if f is not None:
            out.append(f)
    return out


# ---- the generated signature -----------------------------------------------------------
def _panel(name: str) -> str:
    return _PANELS.get(name, METHOD)


def _typer_param(
    name: str,
    annotation: Any,
    default: Any,
    help: str,
    flags: tuple[str, ...],
    panel: str,
    shown: str | None = None,
    metavar: str | None = None,
) -> inspect.Parameter:
    if annotation is bool and not flags:
        flags = (f"--{name.replace('_', '-')}/--no-{name.replace('_', '-')}",)
    opt = typer.Option(
        default,
        *flags,
        help=help,
        rich_help_panel=panel,
        show_default=shown if shown is not None else True,
        metavar=metavar,
    )
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=opt
    )


def _parameters(spec: CommandSpec) -> list[inspect.Parameter]:
    """The typer parameters of a generated command. A required option is optional for
    click (a --config file may set it) and checked after the merge."""
    params = [
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
    ]
    for f in spec.fields:
        typed = f.default is not ... and (
            not f.multiple and f.annotation != str | None or isinstance(f.default, str)
        )
        flags = (
            (f"{f.flag}/--no-{f.flag.removeprefix('--')}",) if f.annotation is bool else (f.flag,)
        )
        ann = f.annotation | None if f.default is ... and not f.multiple else f.annotation
        params.append(
            _typer_param(
                f.name,
                ann,
                f.default if typed else None,
                _required(f.help, f.default),
                flags,
                _panel(f.key.split(".")[0]),
                f.shown,
                f.metavar,
            )
        )
    for o in spec.options:
        ann = o.annotation | None if o.default is ... else o.annotation
        params.append(
            _typer_param(
                o.name,
                ann,
                None if o.default is ... else o.default,
                _required(o.help, o.default),
                o.flags or (f"--{o.name.replace('_', '-')}",),
                _PANELS.get(o.key or o.name, o.panel) if o.panel == RUN else o.panel,
                metavar=o.metavar,
            )
        )
    params.append(
        _typer_param(
            "config_file",
            Path | None,
            None,
            "replay a run: its config.yaml (or the run "
            "directory, or any YAML of these settings); flags given here override it",
            ("--config",),
            RUN,
        )
    )
    return params


def _required(help: str, default: Any) -> str:
    return help + " [required]" if default is ... else help


def config_command(
    model: type[BaseModel],
    *,
    options: list[Opt] | tuple[Opt, ...] = (),
    server: bool = False,
    names: dict[str, str] | None = None,
    defaults: dict[str, Any] | None = None,
    exclude: tuple[str, ...] = (),
    parse: dict[str, Callable] | None = None,
    nested: dict[str, dict[str, str]] | None = None,
    repeat: tuple[str, ...] = (),
    path: str = "selfteach",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: `body(config, **command_options)` becomes a typer command whose options
    are generated from `model` (see the module docstring). Put it under `@app.command()`."""
    opts = list(options) + (server_opts() if server else [])

    def wrap(body: Callable[..., Any]) -> Callable[..., Any]:
        spec = CommandSpec(
            model,
            command_fields(model, names, defaults, exclude, parse, nested, repeat),
            opts,
            path,
        )
        spec.accepted = set(model.model_fields) | {o.key for o in opts if o.key}

        @functools.wraps(body)
        def command(ctx: typer.Context, **kwargs: Any) -> Any:
            return run_command(spec, body, ctx, kwargs)

        params = _parameters(spec)
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        command.spec = spec  # type: ignore[attr-defined]
        return command

    return wrap


# ---- running: file < flags, checks, config ---------------------------------------------
def _given(ctx: Any, name: str) -> bool:
    if ctx is None:
        return True
    source = ctx.get_parameter_source(name)
    return source is not None and source not in (
        ParameterSource.DEFAULT,
        ParameterSource.DEFAULT_MAP,
    )


def run_command(
    spec: CommandSpec, body: Callable[..., Any], ctx: Any, kwargs: dict[str, Any]
) -> Any:
    """Merge defaults < --config file < flags given, check, build the config, run `body`."""
    from selfteach.backends.options import server_settings
    from selfteach.validate import check_params, read_settings

    config_file = kwargs.pop("config_file", None)
    path = ctx.command_path if ctx is not None else spec.path
    settings, where = read_settings(config_file, spec.accepted, path) if config_file else ({}, {})
    origin = {key: f"{where[key]}: {key}" for key in settings}  # how an error names a key
    values: dict[str, Any] = {}
    for f in spec.fields:  # the command's own defaults, where they differ from the config's
        if f.default is not ... and not _is_default(spec.model, f):
            _set(spec.model, values, f.key, f.default)
    values.update({k: v for k, v in settings.items() if k in spec.model.model_fields})
    for f in spec.fields:
        raw = kwargs.pop(f.name)
        if _given(ctx, f.name):
            _set(spec.model, values, f.key, f.parse(raw))
            origin[f.key] = f.flag
    opt_values = {}
    for o in spec.options:
        if o.key is not None and o.key in settings and not _given(ctx, o.name):
            opt_values[o.name] = _check_type(o, settings[o.key], origin[o.key])
            kwargs.pop(o.name)
        else:
            opt_values[o.name] = kwargs.pop(o.name)
    missing = [
        o.flags[0] if o.flags else "--" + o.name.replace("_", "-")
        for o in spec.options
        if o.default is ... and opt_values[o.name] is None
    ]
    missing += [f.flag for f in spec.fields if f.default is ... and _get(values, f.key) is None]
    if missing:
        raise SelfteachError(
            f"missing option {missing[0]} (give it, or a --config file that sets it)"
        )
    server = {k: opt_values.pop(k) for k in ("request_timeout", "max_retries") if k in opt_values}
    shown_defaults = {f.key: f.default for f in spec.fields if "." not in f.key}
    check_params(path, {**shown_defaults, **values, **opt_values})
    config = _build(spec.model, values, origin, ctx)
    with server_settings(**server):
        return body(config, **opt_values)


def _get(values: dict[str, Any], dotted: str) -> Any:
    found: Any = values
    for part in dotted.split("."):
        found = found.get(part) if isinstance(found, dict) else getattr(found, part, None)
    return found


def _set(model: type[BaseModel], values: dict[str, Any], dotted: str, value: Any) -> None:
    """values[a][b] = value for "a.b"; a nested config starts from the command config's default."""
    top, _, sub = dotted.partition(".")
    if not sub:
        values[top] = value
        return
    if top not in values:
        values[top] = model.model_fields[top].get_default(call_default_factory=True)
    cur = values[top]
    values[top] = {
        **(cur.model_dump() if isinstance(cur, BaseModel) else dict(cur or {})),
        sub: value,
    }


def _build(
    model: type[BaseModel], values: dict[str, Any], origin: dict[str, str], ctx: Any
) -> BaseModel:
    """`model(**values)`; a bad value is a usage error (exit 2 however the command is
    invoked, as click's own) of one line naming its flag, or its file, line and key."""
    from selfteach.validate import config_error

    try:
        return model(**values)
    except ValidationError as e:
        loc = [
            str(x) for x in e.errors(include_url=False)[0].get("loc", ()) if not isinstance(x, int)
        ]
        dotted = ".".join(loc)
        for i in range(len(loc), 0, -1):
            known = origin.get(".".join(loc[:i]))
            if known:
                rest = "".join("." + p for p in loc[i:])
                line = config_error(
                    e, {dotted: known + rest if not known.startswith("--") else known}
                )
                raise UsageError(str(line), ctx) from None
        raise UsageError(str(config_error(e)), ctx) from None


def _is_default(model: type[BaseModel], f: _Field) -> bool:
    top, _, sub = f.key.partition(".")
    default = model.model_fields[top].get_default(call_default_factory=True)
    if sub:
        default = getattr(default, sub)
    return default == f.default


def _check_type(o: Opt, value: Any, where: str) -> Any:
    """A command-only setting read from a --config file, as the option's type."""
    try:
        return TypeAdapter(o.annotation).validate_python(value)
    except ValidationError as e:
        from selfteach.validate import config_error

        raise config_error(e, {"": where}) from None


def deferred_group(*commands: tuple[str, str, Callable[[], Callable[..., Any]]]) -> type:
    """A typer group class holding commands whose options are generated only when the
    command is used (its config module imports torch or TRL, which `selfteach --help` and
    every other command should not pay for). Each is (name, short help, builder)."""
    from typer.core import TyperCommand, TyperGroup

    class Deferred(TyperCommand):
        def __init__(self, name: str, short: str, build: Callable[[], Callable[..., Any]]):
            super().__init__(name, help=short, short_help=short, callback=None, params=[])
            self._build, self._built = build, False

        def _load(self) -> None:
            if not self._built:
                t = typer.Typer(add_completion=False)
                t.command(self.name)(self._build())
                real = typer.main.get_command(t)
                self.params, self.callback, self.help = real.params, real.callback, real.help
                self._built = True

        def get_params(self, ctx: Any) -> Any:
            self._load()
            return super().get_params(ctx)

        def invoke(self, ctx: Any) -> Any:
            self._load()
            return super().invoke(ctx)

    class Group(TyperGroup):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            for name, short, build in commands:
                self.add_command(Deferred(name, short, build))

    return Group


def checked(path: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """For a command without a config (`report`): its `--out` and model specs are checked
    before the body runs, as for every generated command."""

    def wrap(body: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(body)
        def command(*args: Any, **kwargs: Any) -> Any:
            from selfteach.validate import check_params

            check_params(path, kwargs)
            return body(*args, **kwargs)

        return command

    return wrap
