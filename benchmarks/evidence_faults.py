"""Evidence for issue 10 (server faults) on a real engine: `eval accuracy` and `elicit`
against llama.cpp (xllamacpp's HTTP server, SmolLM2-135M Q4_1, 4 slots, 1 thread), run
twice directly and once through a proxy that breaks every 5th request (HTTP 500, 429 +
Retry-After: 1, an answer 6 s late, a reset connection, a truncated body, invalid JSON, a
wrong shape). The fault-free runs measure the server's own run-to-run variation (prompt
cache, slot batching), which bounds what "identical after faults" can mean on a real server;
tests/test_server_faults.py asserts exact identity against a deterministic engine.

    flock /tmp/selfteach-model.lock python -m benchmarks.evidence_faults   # ~3 min on 2 busy cores
"""

from __future__ import annotations

import http.client
import json
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FAULTS = ("500", "429", "slow", "reset", "truncated", "badjson", "shape")
RUNS = {
    "eval accuracy": (
        "eval accuracy --limit 12 --max-new-tokens 48 --batch-size 6".split(),
        "outputs.jsonl",
    ),
    "elicit": (
        "elicit --claims builtin:capitals --limit 10 --iters 10 --no-progress "
        "--max-context-tokens 600".split(),
        "labels.jsonl",
    ),
}


def serve(port: int):
    import xllamacpp

    from selfteach.backends.models import _smollm2_gguf

    p = xllamacpp.CommonParams()
    p.model.path = str(_smollm2_gguf())
    p.port, p.hostnames, p.n_parallel, p.n_ctx = port, ["127.0.0.1"], 4, 8192
    p.cpuparams.n_threads = p.cpuparams_batch.n_threads = 1
    return xllamacpp.Server(p)


def proxy(upstream: int) -> tuple[ThreadingHTTPServer, dict]:
    """Forwards to 127.0.0.1:upstream; request i with i % 5 == 4 gets fault FAULTS[i // 5 % 7]."""
    state: dict = {"n": 0, "faults": {}}
    lock = threading.Lock()

    class Proxy(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(
            self, status: int, data: bytes, headers: dict | None = None, cut: bool = False
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data[: len(data) // 2] if cut else data)

        def _serve(self, method: str, body: bytes | None) -> None:
            with lock:
                i, state["n"] = state["n"], state["n"] + 1
                kind = FAULTS[i // 5 % len(FAULTS)] if i % 5 == 4 else None
                if kind:
                    state["faults"][kind] = state["faults"].get(kind, 0) + 1
            if kind == "reset":
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.close_connection = True
                return self.connection.close()
            if kind in ("500", "429"):
                return self._send(
                    int(kind),
                    b'{"error": {"message": "injected"}}',
                    {"Retry-After": "1"} if kind == "429" else None,
                )
            if kind == "shape":
                return self._send(200, b'{"choices": []}')
            conn = http.client.HTTPConnection("127.0.0.1", upstream, timeout=600)
            conn.request(method, self.path, body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            status, data = resp.status, resp.read()
            conn.close()
            if kind == "slow":
                time.sleep(6)
            if kind == "badjson":
                return self._send(status, data[: len(data) // 2])
            self._send(status, data, cut=kind == "truncated")
            self.close_connection = kind == "truncated"

        def do_GET(self):
            try:
                self._serve("GET", None)
            except OSError:
                pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            try:
                self._serve("POST", body)
            except OSError:
                pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, state


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _gap(a: list[dict], b: list[dict]) -> float:
    return round(max(abs(x["margin"] - y["margin"]) for x, y in zip(a, b, strict=True)), 4)


def main() -> list[dict]:
    from selfteach.backends.llama_server import free_port

    port = free_port()
    server = serve(port)  # noqa: F841 (serves while referenced)
    for _ in range(240):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                break
        except OSError:
            time.sleep(0.5)
    httpd, state = proxy(port)
    direct, faulty = f"http://127.0.0.1:{port}/v1", f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    out = Path(tempfile.mkdtemp(prefix="evidence-faults-"))
    rows = []
    for name, (args, file) in RUNS.items():
        got = {}
        for tag, url, extra in (
            ("direct1", direct, []),
            ("direct2", direct, []),
            ("faulty", faulty, ["--request-timeout", "5", "--max-retries", "6"]),
        ):
            state["n"], state["faults"] = 0, {}
            t0 = time.time()
            r = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "selfteach",
                    *args,
                    "--model",
                    url,
                    "--out",
                    str(out / f"{name}-{tag}"),
                    *extra,
                ],
                capture_output=True,
                text=True,
            )
            if r.returncode:
                raise SystemExit(f"{name} {tag}: exit {r.returncode}: {r.stderr[-500:]}")
            got[tag] = (
                _rows(out / f"{name}-{tag}" / file),
                time.time() - t0,
                state["n"],
                dict(state["faults"]),
            )
        (d1, s1, _, _), (d2, _, _, _), (fa, sf, n, faults) = (
            got["direct1"],
            got["direct2"],
            got["faulty"],
        )
        rows.append(
            {
                "name": name,
                "items": len(d1),
                "faulty_requests": n,
                "faults": faults,
                "direct1==direct2": sum(a == b for a, b in zip(d1, d2, strict=True)),
                "direct2==faulty": sum(a == b for a, b in zip(d2, fa, strict=True)),
                **(
                    {
                        "labels_equal_all3": [a["label"] for a in d1]
                        == [a["label"] for a in d2]
                        == [a["label"] for a in fa],
                        "max_margin_gap_direct1_direct2": _gap(d1, d2),
                        "max_margin_gap_direct2_faulty": _gap(d2, fa),
                    }
                    if name == "elicit"
                    else {}
                ),
                "seconds_direct1": round(s1, 1),
                "seconds_faulty": round(sf, 1),
            }
        )
    httpd.shutdown()
    return rows


if __name__ == "__main__":
    for row in main():
        print(json.dumps(row))
