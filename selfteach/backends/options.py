"""`--request-timeout` and `--max-retries`: defined once (`SERVER_OPTIONS`), added to every
command that opens models by `selfteach.cliconfig.config_command(..., server=True)`.

They set the transport of every OpenAI-compatible server the command opens through
`load_backend` (the command's --model, a --label-model, a `judge:URL` reward, ...); a local
(hf) model has no transport and ignores them. They are not part of a run's config: they
change how long a run waits for a server, never its results, so a run may be resumed with
other values.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from selfteach.backends.transport import check_retries, check_timeout

SERVER_KEYS = ("timeout", "max_retries")  # OpenAIBackend's transport arguments
# (parameter, flag, type, help) of the command-line options that set them
SERVER_OPTIONS = (
    (
        "request_timeout",
        "--request-timeout",
        float | None,
        "server URLs: seconds one attempt of a request may take (default 120)",
    ),
    (
        "max_retries",
        "--max-retries",
        int | None,
        "server URLs: retries per failed request, with backoff (default 3)",
    ),
)
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
