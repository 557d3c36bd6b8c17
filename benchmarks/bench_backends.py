"""Backend speed (issue 2): batched vs one-at-a-time claim scoring, and generation
tokens/s at batch 1 and 8, transformers (`hf`) vs a real server (`openai` over llama-server).

- scoring: log P(True) / log P(False) for 64 built-in capital claims with the template
  "Claim: ...\\nI think this claim is". `hf` one prompt per call vs one call of 64 (batches
  of 16, padded, longest first); the server with 1 and 8 requests in flight (one request =
  one generated token with the top 20 log-probs).
- generation: greedy, 32 new tokens, 8 different prompts; "batch 1" = one prompt at a time,
  "batch 8" = the 8 prompts at once (`hf`: one left-padded batch; server: 8 concurrent
  requests on 8 slots). tok/s = generated tokens / wall seconds.

Times are the best of 2 runs. Everything runs on ONE CPU thread (torch and llama-server
`-t 1`): the machine is shared and it makes the two backends comparable. The server serves
SmolLM2 twice: the F32 re-encoding (the same arithmetic as `hf`, whose GGUF is dequantised
to fp32) and the original Q4_1 file.

    python -m benchmarks.bench_backends          # ~2-3 min
    python -m benchmarks.run_all bench_backends  # same, and writes docs/benchmarks.md
"""

from __future__ import annotations

import time

TEMPLATE = "Claim: {claim}\nI think this claim is"
# The single-token variants of DEFAULT_LABEL_VARIANTS for SmolLM2 (" TRUE"/" FALSE" span 2-3
# tokens: hf scores them with extra forwards, the server only reads its top 20), so every row
# does the same work: one forward / one request per claim.
LABELS = {
    "True": [" True", "True", " true", "true"],
    "False": [" False", "False", " false", "false"],
}
GEN_PROMPTS = ["Once upon a time", "The capital of France is", "In a shocking finding, scientists",
               "def fibonacci(n):", "The best way to learn a language is", "Water boils at",
               "My favourite book is", "The history of Rome begins"]


def _timed(fn, repeat: int = 1) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def _claims(n: int = 64) -> list[str]:
    from selfteach.data.loaders import load_claims

    return [TEMPLATE.format(claim=c.claim) for c in load_claims("builtin:capitals", limit=n)]


def scoring_rows(hf, remote_by_name: dict) -> list[dict]:
    from selfteach.backends.base import DEFAULT_LABEL_VARIANTS

    prompts = _claims(64)
    hf.label_logprobs(prompts[:4], LABELS)  # warm-up
    rows = []
    for labels, what in ((DEFAULT_LABEL_VARIANTS, "default variants (3 sequences per claim)"),
                         (LABELS, "single-token variants (1 sequence per claim)")):
        one, _ = _timed(lambda lb=labels: [hf.label_logprobs([p], lb) for p in prompts], repeat=2)
        batched, _ = _timed(lambda lb=labels: hf.label_logprobs(prompts, lb), repeat=2)
        rows += [
            {
                "name": "score 64 claims",
                "backend": "hf",
                "mode": "one prompt per call",
                "seconds": one,
                "claims_per_s": 64 / one,
                "speedup": 1.0,
                "note": f"{what}; SmolLM2-135M fp32, 1 thread",
            },
            {
                "name": "score 64 claims",
                "backend": "hf",
                "mode": f"batched ({hf.batch_size} per forward)",
                "seconds": batched,
                "claims_per_s": 64 / batched,
                "speedup": one / batched,
                "note": f"{what}; target >= 3x over one prompt per call",
            },
        ]
    one = rows[-2]["seconds"]  # server rows below use the single-token variants
    for name, (remote1, remote8) in remote_by_name.items():
        # warm-up (and fills the prompt cache of those 8)
        remote8.label_logprobs(prompts[:8], LABELS)
        s1, _ = _timed(lambda r=remote1: r.label_logprobs(prompts, LABELS), repeat=2)
        s8, _ = _timed(lambda r=remote8: r.label_logprobs(prompts, LABELS), repeat=2)
        for mode, s in (("1 request in flight", s1), ("8 requests in flight", s8)):
            rows.append(
                {
                    "name": "score 64 claims",
                    "backend": f"openai ({name})",
                    "mode": mode,
                    "seconds": s,
                    "claims_per_s": 64 / s,
                    "speedup": one / s,
                    "note": "single-token variants; 1 token + top-20 logprobs per claim; "
                    "speedup vs hf one per call",
                }
            )
    return rows


def generation_rows(hf, remote_by_name: dict, new_tokens: int = 32) -> list[dict]:
    from selfteach.backends.base import SamplingParams

    params = SamplingParams(max_new_tokens=new_tokens, temperature=0.0)

    def count(rows) -> int:
        return sum(g.num_tokens for row in rows for g in row)

    def row(backend: str, batch: int, seconds: float, tokens: int, note: str) -> dict:
        return {
            "name": "greedy generation",
            "backend": backend,
            "mode": f"batch {batch}",
            "seconds": seconds,
            "tokens": tokens,
            "tok_per_s": tokens / seconds,
            "note": note,
        }

    out = []
    hf.generate(GEN_PROMPTS[:1], SamplingParams(max_new_tokens=4))  # warm-up
    s, res = _timed(lambda: [hf.generate([p], params)[0] for p in GEN_PROMPTS], repeat=2)
    out.append(row("hf", 1, s, count(res), "SmolLM2-135M fp32, 1 thread, one prompt at a time"))
    s, res = _timed(lambda: hf.generate(GEN_PROMPTS, params), repeat=2)
    out.append(row("hf", 8, s, count(res), "one left-padded batch of 8"))
    for name, (remote1, remote8) in remote_by_name.items():
        remote8.generate(GEN_PROMPTS, SamplingParams(max_new_tokens=2))  # warm-up
        s, res = _timed(lambda r=remote1: r.generate(GEN_PROMPTS, params), repeat=2)
        out.append(
            row(
                f"openai ({name})",
                1,
                s,
                count(res),
                "llama-server -t 1 -np 8, one request at a time",
            )
        )
        s, res = _timed(lambda r=remote8: r.generate(GEN_PROMPTS, params), repeat=2)
        out.append(row(f"openai ({name})", 8, s, count(res), "8 concurrent requests on 8 slots"))
    return out


def main() -> list[dict]:
    import contextlib

    import torch

    from selfteach.backends.hf import HFBackend
    from selfteach.backends.llama_server import LlamaServer, engine_command
    from selfteach.backends.openai import OpenAIBackend
    from selfteach.errors import SelfteachError

    try:
        engine = engine_command()[0]  # xllamacpp, else a source-built llama-server
    except SelfteachError:
        engine = None

    torch.set_num_threads(1)
    hf = HFBackend("smollm2-135m", batch_size=16)
    with contextlib.ExitStack() as stack:
        remotes: dict = {}
        if engine is not None:
            for name, f32 in ((f"{engine} F32", True), (f"{engine} Q4_1", False)):
                server = stack.enter_context(
                    LlamaServer("smollm2-135m", f32=f32, threads=1, parallel=8)
                )
                remotes[name] = (stack.enter_context(OpenAIBackend(server.url, max_concurrency=1)),
                                 stack.enter_context(OpenAIBackend(server.url, max_concurrency=8)))
        rows = scoring_rows(hf, remotes) + generation_rows(hf, remotes)
    if not remotes:
        rows.append(
            {"name": "server rows skipped", "note": "no llama.cpp engine (pip install xllamacpp)"}
        )
    return rows


if __name__ == "__main__":
    from benchmarks.run_all import markdown

    print(markdown(main()))
