"""`--request-timeout` and `--max-retries`: defined once, added to every command that opens
models by the `server_options` decorator.

They set the transport of every OpenAI-compatible server the command opens through
`load_backend` (the command's --model, a --label-model, a `judge:URL` reward, ...); a local
(hf) model has no transport and ignores them. They are not part of a run's config: they
change how long a run waits for a server, never its results, so a run may be resumed with
other values.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from selfteach.backends.transport import check_retries, check_timeout

SERVER_KEYS = ("timeout", "max_retries")  # OpenAIBackend's transport arguments
# what the running command set; process-wide, as pool threads may load backends too
_defaults: dict[str, Any] = {}


def server_defaults() -> dict[str, Any]:
    """The transport arguments the running command set (`load_backend` applies them)."""
    return dict(_defaults)


@contextmanager
def server_settings(
    request_timeout: float | None = None, max_retries: int | None = None
) -> Iterator[None]:
    """Within the block, servers opened by `load_backend` use these (None: the backend's
    default: 120 s and 3 retries) unless the call passes its own."""
    check_timeout(request_timeout)
    check_retries(max_retries)
    global _defaults
    saved = _defaults
    _defaults = {
        k: v
        for k, v in zip(SERVER_KEYS, (request_timeout, max_retries), strict=True)
        if v is not None
    }
    try:
        yield
    finally:
        _defaults = saved


def server_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator for a typer command (put it under `@app.command()`): adds
    `--request-timeout SECONDS` and `--max-retries N`, checks them before the command runs
    (one-line error, exit 2) and applies them to every server the command opens."""
    import typer

    extra = [
        inspect.Parameter(
            "request_timeout",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=float | None,
            default=typer.Option(
                None,
                "--request-timeout",
                help="server URLs: seconds one attempt of a request may take (default 120)",
            ),
        ),
        inspect.Parameter(
            "max_retries",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=int | None,
            default=typer.Option(
                None,
                "--max-retries",
                help="server URLs: retries per failed request, with backoff (default 3)",
            ),
        ),
    ]
    sig = inspect.signature(command, eval_str=True)
    params = list(sig.parameters.values())
    clash = {p.name for p in params} & {p.name for p in extra}
    if clash:
        raise TypeError(f"{command.__name__} already has {sorted(clash)}")
    kw = params + extra

    @functools.wraps(command)
    def wrapper(
        *args: Any,
        request_timeout: float | None = None,
        max_retries: int | None = None,
        **kwargs: Any,
    ) -> Any:
        with server_settings(request_timeout, max_retries):
            return command(*args, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=kw)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {
        p.name: p.annotation for p in kw if p.annotation is not inspect.Parameter.empty
    }
    return wrapper
