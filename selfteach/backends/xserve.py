"""Serve a GGUF over HTTP with `xllamacpp` (llama.cpp's own server compiled into a PyPI
wheel, no build step), taking the subset of `llama-server` flags that selfteach uses:

    python -m selfteach.backends.xserve -m MODEL.gguf --host 127.0.0.1 --port 8080 \\
        -t 2 -np 8 -c 16384 --alias NAME

It runs as a child process of `LlamaServer` (engine "xllamacpp") rather than inside the
caller's process, so that stopping it is a plain SIGTERM: no server thread or model memory
survives in the caller, and a caller killed with SIGKILL takes it along (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m selfteach.backends.xserve")
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("-t", "--threads", type=int, default=1)
    ap.add_argument("-np", "--parallel", type=int, default=8)
    ap.add_argument("-c", "--ctx-size", type=int, default=8192)
    ap.add_argument("--alias", default=None)
    ap.add_argument("--no-webui", action="store_true")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    import xllamacpp

    p = xllamacpp.CommonParams()
    p.model.path = args.model
    p.hostnames = [args.host]
    p.port = args.port
    p.cpuparams.n_threads = args.threads
    p.cpuparams_batch.n_threads = args.threads
    p.n_parallel = args.parallel
    p.n_ctx = args.ctx_size
    p.ui = not args.no_webui
    if args.alias:
        p.model_alias = {args.alias}
    # exit at once on a stop signal: a normal interpreter shutdown waits for the engine's
    # threads (in-flight requests), which left an orphan server when the caller was killed
    # while stopping it; the kernel frees the memory and the port.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: os._exit(0))
    try:
        server = xllamacpp.Server(p)  # loads the model and starts listening
    except Exception as e:  # the engine's own message, on one line, for the parent's error
        print(
            f"xllamacpp: cannot serve {args.model}: "
            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}",
            file=sys.stderr,
            flush=True,
        )
        return 1
    print(f"xllamacpp: listening on {server.listening_address}", file=sys.stderr, flush=True)
    threading.Event().wait()  # until a stop signal
    return 0


if __name__ == "__main__":
    sys.exit(main())
