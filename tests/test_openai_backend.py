"""Unit tests of the openai backend against a fake OpenAI-compatible server on 127.0.0.1.

The fake speaks llama-server's dialect (chat-shaped logprobs on /completions, /tokenize)
with a character-level tokenizer (token id = code point), and can be scripted to fail,
stall or be slow, to test retries, timeouts, bounded concurrency and key hygiene.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import given
from hypothesis import strategies as st

from selfteach.backends import load_backend
from selfteach.backends.base import SamplingParams
from selfteach.backends.llama_server import free_port
from selfteach.backends.openai import OpenAIBackend, Step, parse_logprobs
from selfteach.errors import SelfteachError


def _tok(i: int, lp: float) -> dict:
    c = chr(i)
    return {"id": i, "token": c, "bytes": list(c.encode()), "logprob": lp}


class Fake:
    """State of the fake server; tests set `top`, `script`, `delay`, `owner`."""

    def __init__(self):
        self.requests: list[tuple[str, dict, dict]] = []  # (path, body, headers)
        self.script: list[tuple[int, float]] = []  # per request: (HTTP status, seconds to stall)
        self.delay = 0.0
        self.top: list[tuple[str, float]] = [(" True", math.log(0.3)), ("True", math.log(0.1)),
                                             (" False", math.log(0.2))]
        self.owner = "llamacpp"
        self.timings: object = None  # llama.cpp's "timings" object on generation answers
        self.inflight = self.max_inflight = 0
        self.lock = threading.Lock()

    def completion(self, body: dict, chat: bool) -> dict:
        if "logit_bias" in body:  # forced token: log-prob -0.1 * (prefix length)
            (tid, _), = body["logit_bias"].items()
            prompt = body["prompt"]
            steps = [
                {**_tok(int(tid), -0.1 * len(prompt)), "top_logprobs": [_tok(ord("x"), -0.01)]}
            ]
            return {"choices": [{"index": 0, "text": chr(int(tid)), "finish_reason": "length",
                                 "logprobs": {"content": steps}}],
                    "usage": {"prompt_tokens": len(prompt), "completion_tokens": 1}}
        if body["max_tokens"] == 1 and body.get("logprobs"):
            k = body.get("top_logprobs") if chat else body["logprobs"]
            top = [
                {"id": None, "token": t, "bytes": list(t.encode()), "logprob": lp}
                for t, lp in self.top[:k]
            ]
            steps = [{**_tok(ord("T"), self.top[0][1]), "top_logprobs": top}]
            choice = {"index": 0, "finish_reason": "length", "logprobs": {"content": steps}}
            choice.update(
                {"message": {"role": "assistant", "content": "T"}} if chat else {"text": "T"}
            )
            return {"choices": [choice], "usage": {"prompt_tokens": 5, "completion_tokens": 1}}
        # generation: sample j of a prompt says "<j>ab.cd" and stops at a stop string
        out = []
        for j in range(body.get("n", 1)):
            full = f"{j}ab.cd"[: body["max_tokens"]]
            stop = [s for s in body.get("stop") or [] if s in full]
            text = full[: min(full.find(s) for s in stop)] if stop else full
            # + the stop's token
            steps = [_tok(ord(c), -0.5) for c in full[: len(text) + (1 if stop else 0)]]
            choice = {"index": j, "finish_reason": "stop" if stop else "length",
                      "logprobs": {"content": steps} if body.get("logprobs") else None}
            choice.update(
                {"message": {"role": "assistant", "content": text}} if chat else {"text": text}
            )
            out.append(choice)
        answer = {"choices": out, "usage": {"prompt_tokens": 3, "completion_tokens": 4 * len(out)}}
        return answer if self.timings is None else {**answer, "timings": self.timings}


def _handler(fake: Fake):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

        def _send(self, status: int, obj: dict, headers: dict | None = None) -> None:
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            fake.requests.append((self.path, {}, dict(self.headers)))
            self._send(
                200,
                {
                    "object": "list",
                    "data": [
                        {
                            "id": "fake-model",
                            "object": "model",
                            "created": 0,
                            "owned_by": fake.owner,
                        }
                    ],
                },
            )

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
            fake.requests.append((self.path, body, dict(self.headers)))
            if self.path == "/tokenize":
                bos = [1] if body.get("add_special") and fake.owner == "bos" else []
                return self._send(200, {"tokens": bos + [ord(c) for c in body["content"]]})
            if self.path == "/detokenize":
                return self._send(200, {"content": "".join(chr(i) for i in body["tokens"])})
            if self.path == "/apply-template":
                return self._send(
                    200, {"prompt": "<user>" + body["messages"][-1]["content"] + "<bot>"}
                )
            status, stall = fake.script.pop(0) if fake.script else (200, fake.delay)
            with fake.lock:
                fake.inflight += 1
                fake.max_inflight = max(fake.max_inflight, fake.inflight)
            try:
                time.sleep(stall)
            finally:
                # counted out before the reply goes out: a client that got its answer may send
                # the next request before this thread would otherwise run again (a false 4th)
                with fake.lock:
                    fake.inflight -= 1
            try:
                if status != 200:
                    return self._send(
                        status,
                        {"error": {"message": f"scripted {status}"}},
                        {"retry-after-ms": "1"},
                    )
                self._send(200, fake.completion(body, chat=self.path.endswith("chat/completions")))
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                pass

    return Handler


@pytest.fixture
def fake():
    state = Fake()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    yield state
    httpd.shutdown()
    httpd.server_close()


def auth(request: tuple) -> str:
    return {k.lower(): v for k, v in request[2].items()}["authorization"]


def posts(fake: Fake, suffix: str = "completions") -> list[dict]:
    return [b for p, b, _ in fake.requests if p.endswith(suffix)]


# ---- logprob shapes ------------------------------------------------------------------------
def test_parse_logprobs_all_three_shapes():
    llama = {"content": [{"id": 7, "token": " a", "bytes": [32, 97], "logprob": -1.0,
                          "top_logprobs": [{"id": 7, "token": " a", "logprob": -1.0}]}]}
    (s,) = parse_logprobs(llama)
    assert (s.token, s.id, s.logprob, s.nbytes, s.top) == (" a", 7, -1.0, 2, [(" a", 7, -1.0)])
    openai_cmpl = {
        "tokens": [" a"],
        "token_logprobs": [-1.0],
        "top_logprobs": [{" a": -1.0, " b": -2.0}],
    }
    (s,) = parse_logprobs(openai_cmpl)
    assert (s.token, s.id, s.nbytes, s.top) == (
        " a",
        None,
        None,
        [(" a", None, -1.0), (" b", None, -2.0)],
    )
    vllm_ids = {"tokens": ["token_id:42"], "token_logprobs": [-0.5], "top_logprobs": None}
    assert parse_logprobs(vllm_ids)[0].id == 42
    assert parse_logprobs(None) == []


@given(st.lists(st.text(min_size=0, max_size=3), min_size=1, max_size=12), st.data())
def test_trim_keeps_the_shortest_prefix_covering_the_text(pieces, data):
    """Servers cut text at a stop string but may report the token that held it."""
    full = "".join(pieces)
    text = full[: data.draw(st.integers(0, len(full)))]
    steps = [Step(p, i, -1.0, len(p.encode()), []) for i, p in enumerate(pieces)]
    ids = OpenAIBackend._trim(None, steps, text)  # type: ignore[arg-type]
    kept = "".join(pieces[i] for i in ids)
    assert ids == list(range(len(ids)))
    assert kept.startswith(text)
    assert not ids or not "".join(pieces[i] for i in ids[:-1]).encode().__len__() >= len(
        text.encode()
    )


# ---- the protocol against the fake ---------------------------------------------------------
def test_label_logprobs_sums_variants_in_one_top20_request(fake):
    b = OpenAIBackend(fake.url)
    (row,) = b.label_logprobs(
        ["Claim: x\nI think this claim is"],
        {"True": [" True", "True", " true"], "False": [" False", "False"]},
    )
    assert row["True"] == pytest.approx(math.log(0.4))
    assert row["False"] == pytest.approx(math.log(0.2))
    (req,) = posts(fake)
    assert req["max_tokens"] == 1 and req["logprobs"] == 20 and "echo" not in req
    assert req["top_k"] == -1 and req["min_p"] == 0.0  # plain sampling on llama.cpp/vLLM
    assert b.usage.calls == 1 and b.usage.prompt_tokens == 5


def test_label_missing_from_top20_is_scored_exactly(fake):
    fake.top = [(" True", -0.1)]
    b = OpenAIBackend(fake.url)
    (row,) = b.label_logprobs(["ab"], {"True": [" True"], "False": ["F"]})
    # "F" is forced after the prompt "ab" (2 tokens): the fake gives -0.1 * 2
    assert row == {"True": -0.1, "False": pytest.approx(-0.2)}


def test_score_forces_each_continuation_token_after_the_exact_prefix(fake):
    b = OpenAIBackend(fake.url)
    (row,) = b.score(["ab "], [["cd", "e"]])
    # lm-eval split: "ab" + " cd" -> prefixes of length 2, 3, 4; and "ab" + " e" -> 2, 3
    assert row == [pytest.approx(-0.1 * (2 + 3 + 4)), pytest.approx(-0.1 * (2 + 3))]
    forced = [r for r in posts(fake) if "logit_bias" in r]
    assert sorted(tuple(r["prompt"]) for r in forced)[:2] == [(97, 98), (97, 98)]
    assert {(tuple(r["prompt"]), next(iter(r["logit_bias"]))) for r in forced} >= {
        ((97, 98, 32), "99")
    }
    assert all(r["logit_bias"][k] == 100 for r in forced for k in r["logit_bias"])


def test_generate_n_samples_stop_seed_and_token_ids(fake):
    b = OpenAIBackend(fake.url)
    (row,) = b.generate(
        ["hi"],
        SamplingParams(n=2, max_new_tokens=8, temperature=0.7, top_p=0.9, seed=5, stop=["."]),
    )
    assert [g.text for g in row] == ["0ab", "1ab"]
    assert row[0].token_ids == [ord(c) for c in "0ab"]  # the token that held "." is dropped
    assert row[0].finish_reason == "stop" and row[0].num_tokens == 3
    (req,) = posts(fake)
    assert (req["n"], req["seed"], req["stop"], req["temperature"], req["top_p"]) == (
        2,
        5,
        ["."],
        0.7,
        0.9,
    )
    (g,), = b.generate(["hi"], SamplingParams(max_new_tokens=4))
    assert (g.text, g.finish_reason) == ("0ab.", "length")


def test_llamacpp_timings_are_summed_into_usage_and_malformed_ones_ignored(fake):
    b = OpenAIBackend(fake.url)
    fake.timings = {"prompt_n": 2, "prompt_ms": 1.5, "predicted_n": 4, "predicted_ms": 3.0}
    b.generate(["hi", "ho"], SamplingParams(max_new_tokens=4))
    extra = b.usage.extra
    assert (
        extra["evaluated_prompt_tokens"],
        extra["server_prompt_ms"],
        extra["server_decode_ms"],
    ) == (4, 3.0, 6.0)
    fake.timings = {"prompt_n": "2", "prompt_ms": -1.0, "predicted_ms": True}
    b.generate(["hi"], SamplingParams(max_new_tokens=4))
    fake.timings = ["not", "an", "object"]
    b.generate(["hi"], SamplingParams(max_new_tokens=4))
    assert (
        extra["evaluated_prompt_tokens"],
        extra["server_prompt_ms"],
        extra["server_decode_ms"],
    ) == (4, 3.0, 6.0)
    assert b.usage.calls == 4


def test_token_id_prompt_is_sent_as_ids_with_bos_when_the_model_wants_one(fake):
    b = OpenAIBackend(fake.url)
    b.generate([[104, 105]], SamplingParams(max_new_tokens=2))
    assert posts(fake)[-1]["prompt"] == [104, 105]
    fake.owner = "bos"  # the fake's /tokenize adds BOS id 1 with add_special
    b2 = OpenAIBackend(fake.url, tokenizer=None)
    b2.kind = "llamacpp"
    b2.generate([[104, 105]], SamplingParams(max_new_tokens=2))
    assert posts(fake)[-1]["prompt"] == [1, 104, 105]


def test_tokenize_detokenize_and_chat_prompt_use_server_endpoints(fake):
    b = OpenAIBackend(fake.url)
    assert b.tokenize("hé") == [104, 233]
    assert b.detokenize([104, 233]) == "hé"
    assert b.chat_prompt("Q?") == "<user>Q?<bot>"


def test_chat_mode_sends_messages_with_system_and_refuses_token_ids(fake):
    b = OpenAIBackend(fake.url, mode="chat", system="Be brief.")
    p = b.chat_prompt("Q?", system="Judge.")
    b.label_logprobs([p], {"True": ["T"]})
    b.generate(["plain"], SamplingParams(max_new_tokens=3))
    first, second = posts(fake, "chat/completions")
    assert first["messages"] == [
        {"role": "system", "content": "Judge."},
        {"role": "user", "content": "Q?"},
    ]
    assert first["top_logprobs"] == 20 and first["logprobs"] is True
    assert second["messages"][0] == {"role": "system", "content": "Be brief."}
    with pytest.raises(SelfteachError, match="token-id prompts need mode='completions'"):
        b.generate([[1, 2]], SamplingParams())
    with pytest.raises(SelfteachError, match="score\\(\\) needs mode='completions'"):
        b.score(["a"], [["b"]])


def test_generic_openai_server_gets_no_nonstandard_fields(fake):
    fake.owner = "openai"
    b = OpenAIBackend(fake.url)
    b.generate(["hi"], SamplingParams(max_new_tokens=2))
    req = posts(fake)[-1]
    assert "top_k" not in req and "min_p" not in req and "logprobs" not in req
    # no tokenizer, no ids
    assert b.generate(["hi"], SamplingParams(max_new_tokens=2))[0][0].token_ids == []
    with pytest.raises(SelfteachError, match="pass tokenizer="):
        b.tokenize("x")


# ---- failures: retries, timeouts, concurrency, key hygiene ---------------------------------
def test_retries_429_and_5xx_then_succeeds(fake):
    fake.script = [(429, 0), (503, 0), (500, 0)]
    b = OpenAIBackend(fake.url, max_retries=3)
    assert b.generate(["hi"], SamplingParams(max_new_tokens=3))[0][0].text == "0ab"
    assert len(posts(fake)) == 4


def test_retries_exhausted_is_one_line_error(fake):
    fake.script = [(503, 0)] * 3
    b = OpenAIBackend(fake.url, max_retries=2)
    with pytest.raises(SelfteachError) as e:
        b.generate(["hi"], SamplingParams())
    assert "HTTP 503" in str(e.value) and "\n" not in str(e.value) and fake.url in str(e.value)
    assert len(posts(fake)) == 3


def test_client_errors_are_not_retried(fake):
    fake.script = [(400, 0)]
    b = OpenAIBackend(fake.url, max_retries=3)
    with pytest.raises(SelfteachError, match="HTTP 400: scripted 400"):
        b.generate(["hi"], SamplingParams())
    assert len(posts(fake)) == 1


def test_timeout_is_retried_then_reported(fake):
    fake.script = [(200, 1.5)]
    b = OpenAIBackend(fake.url, timeout=0.3, max_retries=1)
    assert b.generate(["hi"], SamplingParams(max_new_tokens=3))[0][0].text == "0ab"
    fake.script = [(200, 1.5), (200, 1.5)]
    with pytest.raises(SelfteachError, match="timed out"):
        b.generate(["hi"], SamplingParams())


def test_concurrency_is_bounded(fake):
    fake.delay = 0.3
    b = OpenAIBackend(fake.url, max_concurrency=3)
    rows = b.generate([f"p{i}" for i in range(9)], SamplingParams(max_new_tokens=3))
    assert [r[0].text for r in rows] == ["0ab"] * 9 and b.usage.calls == 9
    # parallel, never more than 3 at once (a busy box may start 2)
    assert 2 <= fake.max_inflight <= 3


def test_api_key_from_env_is_sent_but_never_logged(fake, monkeypatch, caplog):
    secret = "sk-test-DO-NOT-LOG-1234567890"
    monkeypatch.setenv("MY_SERVER_KEY", secret)
    caplog.set_level(logging.DEBUG)
    b = OpenAIBackend(fake.url, api_key_env="MY_SERVER_KEY", max_retries=1)
    fake.script = [(500, 0), (500, 0)]
    with pytest.raises(SelfteachError) as e:
        b.generate(["hi"], SamplingParams())
    assert auth(fake.requests[0]) == f"Bearer {secret}"
    for text in (str(e.value), repr(b), b.name, caplog.text, json.dumps(b.usage.as_dict())):
        assert secret not in text
    monkeypatch.delenv("MY_SERVER_KEY")
    OpenAIBackend(fake.url, api_key_env="MY_SERVER_KEY")
    assert auth(fake.requests[-1]) == "Bearer EMPTY"


def test_unreachable_server_is_one_line_error():
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(SelfteachError) as e:
        OpenAIBackend(url, max_retries=0)
    msg = str(e.value)
    assert url in msg and "unreachable" in msg and "\n" not in msg


def test_unreachable_server_from_the_cli_is_a_selfteach_error(tmp_path):
    """`main()` turns a SelfteachError into one line + exit 2 (tested in test_cli_foundation)."""
    from typer.testing import CliRunner

    from selfteach.cli import app

    url = f"http://127.0.0.1:{free_port()}/v1"
    r = CliRunner().invoke(
        app, ["eval", "accuracy", "--model", url, "--limit", "2", "--out", str(tmp_path / "r")]
    )
    assert r.exit_code != 0
    assert (
        isinstance(r.exception, SelfteachError)
        and "unreachable" in str(r.exception)
        and url in str(r.exception)
    )


def test_bad_arguments_and_load_backend_routing(fake):
    with pytest.raises(SelfteachError, match="mode 'completion'"):
        OpenAIBackend(fake.url, mode="completion")
    with pytest.raises(SelfteachError, match="max_concurrency 0"):
        OpenAIBackend(fake.url, max_concurrency=0)
    b = load_backend(fake.url, max_concurrency=2)
    assert isinstance(b, OpenAIBackend) and b.model == "fake-model" and b.kind == "llamacpp"
    assert b.max_concurrency == 2


def test_options_in_the_url_query(fake, monkeypatch):
    b = load_backend(fake.url + "?mode=chat&max_concurrency=3&model=other&system=Be+brief.")
    assert (b.mode, b.max_concurrency, b.model, b.system, b.base_url) == (
        "chat",
        3,
        "other",
        "Be brief.",
        fake.url,
    )
    with pytest.raises(SelfteachError, match="server URL option 'temperature'"):
        OpenAIBackend(fake.url + "?temperature=1")
    with pytest.raises(SelfteachError, match="max_concurrency 'x'"):
        OpenAIBackend(fake.url + "?max_concurrency=x")
    with pytest.raises(SelfteachError, match="expected http"):
        OpenAIBackend("http:///v1")


def test_implements_the_backend_protocol(fake):
    from selfteach.backends.base import Backend

    assert isinstance(OpenAIBackend(fake.url), Backend)


def test_llama_server_launcher_without_a_build_is_one_line_error(tmp_path, monkeypatch):
    from selfteach.backends import llama_server

    monkeypatch.setenv("SELFTEACH_CACHE", str(tmp_path))
    assert llama_server.server_binary() is None
    with pytest.raises(SelfteachError, match="llama-server not built: run `make server`"):
        llama_server.LlamaServer("smollm2-135m", engine="llama-server")
    with pytest.raises(SelfteachError, match="engine 'vllm': choose auto, xllamacpp, llama-server"):
        llama_server.engine_command("vllm")
    with pytest.raises(SelfteachError, match="not a .gguf file"):
        llama_server.gguf_path(tmp_path / "nope.txt")
