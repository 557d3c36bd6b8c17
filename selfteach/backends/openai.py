"""OpenAI-compatible server backend: vLLM, SGLang, llama.cpp's llama-server, or any server
that speaks the OpenAI completions / chat API.

How each `Backend` call maps onto the API (one HTTP request per prompt, at most
`max_concurrency` in flight; every answer is checked for the shape the request asks for,
and a fault (408/429/5xx, timeout, dropped connection, truncated or malformed answer) is
retried alone with backoff, bounded in attempts and time: see `selfteach.backends.transport`):

- `label_logprobs` / `top_logprobs`: ONE generated token with the top-20 log-probs
  (`max_tokens=1, logprobs=20`); a label's probability is the sum over its surface variants
  found there. We never ask for prompt log-probs (`echo`): they disable vLLM's prefix cache.
  A label none of whose variants reach the top 20 is scored exactly with a forced token
  (below), so its log-prob is never silently -inf.
- `score` (multi-token continuations): each continuation token is *forced* with
  `logit_bias={token: +100}` after the exact token prefix, one request per token; the
  server reports the token's log-prob from the raw logits (llama-server, vLLM V1's default
  `raw_logprobs`). This needs no `echo` (llama-server has none, see the platform notes), so
  it works on every server tested; a server that reports biased log-probs is detected and
  refused. Context/continuation split follows lm-eval-harness, as in the hf backend.
- `generate`: `n` samples in one request, with stop strings and seed; a prompt may be a
  list of token ids (completions API), so anytime evaluation can continue an exact prefix.
  Token ids come from the response (llama-server's `logprobs.content[].id`; vLLM's
  `return_tokens_as_token_ids`), else from re-tokenising the text.
- `tokenize` / `detokenize` / `chat_prompt`: a local HF tokenizer if given (`tokenizer=`),
  else the server's endpoints (llama-server `/tokenize`, `/detokenize`, `/apply-template`;
  vLLM `/tokenize`, `/detokenize`).

`mode="completions"` (default) sends prompts as raw text: use it for base models, and for
instruct models with prompts built by `chat_prompt()`. `mode="chat"` sends each prompt as
one user message to `/chat/completions` (the server applies the template); it cannot
continue token-id prefixes or score forced continuations.

The API key is read from the environment variable named by `api_key_env` (local servers
need none) and is never logged, printed or put in an error message.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from selfteach.backends.base import (
    Backend,
    ChatTemplate,
    Generation,
    Prompt,
    SamplingParams,
    TokenContinuation,
    Usage,
)
from selfteach.backends.endpoints import check_same_model, open_transport, parse_endpoints
from selfteach.backends.transport import Aborted, BadResponse
from selfteach.errors import SelfteachError

TOP_K = 20  # top log-probs per label-scoring request (OpenAI's and vLLM's default cap)
FORCE_BIAS = 100.0  # logit_bias that forces a token (OpenAI's maximum)


class ChatText(str):
    """A user message returned by `chat_prompt` in chat mode; remembers its system prompt."""

    system: str | None = None


@dataclass
class Step:
    """One generated position as the server reports it (any of the API shapes)."""

    token: str
    id: int | None
    logprob: float
    nbytes: int | None  # length in UTF-8 bytes, when the server says
    top: list[tuple[str, int | None, float]]


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(key, default)
    val = getattr(obj, key, default)
    if val is default and getattr(obj, "model_extra", None):
        val = obj.model_extra.get(key, default)
    return val


def _token_id(token: str, given: Any) -> int | None:
    if given is not None:
        return int(given)
    if token.startswith("token_id:"):  # vLLM with return_tokens_as_token_ids
        return int(token.removeprefix("token_id:"))
    return None


def parse_logprobs(lp: Any) -> list[Step]:
    """Adapter over the three shapes of `choice.logprobs`:

    - chat API, and llama-server even on /completions: `{"content": [{"id"?, "token",
      "bytes", "logprob", "top_logprobs": [{"token", "logprob", ...}]}]}`;
    - OpenAI/vLLM completions: `{"tokens": [...], "token_logprobs": [...],
      "top_logprobs": [{token: logprob}, ...]}`.
    """
    if lp is None:
        return []
    content = _get(lp, "content")
    steps: list[Step] = []
    if content is not None:
        for c in content:
            tok = _get(c, "token") or ""
            b = _get(c, "bytes")
            top = [
                (
                    _get(t, "token") or "",
                    _token_id(_get(t, "token") or "", _get(t, "id")),
                    float(_get(t, "logprob")),
                )
                for t in (_get(c, "top_logprobs") or [])
            ]
            steps.append(Step(tok, _token_id(tok, _get(c, "id")), float(_get(c, "logprob")),
                              len(b) if b is not None else None, top))
        return steps
    tokens = _get(lp, "tokens") or []
    lps = _get(lp, "token_logprobs") or []
    tops = _get(lp, "top_logprobs") or [None] * len(tokens)
    for tok, logprob, t in zip(tokens, lps, tops, strict=False):
        top = [(k, _token_id(k, None), float(v)) for k, v in (t or {}).items()]
        steps.append(
            Step(
                tok,
                _token_id(tok, None),
                -math.inf if logprob is None else float(logprob),
                None,
                top,
            )
        )
    return steps


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _nonneg_int(x: Any) -> int:
    return x if _is_int(x) and x > 0 else 0


def check_completion(obj: Any, *, chat: bool, n: int, top: int) -> None:
    """Raise BadResponse unless `obj` answers a completions (or chat) request for `n`
    choices: each with its text, and with well-formed log-probs wherever they are present;
    `top` > 0 also requires the top log-probs of the first generated token."""
    choices = obj.get("choices") if isinstance(obj, dict) else None
    if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
        raise BadResponse("no 'choices' list")
    if len(choices) != n:
        raise BadResponse(f"{len(choices)} choices for n={n}")
    index = [c.get("index", 0 if n == 1 else None) for c in choices]
    if sorted(i if _is_int(i) else -1 for i in index) != list(range(n)):
        raise BadResponse(f"choice indexes {index} for n={n}")
    for c in choices:
        if chat:
            msg = c.get("message")
            if not isinstance(msg, dict) or not isinstance(msg.get("content"), (str, type(None))):
                raise BadResponse("a choice without a message")
        elif not isinstance(c.get("text"), str):
            raise BadResponse("a choice without its text")
        lp = c.get("logprobs")
        if lp is None and not top:
            continue
        try:
            steps = parse_logprobs(lp)
        except (TypeError, ValueError, AttributeError):
            raise BadResponse("malformed logprobs") from None
        if not all(isinstance(s.token, str) and not math.isnan(s.logprob)
                   and all(isinstance(t, str) and not math.isnan(v) for t, _, v in s.top)
                   for s in steps):
            raise BadResponse("logprobs with a non-text token or a NaN log-prob")
        if top and not (steps and steps[0].top):
            raise BadResponse("no top logprobs (does the server support logprobs?)")


def _logsumexp(xs: Iterable[float]) -> float:
    xs = [x for x in xs if x != -math.inf]
    if not xs:
        return -math.inf
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


def _as_int(name: str, value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SelfteachError(f"{name} {value!r}: expected an integer") from None


class OpenAIBackend(Backend, TokenContinuation, ChatTemplate):
    """`Backend` over an OpenAI-compatible server. See the module docstring. Capabilities:
    `TokenContinuation` in completions mode (`continues_token_prompts`), `ChatTemplate`
    (known with a local tokenizer); the shared-prefix ones need a KV cache this process does
    not hold (a server's prefix cache does that work).

    Args:
        base_url: the API root, e.g. `http://127.0.0.1:8000/v1` (vLLM) or
            `http://127.0.0.1:8080/v1` (llama-server).
        model: the served model name; default: the first one `/models` lists.
        api_key_env: environment variable holding the API key (unset: no key, "EMPTY").
        mode: "completions" (raw text prompts; base models, or text from `chat_prompt`) or
            "chat" (each prompt is one user message; instruct models behind a chat-only API).
        max_concurrency: requests in flight at once (a thread pool).
        timeout: seconds one attempt of a request may take in total before it is retried
            (CLI: --request-timeout).
        max_retries: retries per request on 408/429/5xx, timeouts, connection errors and
            truncated or malformed answers, with exponential backoff and jitter (0.5 s
            doubling to 8 s, or the server's Retry-After up to 30 s) (CLI: --max-retries).
        tokenizer: a local HF tokenizer (object, or a path/alias for AutoTokenizer) used for
            tokenize/detokenize/chat_prompt instead of the server's endpoints.
        system: chat mode only: system message for prompts not built by `chat_prompt`.

    Options can also ride in the URL's query string, so `--model URL` on the command line
    can set them: `http://127.0.0.1:8000/v1?mode=chat&tokenizer=Qwen/Qwen2.5-0.5B-Instruct`
    (keys: model, mode, tokenizer, api_key_env, max_concurrency, system).
    """

    def __init__(self, base_url: str, model: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 mode: str = "completions", max_concurrency: int = 8, timeout: float = 120.0,
                 max_retries: int = 3, tokenizer: Any = None, system: str | None = None):
        # one URL, URL,URL,... or @FILE (backends.endpoints)
        urls, query = parse_endpoints(base_url)
        base_url, chosen = urls[0], model or query.get("model")
        model, mode, tokenizer = (
            model or query.get("model"),
            query.get("mode", mode),
            tokenizer or query.get("tokenizer"),
        )
        api_key_env, system = query.get("api_key_env", api_key_env), system or query.get("system")
        max_concurrency = _as_int("max_concurrency", query.get("max_concurrency", max_concurrency))
        if mode not in ("completions", "chat"):
            raise SelfteachError(f"mode {mode!r}: choose completions or chat")
        if max_concurrency < 1:
            raise SelfteachError(f"max_concurrency {max_concurrency}: must be >= 1")
        self.base_url = base_url.rstrip("/")
        self.mode = mode
        self.system = system
        self.max_concurrency = max_concurrency
        self.usage = Usage()
        self._lock = threading.Lock()
        self._local = threading.local()  # the batch a pool thread works for (to stop its retries)
        key = os.environ.get(api_key_env) or "EMPTY"
        self._http_client = open_transport(urls, {"Authorization": f"Bearer {key}"},
                                           timeout, max_retries, max_concurrency)
        self._pool = ThreadPoolExecutor(
            max_workers=max_concurrency * len(urls), thread_name_prefix="selfteach-openai"
        )
        from urllib.parse import urlsplit

        self._path = urlsplit(self.base_url).path.rstrip("/")  # /v1
        self._root = self._path[: -len("/v1")] if self._path.endswith("/v1") else self._path
        self.kind, served = self._probe()
        self.model = model or served
        check_same_model(
            self._http_client, f"{self._path}/models", self.model, explicit=chosen is not None
        )
        self.name = f"{self._http_client.base_url}#{self.model}"
        self.tokenizer = self._load_tokenizer(tokenizer)
        self._bos: list[int] | None = None

    @property
    def continues_token_prompts(self) -> bool:
        """`TokenContinuation`: the completions API takes token ids; the chat API takes text
        only."""
        return self.mode == "completions"

    @property
    def chat_template(self) -> str | None:
        """`ChatTemplate`: the local tokenizer's, if given (the server's own is not read)."""
        return getattr(self.tokenizer, "chat_template", None) or None

    def __repr__(self) -> str:  # never shows the key
        return (
            f"OpenAIBackend({self.base_url!r}, model={self.model!r}, mode={self.mode!r}, "
            f"kind={self.kind!r})"
        )

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._http_client.close()

    def __enter__(self) -> OpenAIBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- plumbing -----------------------------------------------------------------------
    def _send(self, method: str, path: str, payload: dict | None = None,
              check: Callable[[Any], None] | None = None) -> Any:
        """One request, validated by `check` and retried alone on faults (see transport);
        a pool thread stops retrying once another request of its batch has failed."""
        stop = getattr(self._local, "stop", None)
        return self._http_client.request(method, path, payload, check, stop=stop,
                                         on_retry=self._retried)

    def _retried(self) -> None:
        with self._lock:  # in the usage record: a flaky server shows, results do not change
            self.usage.extra["retries"] = self.usage.extra.get("retries", 0) + 1

    def _map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        """Run `fn` over items with at most `max_concurrency` requests in flight, in order.
        A request that fails for good stops the others (queued ones never start, running
        ones stop retrying) and its error is raised."""
        if len(items) <= 1:
            return [fn(x) for x in items]
        stop = threading.Event()

        def run(x: Any) -> Any:
            self._local.stop = stop
            try:
                return fn(x)
            finally:
                self._local.stop = None

        futures = [self._pool.submit(run, x) for x in items]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
        finally:  # a failure (or Ctrl-C): queued requests never start, running ones stop retrying
            if not all(f.done() for f in futures):
                stop.set()
                for f in futures:
                    f.cancel()
        wait(futures)
        errors = [e for e in (f.exception() for f in futures if not f.cancelled()) if e is not None]
        if errors:
            raise next((e for e in errors if not isinstance(e, Aborted)), errors[0])
        return [f.result() for f in futures]

    def _count(self, resp: Any) -> None:
        u = _get(resp, "usage")
        u = u if isinstance(u, dict) else {}  # usage is informational: a malformed one is ignored
        details = _get(u, "prompt_tokens_details")
        with self._lock:
            self.usage.calls += 1
            self.usage.prompt_tokens += _nonneg_int(_get(u, "prompt_tokens"))
            self.usage.generated_tokens += _nonneg_int(_get(u, "completion_tokens"))
            cached = _nonneg_int(_get(details, "cached_tokens") if isinstance(details, dict) else 0)
            extra = self.usage.extra
            if cached:
                extra["cached_prompt_tokens"] = extra.get("cached_prompt_tokens", 0) + cached
            # llama.cpp's own account: prompt tokens it evaluated (the rest came from its
            # prompt cache) and its compute time, which tells server time from ours
            timings = _get(resp, "timings")
            if isinstance(timings, dict):
                for key, name in (
                    ("prompt_n", "evaluated_prompt_tokens"),
                    ("prompt_ms", "server_prompt_ms"),
                    ("predicted_ms", "server_decode_ms"),
                ):
                    value = _get(timings, key)
                    if (
                        isinstance(value, (int, float))
                        and not isinstance(value, bool)
                        and value >= 0
                    ):
                        extra[name] = extra.get(name, 0) + value

    def _http(self, path: str, payload: dict, key: str, kind: type) -> Any:
        """`answer[key]` of a POST to a non-OpenAI endpoint at the server root (tokenize,
        apply-template); `kind` list means a list of token ids."""

        def check(obj: Any) -> None:
            val = obj.get(key) if isinstance(obj, dict) else None
            bad_ids = kind is list and isinstance(val, list) and not all(_is_int(t) for t in val)
            if not isinstance(val, kind) or bad_ids:
                what = "token ids" if kind is list else "text"
                raise BadResponse(f"{path} answered without {key!r} as {what}")

        return self._send("POST", f"{self._root}{path}", payload, check)[key]

    def _probe(self) -> tuple[str, str]:
        """(server kind, first served model) from GET /models (retried like every request:
        a server still starting may refuse connections for a moment)."""

        def check(obj: Any) -> None:
            data = obj.get("data") if isinstance(obj, dict) else None
            if not isinstance(data, list) or not all(
                    isinstance(m, dict) and isinstance(m.get("id"), str) for m in data):
                raise BadResponse("/models answered without a 'data' list of models with ids")

        data = self._send("GET", f"{self._path}/models", None, check)["data"]
        if not data:
            raise SelfteachError(f"server {self.base_url}: /models lists no model")
        owner = str(_get(data[0], "owned_by", "") or "").lower()
        kind = (
            "llamacpp"
            if "llama" in owner
            else "vllm"
            if "vllm" in owner
            else "sglang"
            if "sglang" in owner
            else "openai"
        )
        return kind, str(data[0]["id"])

    def _load_tokenizer(self, tokenizer: Any) -> Any:
        if tokenizer is None or not isinstance(tokenizer, str):
            return tokenizer
        from transformers import AutoTokenizer

        from selfteach.backends.models import resolve

        return AutoTokenizer.from_pretrained(str(resolve(tokenizer)))

    def _extra(self) -> dict:
        """Non-OpenAI sampling fields: plain temperature/top-p sampling, as in the hf backend
        (llama-server defaults to top_k=40, min_p=0.05; vLLM may apply the model's
        generation_config). -1 disables top-k on llama.cpp, vLLM and SGLang alike."""
        if self.kind == "openai":
            return {}
        extra: dict[str, Any] = {"top_k": -1, "min_p": 0.0}
        if self.kind == "llamacpp":
            extra["repeat_penalty"] = 1.0
        return extra

    # ---- tokens -------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        return self._tokenize(text, special=False)

    def _tokenize(self, text: str, special: bool) -> list[int]:
        if self.tokenizer is not None:
            return list(self.tokenizer.encode(text, add_special_tokens=special))
        if self.kind == "llamacpp":
            payload = {"content": text, "add_special": special}
            return [int(t) for t in self._http("/tokenize", payload, "tokens", list)]
        if self.kind == "vllm":
            payload = {"model": self.model, "prompt": text, "add_special_tokens": special}
            return [int(t) for t in self._http("/tokenize", payload, "tokens", list)]
        raise SelfteachError(
            f"server {self.base_url}: has no tokenize endpoint; pass tokenizer=PATH_OR_ALIAS"
        )

    def detokenize(self, ids: Sequence[int]) -> str:
        ids = [int(i) for i in ids]
        if not ids:
            return ""
        if self.tokenizer is not None:
            return self.tokenizer.decode(ids, skip_special_tokens=True)
        if self.kind == "llamacpp":
            return self._http("/detokenize", {"tokens": ids}, "content", str)
        if self.kind == "vllm":
            return self._http("/detokenize", {"model": self.model, "tokens": ids}, "prompt", str)
        raise SelfteachError(
            f"server {self.base_url}: has no detokenize endpoint; pass tokenizer=PATH_OR_ALIAS"
        )

    def _bos_ids(self) -> list[int]:
        """[bos] when the model expects one (Gemma), else []; token-id prompts get it
        prepended like the hf backend does (servers add it only to text prompts)."""
        if self._bos is None:
            self._bos = self._tokenize("", special=True)[:1]
        return self._bos

    def _ids(self, prompt: Prompt) -> list[int]:
        ids = list(prompt) if isinstance(prompt, list) else self.tokenize(prompt)
        bos = self._bos_ids()
        return bos + ids if bos and (not ids or ids[0] != bos[0]) else ids

    def chat_prompt(self, user: str, system: str | None = None) -> str:
        if self.mode == "chat":
            out = ChatText(user)
            out.system = system
            return out
        msgs = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": user}
        ]
        if self.tokenizer is not None:
            if not getattr(self.tokenizer, "chat_template", None):
                return user
            return self.tokenizer.apply_chat_template(
                msgs, tokenize=False, add_generation_prompt=True
            )
        if self.kind == "llamacpp":
            return self._http("/apply-template", {"messages": msgs}, "prompt", str)
        raise SelfteachError(f"server {self.base_url}: cannot apply the chat template here; "
                             "pass tokenizer=PATH_OR_ALIAS or use mode='chat'")

    # ---- one request --------------------------------------------------------------------
    def _messages(self, prompt: Prompt) -> list[dict]:
        if isinstance(prompt, list):
            raise SelfteachError(
                "token-id prompts need mode='completions' (the chat API takes text only)"
            )
        system = prompt.system if isinstance(prompt, ChatText) else self.system
        return ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": str(prompt)}
        ]

    def _request(
        self,
        prompt: Prompt,
        *,
        max_tokens: int,
        top: int = 0,
        temperature: float = 0.0,
        top_p: float = 1.0,
        n: int = 1,
        stop: list[str] | None = None,
        seed: int | None = None,
        logit_bias: dict[str, float] | None = None,
    ) -> Any:
        """One completions/chat request, its answer checked for the shape asked (n choices,
        text, log-probs) and retried on faults; returns the answer (choices, usage)."""
        body: dict[str, Any] = dict(model=self.model, max_tokens=max_tokens,
                                    temperature=temperature, top_p=top_p, n=n, **self._extra())
        if stop:
            body["stop"] = stop
        if seed is not None:
            body["seed"] = seed
        if logit_bias:
            body["logit_bias"] = logit_bias
        chat = self.mode == "chat"
        if chat:
            if top:
                body.update(logprobs=True, top_logprobs=top)
            elif self.kind == "llamacpp":  # its chat logprobs carry the sampled token ids
                body.update(logprobs=True)
            body["messages"] = self._messages(prompt)
        else:
            if top or self.kind in ("llamacpp", "vllm"):  # sampled ids come back with the log-probs
                body["logprobs"] = top or 1
            if self.kind == "vllm" and not top:
                body["return_tokens_as_token_ids"] = True
            body["prompt"] = self._ids(prompt) if isinstance(prompt, list) else prompt
        path = f"{self._path}/chat/completions" if chat else f"{self._path}/completions"
        resp = self._send("POST", path, body,
                          lambda obj: check_completion(obj, chat=chat, n=n, top=top))
        self._count(resp)
        return resp

    # ---- next-token distribution ---------------------------------------------------------
    def _top(self, prompt: str, k: int) -> list[tuple[str, int | None, float]]:
        resp = self._request(prompt, max_tokens=1, top=k)
        steps = parse_logprobs(resp.choices[0].logprobs)
        if not steps or not steps[0].top:
            raise SelfteachError(
                f"server {self.base_url}: returned no top log-probs (does it support logprobs?)"
            )
        return steps[0].top

    def top_logprobs(self, prompts: list[str], k: int = TOP_K) -> list[dict[str, float]]:
        out = []
        for top in self._map(lambda p: self._top(p, k), prompts):
            row: dict[str, float] = {}
            for tok, _, lp in top:  # distinct ids can share a text: keep the sum
                row[tok] = _logsumexp([row[tok], lp]) if tok in row else lp
            out.append(row)
        return out

    def label_logprobs(
        self, prompts: list[str], labels: dict[str, list[str]]
    ) -> list[dict[str, float]]:
        """Label log-probs from one top-20 request per prompt. A label none of whose variants
        reach the top 20 is scored exactly (completions mode); where that is impossible (chat
        mode) or gives no finite value, it gets a floor: the probability left outside the
        returned top-k, capped by the k-th probability (the label cannot be likelier than a
        token that outranked it) and at least 1e-5 (the authors' eps). A read-out
        is therefore always finite, so ICM's margins and U are (arXiv 2506.10139 code)."""

        def one(prompt: str) -> dict[str, float]:
            top = self._top(prompt, TOP_K)
            row = {}
            for label, variants in labels.items():
                found = [lp for tok, _, lp in top if tok in variants]
                if found:
                    row[label] = _logsumexp(found)
                else:  # none in the top 20: score the variants exactly, never -inf by omission
                    row[label] = self._exact_label(prompt, variants)
                if not math.isfinite(row[label]):
                    row[label] = missing_label_floor([lp for _, _, lp in top])
            return row

        return self._map(one, prompts)

    # floor probability of a label missing from the top-k (the ICM authors' eps)
    MISSING_LABEL_EPS = 1e-5

    def _exact_label(self, prompt: str, variants: list[str]) -> float:
        if self.mode == "chat":
            # below the top 20 of the chat answer; a forced score needs completions
            return -math.inf
        return _logsumexp(self._score_one(prompt, v) for v in dict.fromkeys(variants))

    # ---- continuation scoring ------------------------------------------------------------
    def score(self, prompts: list[str], continuations: list[list[str]]) -> list[list[float]]:
        if self.mode == "chat":
            raise SelfteachError(
                "score() needs mode='completions': the chat API cannot force a continuation"
            )
        pairs = [(p, c) for p, conts in zip(prompts, continuations, strict=True) for c in conts]
        flat = iter(self._map(lambda pc: self._score_one(*pc), pairs))
        return [[next(flat) for _ in conts] for conts in continuations]

    def _score_one(self, prompt: str, continuation: str) -> float:
        # lm-eval-harness boundary, as `hf.split_context` (not imported: that pulls in torch)
        ctx = prompt.rstrip()
        cont = prompt[len(ctx):] + continuation
        ctx_ids, cont_ids = self._ids(ctx), self.tokenize(cont)
        if not cont_ids:
            raise SelfteachError(f"empty continuation {continuation!r}")
        return sum(self._forced(ctx_ids + cont_ids[:j], t) for j, t in enumerate(cont_ids))

    def _forced(self, prefix: list[int], token: int) -> float:
        """log P(token | prefix): force `token` with a +100 logit bias, read its raw log-prob."""
        resp = self._request(prefix, max_tokens=1, top=1, logit_bias={str(token): FORCE_BIAS})
        steps = parse_logprobs(resp.choices[0].logprobs)
        if not steps:
            raise SelfteachError(
                f"server {self.base_url}: returned no log-probs for a forced token"
            )
        s = steps[0]
        if s.id is not None and s.id != token:
            raise SelfteachError(
                f"server {self.base_url}: ignored logit_bias (asked token {token}, got {s.id}); "
                "score() needs logit_bias support"
            )
        best = s.top[0] if s.top else None
        if (
            best is not None
            and best[1] is not None
            and best[1] != token
            and s.logprob >= best[2] - 1e-6
        ):
            raise SelfteachError(
                f"server {self.base_url}: reports log-probs after logit_bias; score() needs raw "
                "log-probs (vLLM: --logprobs-mode raw_logprobs)"
            )
        return s.logprob

    # ---- generation ---------------------------------------------------------------------
    def generate(self, prompts: Sequence[Prompt],
                 params: SamplingParams) -> list[list[Generation]]:
        def one(prompt: Prompt) -> list[Generation]:
            resp = self._request(
                prompt,
                max_tokens=params.max_new_tokens,
                temperature=params.temperature,
                top_p=params.top_p,
                n=params.n,
                stop=params.stop or None,
                seed=params.seed,
            )
            choices = sorted(resp.choices, key=lambda c: c.index)
            if len(choices) != params.n:
                raise SelfteachError(
                    f"server {self.base_url}: asked n={params.n} samples, got {len(choices)}"
                )
            return [self._generation(c) for c in choices]

        return self._map(one, prompts)

    def _generation(self, choice: Any) -> Generation:
        text = (choice.message.content or "") if self.mode == "chat" else (choice.text or "")
        reason = "length" if choice.finish_reason == "length" else "stop"
        steps = parse_logprobs(_get(choice, "logprobs"))
        if steps and all(s.id is not None for s in steps):
            ids = self._trim(steps, text)
        elif text and (self.tokenizer is not None or self.kind in ("llamacpp", "vllm")):
            ids = self.tokenize(text)
        else:  # a generic server gives no ids and has no tokenize endpoint: pass tokenizer=
            ids = []
        return Generation(text=text, token_ids=ids, finish_reason=reason)

    def _trim(self, steps: list[Step], text: str) -> list[int]:
        """The shortest prefix of the sampled tokens that covers `text` (the server cuts the
        text at a stop string or EOS but may report the token that contained it)."""
        ids = [int(s.id) for s in steps]  # type: ignore[arg-type]
        want = len(text.encode("utf-8"))
        if all(s.nbytes is not None for s in steps):
            total = 0
            for j, s in enumerate(steps):
                if total >= want:
                    return ids[:j]
                total += s.nbytes  # type: ignore[operator]
            return ids
        if self.detokenize(ids) == text:
            return ids
        for j in range(len(ids) + 1):
            if len(self.detokenize(ids[:j]).encode("utf-8")) >= want:
                return ids[:j]
        return ids


def missing_label_floor(
    top: Sequence[float], eps: float = OpenAIBackend.MISSING_LABEL_EPS
) -> float:
    """log-prob floor of a label absent from a top-k read-out with log-probs `top`: the mass
    outside the top-k, capped by the smallest top-k probability, and at least `eps`."""
    finite = [x for x in top if math.isfinite(x)]
    rest = 1.0 - sum(math.exp(x) for x in finite)
    cap = min((math.exp(x) for x in finite), default=1.0)
    return math.log(max(eps, min(rest, cap)))
