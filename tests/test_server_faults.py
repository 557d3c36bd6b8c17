"""Server faults: the openai backend against a deterministic fault-injecting server.

`Engine` is a stand-in model that answers every request deterministically from its
content (a hash of the prompt, seed and sample index decides the text and log-probs;
token id = code point), so a run against it has known, repeatable results and any
difference after faults is a transport bug. `FaultServer` speaks llama-server's dialect
on 127.0.0.1 and breaks a deterministic share of requests (by request counter): HTTP 500,
429 with Retry-After, an answer slower than the client's timeout, a reset connection, a
truncated body, invalid JSON, and answers of the wrong shape.
"""

from __future__ import annotations

import hashlib
import json
import math
import socket
import struct
import sys
import threading
import time
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selfteach.backends import load_backend, transport
from selfteach.backends.base import SamplingParams
from selfteach.backends.openai import OpenAIBackend
from selfteach.cli import app
from selfteach.errors import SelfteachError

VOCAB = [
    " True",
    " False",
    "True",
    "False",
    " Yes",
    " No",
    " A",
    " B",
    " 1",
    " 2",
    " 3",
    " 5",
    " 7",
    " 9",
    " the",
    ".",
    "\n",
]
FAULTS = ("500", "429", "slow", "reset", "truncated", "badjson", "shape")
SLOW = 1.2  # seconds a "slow" answer takes: more than the client's --request-timeout in these tests


def _h(*parts) -> int:
    return int.from_bytes(
        hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).digest()[:8], "big"
    )


def _text(prompt) -> str:
    return "".join(chr(i) for i in prompt) if isinstance(prompt, list) else str(prompt)


class Engine:
    """Deterministic answers from the request alone (what a seeded real model gives)."""

    def completion(self, body: dict, chat: bool) -> dict:
        prompt = json.dumps(body["messages"]) if chat else _text(body["prompt"])
        if "logit_bias" in body:  # forced token: its log-prob from the prefix and the token
            ((tid, _),) = body["logit_bias"].items()
            lp = -0.01 - (_h(prompt, tid) % 500) / 100
            tok = {
                "id": int(tid),
                "token": chr(int(tid)),
                "bytes": list(chr(int(tid)).encode()),
                "logprob": lp,
            }
            return self._answer(
                [
                    {
                        "index": 0,
                        "text": chr(int(tid)),
                        "finish_reason": "length",
                        "logprobs": {"content": [{**tok, "top_logprobs": [tok]}]},
                    }
                ],
                prompt,
            )
        if body["max_tokens"] == 1 and body.get("logprobs"):  # next-token distribution
            k = body.get("top_logprobs") if chat else body["logprobs"]
            logits = [(_h(prompt, t) % 1000) / 150 for t in VOCAB]
            z = math.log(sum(math.exp(x) for x in logits)) + 0.1  # 10% of the mass outside VOCAB
            top = sorted(
                ((t, x - z) for t, x in zip(VOCAB, logits, strict=True)), key=lambda p: -p[1]
            )[:k]
            entries = [
                {"id": 1000 + VOCAB.index(t), "token": t, "bytes": list(t.encode()), "logprob": lp}
                for t, lp in top
            ]
            choice = {
                "index": 0,
                "finish_reason": "length",
                "logprobs": {"content": [{**entries[0], "top_logprobs": entries}]},
            }
            choice.update(
                {"message": {"role": "assistant", "content": top[0][0]}}
                if chat
                else {"text": top[0][0]}
            )
            return self._answer([choice], prompt)
        choices = []
        for j in range(body.get("n", 1)):
            key = (prompt, body.get("seed"), j) if body.get("temperature", 0) > 0 else (prompt,)
            full = self._sample(_h(*key))
            cut = [full.find(s) for s in body.get("stop") or [] if s in full]
            text = full[: min(cut)] if cut else full
            stopped = bool(cut) or len(text) < body["max_tokens"]
            text = text[: body["max_tokens"]]
            steps = [
                {
                    "id": ord(c),
                    "token": c,
                    "bytes": list(c.encode()),
                    "logprob": -0.5,
                    "top_logprobs": [],
                }
                for c in text
            ]
            choice = {
                "index": j,
                "finish_reason": "stop" if stopped else "length",
                "logprobs": {"content": steps} if body.get("logprobs") else None,
            }
            choice.update(
                {"message": {"role": "assistant", "content": text}} if chat else {"text": text}
            )
            choices.append(choice)
        return self._answer(choices, prompt)

    @staticmethod
    def _sample(h: int) -> str:
        """A reasoning-like text with a number answer and a judge's box of two scores."""
        words = " ".join(["step"] * (h % 5 + 1))
        return (
            f"Let me think: {words} {h % 97}. So the answer is {h % 13}. "
            f"Scores: \\boxed{{{h % 10 + 1}, {h // 10 % 10 + 1}}}"
        )

    @staticmethod
    def _answer(choices: list[dict], prompt: str) -> dict:
        return {
            "choices": choices,
            "usage": {"prompt_tokens": len(prompt), "completion_tokens": len(choices)},
        }


