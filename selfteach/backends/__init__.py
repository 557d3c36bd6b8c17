"""Model backends behind one protocol (`Backend`): transformers (`hf`) and any
OpenAI-compatible server (`openai`: vLLM, SGLang, llama.cpp)."""

from __future__ import annotations

from selfteach.backends.base import (
    DEFAULT_LABEL_VARIANTS,
    Backend,
    Generation,
    Prompt,
    SamplingParams,
    Usage,
    label_variants,
)


def load_backend(model: str, backend: str = "auto", serve: bool = False, **kwargs) -> Backend:
    """Open a model. `backend` is "hf", "openai", or "auto" (openai when `model` is an
    http(s) URL, e.g. `http://127.0.0.1:8000/v1`, else hf). `serve=True` (`--serve`) starts a
    llama.cpp server on the model's GGUF and returns the openai backend on it; the server
    stops with `close()` or at exit (`selfteach.backends.served`).

    Keyword arguments go to the backend, except that each ignores the other's: a server
    has no `batch_size` / `max_batch_tokens` (it batches on its own) and a local model no
    transport (`timeout`, `max_retries`). A server also gets the transport settings of the
    running command (`--request-timeout`, `--max-retries`: `selfteach.backends.options`)
    unless `kwargs` sets them."""
    from selfteach.backends.options import SERVER_KEYS, server_defaults
    from selfteach.errors import SelfteachError

    if serve:
        if backend not in ("auto", "openai"):
            raise SelfteachError(f"--serve runs the openai backend on a local server: drop --backend {backend}")
        from selfteach.backends.served import serve_backend

        return serve_backend(model, **{**server_defaults(), **kwargs})
    if backend == "auto":
        from selfteach.backends.endpoints import is_server_spec

        backend = "openai" if is_server_spec(model) else "hf"
    if backend == "hf":
        from selfteach.backends.hf import HFBackend

        return HFBackend(model, **{k: v for k, v in kwargs.items() if k not in SERVER_KEYS})
    if backend == "openai":
        from selfteach.backends.openai import OpenAIBackend

        local = ("batch_size", "max_batch_tokens")
        kwargs = {k: v for k, v in kwargs.items() if k not in local}
        return OpenAIBackend(model, **{**server_defaults(), **kwargs})
    raise SelfteachError(f"--backend {backend!r}: choose hf, openai or auto")


__all__ = ["Backend", "Generation", "Prompt", "SamplingParams", "Usage", "DEFAULT_LABEL_VARIANTS",
           "label_variants", "load_backend"]
