"""The validation layer for command-line values: one clear line, exit 2, nothing written.

Three pieces every command shares (wired in `selfteach.cli.run`, so no command needs its
own copy):

- `config_error`: a pydantic `ValidationError` from any config model becomes one
  `SelfteachError` line "--option value: reason". The constraints themselves live on the
  config fields (`gt`/`le`, `Literal` choices, `allow_inf_nan=False`, `Seed`).
- `check_out`: `--out` must name a directory we can create and write, checked before any
  data or model is read (`RunDir.create` checks again for library callers).
- `check_model_spec`: `--model` must look like something `load_backend` can open (an
  alias, a model directory, an existing .gguf, a hub id or an http(s) URL), checked
  without loading anything, so a typo fails in milliseconds rather than after a load.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlparse

from pydantic import AfterValidator, Field, ValidationError

from selfteach.errors import SelfteachError

# numpy (and so transformers.set_seed) takes seeds in [0, 2**32); every seed goes through it.
SEED_MAX = 2**32 - 1
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]


def _steps(v: int) -> int:
    if v == 0 or v < -1:
        raise ValueError("must be -1 (train for --epochs) or a positive number of steps")
    return v


# Upper bounds: far above any sensible run, low enough that a typo fails instead of
# running for days or exhausting memory (`judge eval --k 100000000000`).
MAX_SAMPLES = 1024  # samples / judgments / candidates per item
MAX_BATCH = 4096  # items or sequences per batch
MAX_TOKENS = 131072  # generated tokens or context length
MAX_STEPS = 10_000_000  # optimizer or search steps
MAX_TEMPERATURE = 10.0
MAX_LR = 1.0
MAX_EPOCHS = 10_000.0

# max_steps: -1 means "use --epochs"; 0 or another negative number is a mistake.
MaxSteps = Annotated[int, Field(le=MAX_STEPS), AfterValidator(_steps)]

# Config fields whose command-line option is not `--` + the field name with dashes.
OPTION_NAMES = {
    "learning_rate": "--lr",
    "fields": "--field",
    "ks": "--k",
    "sft_learning_rate": "--sft-lr",
    "grpo.learning_rate": "--grpo-lr",
    "grpo.loss_type": "--grpo-loss-type",
    "dpo.learning_rate": "--lr",
    "budgets": "--budgets",
    "shared_prefix": "--no-shared-prefix",
}


def option_name(loc: tuple[Any, ...] | list[Any]) -> str:
    """The command-line option of a pydantic error location, e.g. ("dpo", "beta") -> --beta."""
    parts = [str(x) for x in loc if not isinstance(x, int)]
    dotted = ".".join(parts)
    if dotted in OPTION_NAMES:
        return OPTION_NAMES[dotted]
    last = parts[-1] if parts else "value"
    return OPTION_NAMES.get(last, "--" + last.replace("_", "-"))


def _show(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def config_error(e: ValidationError, names: dict[str, str] | None = None) -> SelfteachError:
    """One line "--option value: reason" for the first error of a config model."""
    err = e.errors(include_url=False)[0]
    loc = tuple(err.get("loc", ()))
    dotted = ".".join(str(x) for x in loc)
    name = (names or {}).get(dotted) or option_name(loc)
    msg = err["msg"]
    if err.get("type") == "finite_number":
        msg = "must be a finite number"
    elif err.get("type") == "literal_error":
        msg = "choose " + msg.removeprefix("Input should be ")
    elif " is not one of " in msg:  # typer's check of a Literal option
        msg = "choose " + msg.split(" is not one of ", 1)[1].rstrip(".")
    else:
        msg = msg.replace("Input should be", "must be")
    if "input" in err and not isinstance(err["input"], dict):
        return SelfteachError(f"{name} {_show(err['input'])}: {msg}")
    return SelfteachError(f"{name}: {msg}")


def build(model_cls: type, names: dict[str, str] | None = None, **values: Any) -> Any:
    """`model_cls(**values)`, with a validation error turned into one "--option value" line."""
    try:
        return model_cls(**values)
    except ValidationError as e:
        raise config_error(e, names) from None


# ---- --out ------------------------------------------------------------------------------
def check_out(
    out: str | Path | None, resume: bool = False, option: str = "--out", kind: str = "dir"
) -> Path:
    """`selfteach.runs.check_out`: where a run directory (or output file) may go. It lives
    with `RunDir`, which knows what makes a directory a finished run and checks again on
    `create`; `runs` imports nothing from here, so the two modules form no cycle."""
    from selfteach.runs import check_out as check

    return check(out, resume=resume, option=option, kind=kind)


# ---- --model ----------------------------------------------------------------------------
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_model_spec(model: str | None, backend: str = "auto", option: str = "--model") -> None:
    """Fail fast on a model spec `load_backend` could never open (loads nothing)."""
    if backend not in ("auto", "hf", "openai"):
        raise SelfteachError(f"--backend {backend!r}: choose hf, openai or auto")
    if model is None:
        return
    if not model.strip():
        raise SelfteachError(
            f"{option} '': empty; give an alias (see `selfteach models`), a directory, "
            "a .gguf file, a hub id or a server URL"
        )
    from selfteach.backends.endpoints import is_server_spec, split_spec

    if is_server_spec(model):  # one URL, URL,URL,... or @FILE of URLs
        for url in split_spec(model, option):
            _check_url(url, option)
        return
    if backend == "openai":
        raise SelfteachError(f"{option} {model!r}: --backend openai needs an http(s):// server URL")
    from selfteach.backends.models import ALIASES

    if model in ALIASES:
        return
    path = Path(model).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise SelfteachError(f"{option} {model}: GGUF file not found")
        return
    if path.exists():
        if not path.is_dir():
            raise SelfteachError(f"{option} {model}: expected a model directory or a .gguf file")
        if not (path / "config.json").is_file():
            raise SelfteachError(
                f"{option} {model}: not a model directory (no config.json); give a directory "
                "saved with save_pretrained, e.g. a run's model/"
            )
        return
    if _HUB_ID.match(model) and not model.startswith("."):
        return
    raise SelfteachError(
        f"unknown model {model!r}: not an alias ({', '.join(ALIASES)}), "
        "a local directory, a .gguf file, or a hub id"
    )


def _check_url(url: str, option: str) -> None:
    try:
        parts = urlparse(url)
        port = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError as e:
        raise SelfteachError(f"{option} {url}: not a valid URL ({e})") from None
    if not parts.hostname:
        raise SelfteachError(f"{option} {url}: no host in the URL")
    if port == 0:
        raise SelfteachError(f"{option} {url}: port 0 is not a server port")


# ---- early checks by parameter name (wired by selfteach.cli) ------------------------------
MODEL_PARAMS = ("model", "label_model", "icm_model", "backbone")


def check_params(command: str, params: dict[str, Any]) -> None:
    """Checks that need no data and no model, run before a command's body: `--out` and
    every model spec. `command` is the command path, e.g. "selfteach eval accuracy"."""
    backend = params.get("backend") or "auto"
    for name in MODEL_PARAMS:
        if isinstance(params.get(name), str) or (name == "model" and "backend" in params):
            check_model_spec(
                params.get(name),
                backend if name == "model" else "auto",
                "--" + name.replace("_", "-"),
            )
    if "out" in params and not command.endswith(" report"):
        out = check_out(params["out"], resume=bool(params.get("resume")) or _accumulates(command))
        if params.get("resume") and out.is_dir():
            from selfteach.runs import RunDir

            RunDir(out).check_resumable()
    elif "out" in params and params["out"] is not None:
        check_out(params["out"], kind="file")


def _accumulates(command: str) -> bool:
    """Commands whose --out may already hold a run (they add to it, as before)."""
    return command.endswith(("train-meta", "rft-data", " demo", "train dpo", "train grpo"))


# ---- --config FILE ----------------------------------------------------------------------
def read_settings(
    path: str | Path, accepted: set[str], command: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """The settings of a `--config` file (a run's config.yaml, the run directory holding
    it, or any YAML mapping) and the line of each key. A file that does not read, is not a
    mapping, or has a key `command` does not take is one line naming the file (and line).
    Returns the settings and, per key, "FILE:LINE" for the errors its value may cause."""
    import difflib

    import yaml

    f = Path(str(path)).expanduser()
    if f.is_dir():
        f = f / "config.yaml"
    if not f.is_file():
        missing = (
            "no config.yaml in that directory"
            if Path(str(path)).expanduser().is_dir()
            else "file not found"
        )
        raise SelfteachError(f"--config {path}: {missing}")
    try:
        text = f.read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except UnicodeDecodeError as e:
        raise SelfteachError(
            f"{f}: not UTF-8 (byte 0x{e.object[e.start]:02x} at offset {e.start})"
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        raise SelfteachError(
            f"{f}{at}: malformed YAML ({getattr(e, 'problem', None) or type(e).__name__})"
        ) from None
    except RecursionError:
        raise SelfteachError(f"{f}: nested too deeply to read") from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise SelfteachError(
            f"{f}: expected a mapping of settings (key: value lines), got {type(data).__name__}"
        )
    lines = (
        {str(k.value): k.start_mark.line + 1 for k, _ in node.value}
        if isinstance(node, yaml.MappingNode)
        else {}
    )
    for key in data:
        if not isinstance(key, str) or key not in accepted:
            hint = difflib.get_close_matches(str(key), sorted(accepted), n=1)
            raise SelfteachError(
                f"{f}:{lines.get(str(key), 1)}: unknown setting {key!r} for {command}"
                + (f" (did you mean {hint[0]!r}?)" if hint else "")
            )
    return data, {k: f"{f}:{lines.get(k, 1)}" for k in data}