class FaultServer:
    """llama-server dialect over `Engine`; request number i (from 0, every endpoint) is
    broken when `every` and i % every == every - 1, with kind FAULTS[(i // every) % 7]."""

    def __init__(self, every: int = 0, status: int | None = None):
        self.engine = Engine()
        self.every, self.status = every, status  # status: answer every completion with it
        self.count = 0
        self.script: list[
            str
        ] = []  # kinds of the next requests' faults ("" = none), before `every`
        self.faults: dict[str, int] = {}
        self.log: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda *a: None  # faults break sockets on purpose
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def fault(self) -> str | None:
        with self.lock:
            i, self.count = self.count, self.count + 1
            if self.script:
                kind = self.script.pop(0) or None
            elif not self.every or i % self.every != self.every - 1:
                return None
            else:
                kind = FAULTS[(i // self.every) % len(FAULTS)]
            if kind:
                self.faults[kind] = self.faults.get(kind, 0) + 1
            return kind

    def answer(self, path: str, body: dict) -> dict:
        if path.endswith("/models"):
            return {
                "object": "list",
                "data": [{"id": "stub", "object": "model", "owned_by": "llamacpp"}],
            }
        if path == "/tokenize":
            return {"tokens": [ord(c) for c in body["content"]]}
        if path == "/detokenize":
            return {"content": "".join(chr(i) for i in body["tokens"])}
        if path == "/apply-template":
            return {
                "prompt": "".join(f"<{m['role']}>{m['content']}\n" for m in body["messages"])
                + "<assistant>"
            }
        return self.engine.completion(body, chat=path.endswith("chat/completions"))

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


WRONG_SHAPES = [
    {"choices": []},
    {"object": "error"},
    {"choices": [{"index": 0, "text": 7}]},
    {
        "choices": [{"index": 0, "text": "x", "logprobs": {"content": "oops"}}],
        "tokens": "x",
        "content": 5,
        "prompt": None,
        "data": "x",
    },
]


def _handler(server: FaultServer):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(
            self, status: int, data: bytes, headers: dict | None = None, short: int | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data if short is None else data[:short])
            self.wfile.flush()

        def _serve(self, body: dict) -> None:
            kind = server.fault()
            if kind == "reset":  # RST instead of an answer
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.close_connection = True
                self.connection.close()
                return
            if kind in ("500", "429"):
                headers = {"Retry-After": "1"} if kind == "429" else {}
                return self._send(
                    int(kind),
                    json.dumps({"error": {"message": f"injected {kind}"}}).encode(),
                    headers,
                )
            if server.status and "completions" in self.path:
                return self._send(
                    server.status,
                    json.dumps({"error": {"message": "bad request: n too big"}}).encode(),
                )
            if kind == "shape":
                return self._send(
                    200, json.dumps(WRONG_SHAPES[server.count % len(WRONG_SHAPES)]).encode()
                )
            data = json.dumps(server.answer(self.path, body)).encode()
            if kind == "deep":  # valid JSON nested beyond Python's recursion limit
                return self._send(200, b"[" * 100_000 + b"]" * 100_000)
            if kind == "slow":
                time.sleep(SLOW)
            if kind == "badjson":  # a complete HTTP answer whose JSON is cut
                return self._send(200, data[: len(data) // 2])
            if kind == "truncated":  # the connection drops mid-body
                self._send(200, data, short=len(data) // 2)
                self.close_connection = True
                return
            self._send(200, data)

        def do_GET(self):
            server.log.append((self.path, {}))
            try:
                self._serve({})
            except OSError:
                pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
            server.log.append((self.path, body))
            try:
                self._serve(body)
            except OSError:  # the client gave up on a slow answer
                pass

    return Handler


@pytest.fixture
def fast_backoff(monkeypatch):
    """Short waits between attempts: the policy is the same, the test is faster."""
    monkeypatch.setattr(transport, "BACKOFF_BASE", 0.02)


@pytest.fixture
def clean():
    s = FaultServer()
    yield s
    s.close()


@pytest.fixture
def faulty():
    s = FaultServer(every=5)  # 20% of requests
    yield s
    s.close()


def _cli(args: list[str]) -> object:
    r = CliRunner().invoke(app, args)
    if r.exit_code != 0:
        raise AssertionError(f"{args}: exit {r.exit_code}: {r.output[-2000:]} {r.exception!r}")
    return r


VARY = {
    "seconds",
    "time",
    "seconds_this_session",
    "retries",
}  # wall time, and the retries themselves


def _strip(obj):
    """Drop what legitimately differs between two runs."""
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in VARY}
    if isinstance(obj, list):
        return [_strip(x) for x in obj]
    return obj


def _same_run(a: Path, b: Path, files: list[str], urls: tuple[str, str]) -> None:
    """The files of run `a` (against server urls[0]) equal those of run `b` (urls[1])."""
    for name in files:
        fa, fb = a / name, b / name
        assert fa.exists() and fb.exists(), name
        ta, tb = fa.read_text().replace(urls[0], "URL"), fb.read_text().replace(urls[1], "URL")
        load = (
            (lambda t: [json.loads(x) for x in t.splitlines() if x.strip()])
            if name.endswith(".jsonl")
            else json.loads
        )
        assert _strip(load(ta)) == _strip(load(tb)), f"{name} differs after faults"


# ---- the four commands through 20% mixed faults ---------------------------------------------
OPTS = ["--request-timeout", "0.6", "--max-retries", "6"]

COMMANDS = {  # (arguments, the files of the run directory that must be identical)
    "eval accuracy": (
        "eval accuracy --limit 10 --samples 2 --max-new-tokens 40 --batch-size 5".split(),
        ["outputs.jsonl", "summary.json", "metrics.json"],
    ),
    "elicit": (
        "elicit --claims builtin:capitals --limit 8 --iters 6 --no-progress "
        "--max-context-tokens 400".split(),
        ["labels.jsonl", "icm_result.json", "metrics.jsonl"],
    ),
    "judge eval": (
        "judge eval --limit 8 --k 1,2 --max-new-tokens 90".split(),
        ["judgments.jsonl", "summary.json"],
    ),
    "eval anytime": (
        "eval anytime --limit 4 --budgets 8,16,32 --answer-tokens 12 --samples 2".split(),
        ["outputs.jsonl", "summary.json", "anytime.json"],
    ),
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_command_through_faults_equals_a_fault_free_run(
    name, clean, faulty, fast_backoff, tmp_path
):
    args, files = COMMANDS[name]
    _cli(args + ["--model", clean.url, "--out", str(tmp_path / "clean")])
    _cli(args + ["--model", faulty.url, "--out", str(tmp_path / "faulty")] + OPTS)
    _same_run(tmp_path / "clean", tmp_path / "faulty", files, (clean.url, faulty.url))
    assert set(faulty.faults) == set(FAULTS), faulty.faults  # every kind of fault was met
    assert sum(faulty.faults.values()) == faulty.count // 5


# ---- retries: what is retried, how, and what is sent again ----------------------------------
def test_a_retried_request_is_byte_identical_and_retried_alone(fast_backoff):
    s = FaultServer(every=3)  # requests 2, 5, 8, ... fail (500, 429, slow, ...)
    try:
        b = OpenAIBackend(s.url, timeout=0.6, max_retries=6, max_concurrency=4)
        params = SamplingParams(n=2, max_new_tokens=30, temperature=0.8, seed=11)
        got = b.generate([f"q{i}" for i in range(9)], params)
    finally:
        s.close()
    ref = FaultServer()
    try:
        want = OpenAIBackend(ref.url).generate([f"q{i}" for i in range(9)], params)
    finally:
        ref.close()
    assert [[g.text for g in r] for r in got] == [[g.text for g in r] for r in want]
    sent = [body for path, body in s.log if path.endswith("/completions")]
    by_prompt: dict[str, list[dict]] = {}
    for body in sent:
        by_prompt.setdefault(body["prompt"], []).append(body)
    assert all(
        len({json.dumps(x, sort_keys=True) for x in bodies}) == 1 for bodies in by_prompt.values()
    )
    # each prompt was sent once plus once per fault it met: a fault never re-sends the batch
    assert s.log[0][0] == "/v1/models" and s.faults and len(s.log) == 1 + len(sent)
    assert len(sent) == 9 + sum(s.faults.values())
    assert b.usage.calls == 9 and b.usage.extra["retries"] == len(sent) - 9


def test_retry_after_is_honoured(clean):
    clean.script = ["500", "429"]  # the probe meets a 500, then a 429 with Retry-After: 1
    t0 = time.monotonic()
    b = OpenAIBackend(clean.url, max_retries=3)
    took = time.monotonic() - t0
    assert b.model == "stub" and clean.faults == {"500": 1, "429": 1}
    assert 1.0 <= took < 3.5  # the 429's Retry-After: 1 s, after a 0.25-0.5 s backoff


def test_bodies_that_are_not_json_or_too_deep_are_retried(clean, fast_backoff):
    clean.script = ["", "badjson", "deep", "truncated"]  # the probe passes, generate meets 3 faults
    b = OpenAIBackend(clean.url, max_retries=3)
    ((g,),) = b.generate(["x"], SamplingParams(max_new_tokens=8))
    assert g.text == "Let me t" and b.usage.extra["retries"] == 3


def test_retry_after_parsing():
    assert transport.retry_after({"retry-after": "3"}) == 3.0
    assert transport.retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 5))
    assert 3.0 <= transport.retry_after({"retry-after": date}) <= 5.0
    assert (
        transport.retry_after({"retry-after": "soon"}) is None and transport.retry_after({}) is None
    )


def test_backoff_doubles_with_jitter_and_is_capped():
    import random

    rng = random.Random(0)
    for attempt in range(1, 10):
        full = min(transport.BACKOFF_CAP, transport.BACKOFF_BASE * 2 ** (attempt - 1))
        assert all(full / 2 <= transport.backoff(attempt, rng) <= full for _ in range(50))


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_client_errors_fail_at_once_with_status_and_body(status, tmp_path):
    s = FaultServer(status=status)
    try:
        r = CliRunner().invoke(
            app,
            ["eval", "accuracy", "--model", s.url, "--limit", "2", "--out", str(tmp_path / "r")],
        )
    finally:
        s.close()
    msg = str(r.exception)
    assert r.exit_code != 0 and isinstance(r.exception, SelfteachError)
    assert (
        f"HTTP {status}" in msg
        and "bad request: n too big" in msg
        and s.url in msg
        and "\n" not in msg
    )
    prompts = [b["prompt"] for p, b in s.log if p.endswith("/completions")]
    assert prompts and len(prompts) == len(set(prompts))  # never retried


def test_408_and_5xx_are_retried(clean, fast_backoff):
    for status in (408, 502, 503):
        clean.status, clean.log = status, []
        b = OpenAIBackend(clean.url, max_retries=2)
        with pytest.raises(SelfteachError, match=f"failed after 3 attempts .*HTTP {status}"):
            b.generate(["x"], SamplingParams(max_new_tokens=4))
        assert sum(p.endswith("/completions") for p, _ in clean.log) == 3


def test_wrong_shape_every_time_ends_in_one_line_naming_the_shape(clean, fast_backoff):
    clean.engine.completion = lambda body, chat: {"choices": [{"index": 0, "text": None}]}
    b = OpenAIBackend(clean.url, max_retries=2)
    with pytest.raises(SelfteachError) as e:
        b.generate(["x"], SamplingParams(max_new_tokens=4))
    msg = str(e.value)
    assert "failed after 3 attempts" in msg and "wrong shape: a choice without its text" in msg
    assert clean.url in msg and "\n" not in msg


def test_black_hole_server_fails_within_the_bound_with_an_accurate_message(tmp_path):
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)  # connections are accepted by the kernel, never answered
    url = f"http://127.0.0.1:{hole.getsockname()[1]}/v1"
    try:
        t0 = time.monotonic()
        r = CliRunner().invoke(
            app,
            [
                "eval",
                "accuracy",
                "--model",
                url,
                "--limit",
                "2",
                "--out",
                str(tmp_path / "r"),
                "--request-timeout",
                "2",
                "--max-retries",
                "2",
            ],
        )
        took = time.monotonic() - t0
    finally:
        hole.close()
    msg = str(r.exception)
    assert isinstance(r.exception, SelfteachError) and r.exit_code != 0
    assert 6 <= took < 15, took  # 3 attempts x 2 s + two waits of at most 0.5 s and 1 s
    assert "failed after 3 attempts" in msg and "timed out" in msg and url in msg, msg
    assert not (tmp_path / "r").exists()


def test_a_trickling_answer_is_cut_at_the_timeout():
    """A server that sends a byte every 0.2 s never trips a per-read timeout; the deadline
    of the attempt still does."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def trickle():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            conn.recv(65536)
            head = (
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
            )
            try:
                conn.sendall(head)
                for _ in range(100):
                    conn.sendall(b" ")
                    time.sleep(0.2)
            except OSError:
                pass
            conn.close()

    threading.Thread(target=trickle, daemon=True).start()
    t = transport.Transport(
        f"http://127.0.0.1:{srv.getsockname()[1]}/v1", {}, timeout=1.0, max_retries=1
    )
    t0 = time.monotonic()
    with pytest.raises(SelfteachError, match="failed after 2 attempts .* timed out"):
        t.request("GET", "/v1/models")
    assert time.monotonic() - t0 < 4.0
    srv.close()


def test_one_request_failing_for_good_stops_its_batch_quickly(clean, fast_backoff):
    clean.engine.completion = _fail_on("q3", clean.engine.completion)
    b = OpenAIBackend(clean.url, timeout=5, max_retries=2, max_concurrency=2)
    t0 = time.monotonic()
    with pytest.raises(SelfteachError, match="wrong shape"):
        b.generate([f"q{i}" for i in range(40)], SamplingParams(max_new_tokens=4))
    assert time.monotonic() - t0 < 2  # 40 prompts at 0.1 s, 2 at a time, would take 2 s
    assert sum(p.endswith("/completions") for p, _ in clean.log) < 20  # the rest never started


def _fail_on(marker: str, real):
    """Answers with the wrong shape for prompts containing `marker`, slowly for the others."""

    def completion(body, chat):
        if marker in str(body.get("prompt")):
            return {"choices": []}
        time.sleep(0.1)
        return real(body, chat)

    return completion


# ---- options -----------------------------------------------------------------------------------
def test_options_reach_the_backend_and_hf_ignores_them(clean, monkeypatch):
    from selfteach.backends.options import server_settings

    with server_settings(request_timeout=7.5, max_retries=1):
        b = load_backend(clean.url, batch_size=4)  # a server ignores local sizing options
        assert (b._http_client.timeout, b._http_client.max_retries) == (7.5, 1)
        b2 = load_backend(clean.url, timeout=3.0)  # an explicit argument wins
        assert (b2._http_client.timeout, b2._http_client.max_retries) == (3.0, 1)
    assert load_backend(clean.url)._http_client.timeout == 120.0
    seen = {}
    fake_hf = types.SimpleNamespace(HFBackend=lambda model, **kw: seen.update(kw) or "hf")
    monkeypatch.setitem(sys.modules, "selfteach.backends.hf", fake_hf)  # no torch import
    assert load_backend("tiny-random", timeout=2.0, max_retries=1, batch_size=4) == "hf"
    assert seen == {"batch_size": 4}


@pytest.mark.parametrize(
    "args, flag",
    [
        (["--request-timeout", "0"], "--request-timeout 0.0"),
        (["--request-timeout", "nan"], "--request-timeout nan"),
        (["--max-retries", "-1"], "--max-retries -1"),
        (["--max-retries", "1000"], "--max-retries 1000"),
    ],
)
def test_bad_option_values_are_one_line_errors_before_anything_runs(args, flag, tmp_path):
    for cmd in (
        ["eval", "accuracy"],
        ["elicit", "--claims", "builtin:capitals"],
        ["judge", "eval"],
        ["eval", "anytime"],
        ["improve"],
    ):
        r = CliRunner().invoke(
            app, cmd + ["--model", "http://127.0.0.1:9/v1", "--out", str(tmp_path / "r")] + args
        )
        assert isinstance(r.exception, SelfteachError) and str(r.exception).startswith(flag), (
            cmd,
            r.output,
        )
        assert not (tmp_path / "r").exists()


def test_a_kept_alive_connection_closed_while_idle_is_reopened_without_a_retry():
    """llama-server and vLLM keep connections alive and may close idle ones; that must not
    cost an attempt (with --max-retries 0 it would fail a healthy run)."""

    ports = []

    class KeepAlive(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            ports.append(self.client_address[1])
            data = b'{"data": [{"id": "m"}]}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.close_connection = self.path == "/close"  # closed without telling the client

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), KeepAlive)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        t = transport.Transport(f"http://127.0.0.1:{httpd.server_address[1]}/v1", {}, max_retries=0)
        for _ in range(3):
            assert t.request("GET", "/v1/models") == {"data": [{"id": "m"}]}
        assert len(ports) == 3 and len(set(ports)) == 1  # one connection, kept alive
        t.request("GET", "/close")
        time.sleep(0.2)  # the server has closed the idle connection by now
        assert t.request("GET", "/v1/models") == {"data": [{"id": "m"}]}
        assert len(ports) == 5 and ports[4] != ports[3]  # reopened, and not counted as a retry
    finally:
        httpd.shutdown()
        httpd.server_close()
