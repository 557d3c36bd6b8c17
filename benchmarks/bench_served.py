"""Served vs transformers on Qwen2.5-Coder-0.5B-Instruct (issue 11): the `--serve` path
(llama.cpp server on the Q4_K_M GGUF, through the OpenAI backend) against the `hf` backend
(transformers, the same GGUF dequantised to fp32), same machine, same CPU threads, one run.

- generation: greedy, 64 new tokens, 8 chat prompts (math word problems); batch 1 = one
  prompt at a time; batch 8 = hf one left-padded batch / served 8 concurrent requests on 8
  slots, after a warm-up of 8 other chat prompts (the slots hold the system prompt, as in a
  pipeline). tok/s = generated tokens / wall seconds. Goal: served >= 5x at batch 1, >= 2x at 8.
- ICM label scoring: `FastScorer.score_all` (the ICM fast scorer: leave-one-block-out shared
  contexts, 2 blocks, 256-token budget, gold labels as the snapshot) over 128 built-in capital
  claims (task "exclusive"); claims/s. hf reads each block's context once (prefix KV cache);
  the server gets one request per claim and reuses the shared prefix from its prompt cache.
  Goal: served >= 3x.
- agreement: share of the 128 claims whose argmax label (True/False) is the same on both
  backends, in context (the scoring row) and zero-shot on the first 64 (issue 11, item 4).
- raw HTTP: the same server and prompts, plain `/v1/completions` requests with no sampling or
  log-prob fields (what a bare client sends): the served backend's own overhead is the gap
  between this row and the served row.
- prompt tokens/s: prompt tokens evaluated per wall second while scoring (hf: prefix once +
  every suffix; served: what llama.cpp reports it evaluated, i.e. after its prompt cache).
  Label scoring is prompt processing, so this rate bounds claims/s on either backend.
- engine: if the source-built llama-server exists (`make server`), the same generation rows
  on it, same GGUF and threads, to compare the two engines.

    /work/bin/quiet python -m benchmarks.run_all bench_served   # ~10 min on 2 quiet cores

Threads: SERVED_BENCH_THREADS, a comma list (default "1,2"): every row is measured at each
thread count, the same for both backends (torch threads = server threads).
"""

from __future__ import annotations

import os
import time

MODEL = os.environ.get("SERVED_BENCH_MODEL", "qwen2.5-coder-0.5b")
QUESTIONS = ["Tom has 7 apples and buys 5 more. How many apples does he have?",
             "A book costs 12 dollars. How much do 3 books cost?",
             "Sara had 40 stickers and gave away 15. How many are left?",
             "There are 6 rows of 8 chairs. How many chairs are there?",
             "A train travels 60 miles in 2 hours. What is its speed?",
             "Write a Python function that reverses a string.",
             "What is the capital of France? Explain briefly.",
             "If 24 cookies are shared among 4 children, how many does each get?"]


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def raw_http_tok_per_s(backend, prompts: list[str], new_tokens: int) -> tuple[float, int]:
    """(seconds, tokens) for plain greedy completions on the served backend's server, one
    at a time over one kept-alive connection, without our client."""
    import http.client
    import json
    from urllib.parse import urlsplit

    url = urlsplit(backend.base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=600)
    tokens, t = 0, time.perf_counter()
    for p in prompts:
        body = {"model": backend.model, "prompt": p, "max_tokens": new_tokens, "temperature": 0.0}
        conn.request(
            "POST",
            f"{url.path}/completions",
            json.dumps(body),
            {"Content-Type": "application/json"},
        )
        tokens += json.loads(conn.getresponse().read())["usage"]["completion_tokens"]
    seconds = time.perf_counter() - t
    conn.close()
    return seconds, tokens


def generation_rows(backends: dict, new_tokens: int = 64, raw: str | None = None) -> list[dict]:
    """Greedy generation at batch 1 and 8 on each backend (the first is the baseline); `raw`:
    the name of a served backend whose server also gets the raw-HTTP row."""
    from selfteach.backends.base import SamplingParams

    params = SamplingParams(max_new_tokens=new_tokens, temperature=0.0)
    rows, base = [], {}
    for name, b in backends.items():
        prompts = [b.chat_prompt(q) for q in QUESTIONS]
        # warm-up, 8 other questions at once: a served run's slots then hold the chat
        # template's system prompt, as they do in a pipeline's steady state (a cold slot
        # reads it again: ~30 tokens at 60-70 prompt tok/s per thread)
        b.generate(
            [b.chat_prompt(f"Say the number {i}.") for i in range(8)],
            SamplingParams(max_new_tokens=2),
        )
        for batch in (1, 8):
            if batch == 1:
                s, res = _timed(lambda b=b, p=prompts: [b.generate([x], params)[0] for x in p])
            else:
                s, res = _timed(lambda b=b, p=prompts: b.generate(p, params))
            tokens = sum(g.num_tokens for r in res for g in r)
            base.setdefault(batch, tokens / s)  # the first backend (hf) is the baseline
            rows.append({"name": "greedy generation", "backend": name, "mode": f"batch {batch}",
                         "seconds": round(s, 2), "tokens": tokens, "tok_per_s": tokens / s,
                         "speedup": (tokens / s) / base[batch]})
        if name == raw:
            s, tokens = raw_http_tok_per_s(b, prompts, new_tokens)
            rows.append(
                {
                    "name": "greedy generation",
                    "backend": f"{name}, raw HTTP",
                    "mode": "batch 1",
                    "seconds": round(s, 2),
                    "tokens": tokens,
                    "tok_per_s": tokens / s,
                    "speedup": (tokens / s) / base[1],
                }
            )
    return rows


