"""`--serve`: run a model on a llama.cpp server that selfteach starts, uses and stops.

`load_backend(spec, serve=True)` finds (or makes) the model's GGUF, starts a llama.cpp server
on it (engine xllamacpp by default, see `llama_server.engine_command`) on 127.0.0.1 at a free
port with slots and threads sized for this machine, waits for /health, and returns an
`OpenAIBackend` on it, so every method runs unchanged on the served path, as it would on a
vLLM/SGLang server at scale. The server is always stopped: by `close()`, at interpreter exit
(normal exit, an error, Ctrl-C: `atexit`), and by the kernel if the caller is killed outright
(PR_SET_PDEATHSIG in the child). No orphan keeps a port or a core.

Sizing (override with SELFTEACH_SERVE_THREADS / SELFTEACH_SERVE_SLOTS / SELFTEACH_SERVE_CTX):
threads = the cores not already busy (llama.cpp's threads spin: on a busy 2-core box two
threads were 7x slower than one, platform notes), at least 1; slots = 8 requests decoded
together, the OpenAI backend's concurrency; context = 4096 tokens per slot.
"""

from __future__ import annotations

import atexit
import os
from pathlib import Path

from selfteach.backends.base import PrefixScoring, ServedProcess
from selfteach.backends.llama_server import LlamaServer
from selfteach.backends.openai import OpenAIBackend
from selfteach.errors import SelfteachError

SERVE_HELP = ("run on a llama.cpp server started on the model's GGUF (127.0.0.1, free port; "
              "stopped at exit)")
# OpenAIBackend options that make sense on a served model; hf-only ones (batch_size, ...) drop
_OPENAI_KWARGS = ("mode", "timeout", "max_retries", "system", "tokenizer")


def machine_threads() -> int:
    """CPU threads for the server: the free cores of this machine (>= 1)."""
    if os.environ.get("SELFTEACH_SERVE_THREADS"):
        return _env_int("SELFTEACH_SERVE_THREADS")
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(cores, round(cores - busy)))


def _env_int(name: str, default: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        assert default is not None
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise SelfteachError(f"{name}={raw!r}: expected a positive integer")
    return value


def gguf_for(spec: str, quant: str = "Q8_0") -> Path:
    """The GGUF to serve for a model spec: an alias's GGUF, a .gguf path, or a model directory
    (a trained checkpoint) converted once with llama.cpp's converter at `quant`."""
    from selfteach.backends.endpoints import is_server_spec
    from selfteach.backends.models import alias_gguf

    if is_server_spec(spec):
        raise SelfteachError(f"--serve {spec}: already a server URL; drop --serve")
    found = alias_gguf(spec)
    if found is not None:
        return found
    from selfteach.backends.models import ALIASES, resolve

    # an alias resolves to a Path (a str is only a hub id); tiny-random: a directory
    path = Path(resolve(spec)) if spec in ALIASES else Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise SelfteachError(f"{path}: GGUF file not found")
        return path
    if path.is_dir():
        from selfteach.backends.convert import to_gguf

        return to_gguf(path, quant)
    raise SelfteachError(
        f"--serve {spec}: needs a GGUF alias, a .gguf file or a local model directory"
    )


class ServedBackend(OpenAIBackend, PrefixScoring, ServedProcess):
    """An `OpenAIBackend` on a llama.cpp server it owns (`ServedProcess`: `close()` stops the
    server), scoring ICM's shared contexts through the slot's prompt cache (`PrefixScoring`)."""

    def __init__(self, server: LlamaServer, **kwargs):
        self.server = server
        try:
            super().__init__(server.url, max_concurrency=server.parallel, **kwargs)
        except BaseException:
            server.stop()
            raise
        self.name = f"{server.model_name} (served by {server.engine}, {server.threads} threads)"
        self.gguf = server.gguf

    def label_logprobs_shared_prefix(self, prefix: str, suffixes: list[str],
                                     labels: dict[str, list[str]]) -> list[dict[str, float]]:
        """ICM's fast scorer: many claims after one shared context. llama.cpp's slots do not
        share KV, so concurrent requests would each read the context again (8 slots: 8 times);
        one at a time, the slot that cached the context serves them all, reading only each
        suffix (the prompt cache; vLLM's prefix cache makes concurrency free there).

        Scoring is then llama.cpp's prompt processing of the suffixes, measured at 60-70
        prompt tokens/s per thread on the 2-core box (Qwen2.5-Coder-0.5B Q4_K_M, 16 to 512
        tokens per batch: 59.5 -> 71.5 tok/s), so even sharing the context across all slots
        could batch the suffixes for at most ~1.2x (1 thread) / ~1.3x (2 threads): not worth
        a second read of the context per slot (docs/benchmarks.md, bench_served)."""
        return [self.label_logprobs([prefix + s], labels)[0] for s in suffixes]

    def _send(self, method: str, path: str, payload: dict | None = None, check=None):
        try:
            return super()._send(method, path, payload, check)
        except SelfteachError:
            proc = self.server.proc
            if proc is not None and proc.poll() is not None:  # say why, not "unreachable"
                raise SelfteachError(
                    f"{self.server.engine} server for {self.server.model_name} died mid-run "
                    f"(exit code {proc.returncode}): {self.server.log_tail()}"
                ) from None
            raise

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.server.stop()
            atexit.unregister(self.server.stop)


def start_server(gguf: Path | str, name: str | None = None, engine: str = "auto") -> LlamaServer:
    threads = machine_threads()
    slots = _env_int("SELFTEACH_SERVE_SLOTS", 8)
    ctx = _env_int("SELFTEACH_SERVE_CTX", 4096) * slots
    server = LlamaServer(gguf, threads=threads, parallel=slots, ctx=ctx, engine=engine)
    if name:
        server.model_name = name
        server.cmd[server.cmd.index("--alias") + 1] = name
    atexit.register(server.stop)  # registered before start: a Ctrl-C during loading stops it too
    try:
        server.start()
    except BaseException:
        server.stop()
        atexit.unregister(server.stop)
        raise
    return server


def serve_backend(
    spec: str, engine: str | None = None, quant: str = "Q8_0", **kwargs
) -> ServedBackend:
    """Start a server on `spec` (alias, .gguf, model directory) and return a backend on it."""
    gguf = gguf_for(spec, quant)
    from selfteach.backends.models import ALIASES

    name = spec if spec in ALIASES else gguf.stem
    server = start_server(gguf, name, engine or os.environ.get("SELFTEACH_SERVE_ENGINE", "auto"))
    return ServedBackend(server, **{k: v for k, v in kwargs.items() if k in _OPENAI_KWARGS})
