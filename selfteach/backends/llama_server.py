"""Start llama.cpp's `llama-server` on 127.0.0.1: a real OpenAI-compatible server on CPU,
the stand-in for vLLM in tests and benchmarks (see the platform notes).

The binary is built once by `scripts/build_llama_server.sh` (`make setup`) into
`$SELFTEACH_CACHE/llama.cpp-<version>/bin/` (default cache `~/.cache/selfteach`). This module
never builds anything: without the binary, `server_binary()` returns None and callers skip.

    from selfteach.backends.llama_server import LlamaServer
    from selfteach.backends.openai import OpenAIBackend

    with LlamaServer("smollm2-135m", f32=True) as server:     # F32 GGUF: exact numbers
        backend = OpenAIBackend(server.url)                   # http://127.0.0.1:PORT/v1

`f32=True` serves an F32 re-encoding of the GGUF (made once with `llama-quantize
--allow-requantize ... F32`, cached): transformers dequantises GGUFs to fp32, so the
two backends then agree to ~0.003 nats; the 4-bit file can flip near-ties.

Command line: `python -m selfteach.backends.llama_server smollm2-135m --f32` serves until
Ctrl-C and prints the URL.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from selfteach.backends.models import cache_dir, server_binary
from selfteach.errors import SelfteachError

ENGINES = ("xllamacpp", "llama-server")
# xllamacpp: the same llama.cpp server from a prebuilt PyPI wheel (seconds to install instead
# of an 11-32 minute build). On the Qwen2.5-Coder-0.5B GGUF the source build crashed at start
# (exit -11) in bench_served (docs/benchmarks.md), so no speed comparison could be made.
DEFAULT_ENGINE = "xllamacpp"


def engine_command(engine: str = "auto") -> tuple[str, list[str]]:
    """(engine name, command prefix) of a llama.cpp server: "xllamacpp" (the PyPI wheel, run as
    `python -m selfteach.backends.xserve`), "llama-server" (the source build), or "auto" (the
    default engine if installed, else the other)."""
    import importlib.util

    if engine not in ("auto", *ENGINES):
        raise SelfteachError(f"engine {engine!r}: choose auto, {', '.join(ENGINES)}")
    order = (
        [DEFAULT_ENGINE, *(e for e in ENGINES if e != DEFAULT_ENGINE)]
        if engine == "auto"
        else [engine]
    )
    for name in order:
        if name == "xllamacpp" and importlib.util.find_spec("xllamacpp") is not None:
            return name, [sys.executable, "-m", "selfteach.backends.xserve"]
        if name == "llama-server" and (binary := server_binary()) is not None:
            return name, [str(binary)]
    if engine == "llama-server":
        raise SelfteachError(
            "llama-server not built: run `make server` (scripts/build_llama_server.sh)"
        )
    raise SelfteachError("no llama.cpp server engine: `pip install xllamacpp` (make setup), "
                         "or build llama-server with `make server`")


def gguf_path(model: str | Path) -> Path:
    """A GGUF file for an alias (smollm2-135m, gemma3-270m, qwen2.5-coder-*) or a path."""
    from selfteach.backends import models

    found = models.alias_gguf(str(model))
    if found is not None:
        return found
    path = Path(model).expanduser()
    if path.suffix != ".gguf" or not path.is_file():
        raise SelfteachError(
            f"{model}: not a .gguf file or a GGUF alias (smollm2-135m, gemma3-270m, "
            "qwen2.5-coder-0.5b, qwen2.5-coder-1.5b)"
        )
    return path


def f32_gguf(model: str | Path) -> Path:
    """An F32 re-encoding of a GGUF, made once with llama-quantize and cached (~1 s, 540 MB
    for SmolLM2-135M)."""
    src = gguf_path(model)
    digest = hashlib.sha1(
        f"{src.resolve()}:{src.stat().st_size}:{src.stat().st_mtime}".encode()
    ).hexdigest()[:10]
    target = cache_dir() / "gguf" / f"{src.stem}-{digest}.F32.gguf"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    quantize = server_binary("llama-quantize")
    if quantize is None:  # no source build: the same re-encoding in Python (gguf package)
        from selfteach.backends.convert import requantize_f32

        requantize_f32(src, tmp)
        tmp.replace(target)
        return target
    proc = subprocess.run([str(quantize), "--allow-requantize", str(src), str(tmp), "F32", "1"],
                          capture_output=True, text=True)
    if proc.returncode != 0 or not tmp.exists():
        tmp.unlink(missing_ok=True)
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SelfteachError(f"{src}: F32 conversion failed ({tail[0]})")
    tmp.replace(target)
    return target


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    """No one listens on 127.0.0.1:port (SO_REUSEADDR, as the server binds: TIME_WAIT is fine)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class LlamaServer:
    """A llama-server process on 127.0.0.1, stopped on exit of the `with` block.

    Args:
        model: alias (smollm2-135m, gemma3-270m, qwen2.5-coder-*) or path to a GGUF file.
        f32: serve the F32 re-encoding (exact agreement with the hf backend).
        port: default: a free port.
        threads: CPU threads (1: the machines are shared; 2 threads on a busy 2-core box
            made one request 60x slower).
        parallel: slots, i.e. requests decoded concurrently (`-np`).
        ctx: total context over all slots (`-c`); each slot gets ctx / parallel tokens.
        startup_timeout: seconds to wait for /health.
        extra_args: more llama-server flags (engine llama-server only).
        engine: "xllamacpp", "llama-server" or "auto" (see `engine_command`).
    """

    def __init__(
        self,
        model: str | Path = "smollm2-135m",
        f32: bool = False,
        port: int | None = None,
        threads: int = 1,
        parallel: int = 8,
        ctx: int = 8192,
        startup_timeout: float = 120.0,
        extra_args: tuple[str, ...] = (),
        engine: str = "auto",
    ):
        self.engine, prefix = engine_command(engine)
        if extra_args and self.engine != "llama-server":
            raise SelfteachError(f"extra_args {extra_args!r}: only for engine llama-server")
        self.gguf = f32_gguf(model) if f32 else gguf_path(model)
        from selfteach.backends.models import ALIASES

        base = str(model) if str(model) in ALIASES else Path(model).stem
        self.model_name = f"{base}-f32" if f32 else base  # what /v1/models reports
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.threads, self.parallel = threads, parallel
        self.cmd = [*prefix, "-m", str(self.gguf), "--host", "127.0.0.1", "--port", str(self.port),
                    "-t", str(threads), "-np", str(parallel), "-c", str(ctx), "--no-webui",
                    "--alias", self.model_name, *extra_args]
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None

    def start(self) -> LlamaServer:
        if not port_free(self.port):  # else /health could answer from another server
            raise SelfteachError(
                f"port {self.port} on 127.0.0.1 is in use; pick another or leave port unset"
            )
        fd, log = tempfile.mkstemp(prefix="llama-server-", suffix=".log")
        self.log_path = Path(log)
        with os.fdopen(fd, "w") as out:
            # own session: Ctrl-C reaches only the caller, whose exit path stops the server
            self.proc = subprocess.Popen(
                self.cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_tail()
                self.stop()
                raise SelfteachError(
                    f"{self.engine} exited with code {self.proc.returncode} at start "
                    f"({self.gguf.name}): {tail}"
                )
            if self._healthy():
                return self
            time.sleep(0.25)
        self.stop()
        raise SelfteachError(
            f"{self.engine} on port {self.port}: not healthy after {self.startup_timeout:.0f}s"
        )

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                return r.status == 200 and json.loads(r.read() or b"{}").get("status") == "ok"
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def log_tail(self, lines: int = 1) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = [ln for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
        return " | ".join(text[-lines:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if (
            self.log_path is not None
            and self.proc is not None
            and self.proc.returncode in (0, -15, -9)
        ):
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the Python parent dies, even by SIGKILL,
    so no orphaned server keeps a port and a core (Linux; elsewhere a no-op)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(
        prog="python -m selfteach.backends.llama_server",
        description="Serve a GGUF with llama-server on 127.0.0.1 until Ctrl-C.",
    )
    ap.add_argument("model", nargs="?", default="smollm2-135m", help="alias or .gguf path")
    ap.add_argument("--f32", action="store_true", help="serve the F32 re-encoding (exact numbers)")
    ap.add_argument("--port", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--parallel", type=int, default=8)
    args = ap.parse_args(argv)
    # `kill PID` must stop the server too: turn SIGTERM into the same exit path as Ctrl-C
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with LlamaServer(args.model, f32=args.f32, port=args.port, threads=args.threads,
                         parallel=args.parallel) as server:
            print(
                f"serving {server.model_name} ({server.gguf}) at {server.url} (Ctrl-C stops)",
                flush=True,
            )
            while server.proc is not None and server.proc.poll() is None:
                time.sleep(1)
            print(f"llama-server stopped: {server.log_tail()}", file=sys.stderr)
            return 1
    except SelfteachError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