def scoring_rows(backends: dict, n: int = 128) -> tuple[list[dict], dict]:
    from selfteach.data.loaders import load_claims
    from selfteach.elicit.rules import make_rule
    from selfteach.elicit.scoring import FastScorer
    from selfteach.elicit.templates import Template

    claims = load_claims("builtin:capitals", limit=n)
    make_rule("exclusive", claims)
    gold = {i: bool(c.gold) for i, c in enumerate(claims)}
    rows, labels, base = [], {}, None
    for name, b in backends.items():
        scorer = FastScorer(claims, b, Template(), 256, blocks=2)
        b.usage.reset()
        s, lp = _timed(lambda sc=scorer: sc.score_all(gold))
        labels[name] = {i: v[0] > v[1] for i, v in lp.items()}
        base = base or n / s
        read = b.usage.extra.get("evaluated_prompt_tokens", b.usage.prompt_tokens)
        rows.append(
            {
                "name": f"ICM fast scorer, {n} claims",
                "backend": name,
                "mode": "score_all, 2 blocks",
                "seconds": round(s, 2),
                "claims_per_s": n / s,
                "speedup": (n / s) / base,
                "prompt_tok_per_s": read / s,
            }
        )
    return rows, labels


def agreement_rows(backends: dict, labels: dict) -> list[dict]:
    from selfteach.backends.base import DEFAULT_LABEL_VARIANTS
    from selfteach.data.loaders import load_claims

    (a, la), (b, lb) = list(labels.items())[:2]
    ctx = sum(la[i] == lb[i] for i in la) / len(la)
    prompts = [
        f"Claim: {c.claim}\nI think this claim is"
        for c in load_claims("builtin:capitals", limit=64)
    ]
    rows = [backends[k].label_logprobs(prompts, DEFAULT_LABEL_VARIANTS) for k in (a, b)]
    zs = sum(max(x, key=x.get) == max(y, key=y.get) for x, y in zip(*rows, strict=True)) / len(
        prompts
    )
    out = [
        {
            "name": "argmax label agreement",
            "backend": f"{a} vs {b}",
            "mode": "128 claims in context",
            "agreement": ctx,
        },
        {
            "name": "argmax label agreement",
            "backend": f"{a} vs {b}",
            "mode": "64 claims zero-shot",
            "agreement": zs,
        },
    ]
    # the same zero-shot read-out served from an F32 re-encoding of the GGUF: the same weight
    # values without llama.cpp's quantised dot products, to tell kernels from our code
    from selfteach.backends.llama_server import f32_gguf
    from selfteach.backends.served import serve_backend

    f32 = serve_backend(str(f32_gguf(MODEL)), engine="xllamacpp")
    try:
        rf = f32.label_logprobs(prompts, DEFAULT_LABEL_VARIANTS)
    finally:
        f32.close()
    zf = sum(
        max(x, key=x.get) == max(y, key=y.get) for x, y in zip(rows[0], rf, strict=True)
    ) / len(prompts)
    gap = max(
        abs((x["True"] - x["False"]) - (y["True"] - y["False"]))
        for x, y in zip(rows[0], rf, strict=True)
    )
    out.append(
        {
            "name": "argmax label agreement",
            "backend": f"{a} vs served xllamacpp (F32 of the GGUF)",
            "mode": "64 claims zero-shot",
            "agreement": zf,
            "note": f"largest margin gap {gap:.3f} nats",
        }
    )
    return out


def main() -> list[dict]:
    import torch

    from selfteach.backends.hf import HFBackend
    from selfteach.backends.llama_server import server_binary
    from selfteach.backends.models import gguf_file_type
    from selfteach.backends.served import serve_backend
    from selfteach.errors import SelfteachError

    threads_list = [int(t) for t in os.environ.get("SERVED_BENCH_THREADS", "1,2").split(",")]
    load = os.getloadavg()
    hf = HFBackend(MODEL, batch_size=16)
    rows: list[dict] = []
    for threads in threads_list:
        os.environ["SELFTEACH_SERVE_THREADS"] = str(threads)
        torch.set_num_threads(threads)
        served = serve_backend(MODEL, engine="xllamacpp")
        ftype = gguf_file_type(served.gguf)
        hf_name, served_name = (
            f"hf (fp32), {threads} thr",
            f"served xllamacpp ({ftype}), {threads} thr",
        )
        try:
            backends = {hf_name: hf, served_name: served}
            rows += generation_rows(backends, raw=served_name)
            score, labels = scoring_rows(backends)
            rows += score
            if threads == threads_list[0]:  # the numbers do not depend on the thread count
                rows += agreement_rows(backends, labels)
        finally:
            served.close()
        if server_binary() is not None:  # the other engine, same GGUF and threads
            try:
                other = serve_backend(MODEL, engine="llama-server")
            # a failed start is a result for the engine choice, not a crash
            except SelfteachError as e:
                rows.append({"name": "engine llama-server (source build)",
                             "note": f"failed to start: {str(e)[:160]}"})
                other = None
            if other is not None:
                try:
                    rows += [
                        r
                        for r in generation_rows(
                            {hf_name: hf, f"served llama-server ({ftype}), {threads} thr": other}
                        )
                        if r["backend"] != hf_name
                    ]
                finally:
                    other.close()
    note = (
        f"{MODEL}, the same CPU thread count for both backends in each row; load average before "
        f"{load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}, after {os.getloadavg()[0]:.1f} (1/5/15 min)"
    )
    rows.append({"name": "conditions", "note": note})
    return rows


if __name__ == "__main__":
    from benchmarks.run_all import markdown

    print(markdown(main()))
