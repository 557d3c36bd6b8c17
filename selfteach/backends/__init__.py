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


def load_backend(model: str, backend: str = "auto", **kwargs) -> Backend:
    """Open a model. `backend` is "hf", "openai", or "auto" (openai when `model` is an
    http(s) URL, e.g. `http://127.0.0.1:8000/v1`, else hf)."""
    from selfteach.errors import SelfteachError

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
