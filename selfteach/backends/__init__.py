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
    stops with `close()` or at exit (`selfteach.backends.served`)."""
    from selfteach.errors import SelfteachError

    if serve:
        if backend not in ("auto", "openai"):
            raise SelfteachError(f"--serve runs the openai backend on a local server: drop --backend {backend}")
        from selfteach.backends.served import serve_backend

        return serve_backend(model, **kwargs)
    if backend == "auto":
        backend = "openai" if model.startswith(("http://", "https://")) else "hf"
    if backend == "hf":
        from selfteach.backends.hf import HFBackend

        return HFBackend(model, **kwargs)
    if backend == "openai":
        from selfteach.backends.openai import OpenAIBackend

        return OpenAIBackend(model, **kwargs)
    raise SelfteachError(f"--backend {backend!r}: choose hf, openai or auto")


__all__ = ["Backend", "Generation", "Prompt", "SamplingParams", "Usage", "DEFAULT_LABEL_VARIANTS",
           "label_variants", "load_backend"]
