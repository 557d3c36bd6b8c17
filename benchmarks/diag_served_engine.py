"""The llama.cpp engine alone, in process (no HTTP, no selfteach client): prompt-processing
tokens/s by batch size and greedy decode tokens/s, for a GGUF at a thread count. The floor
under every served row of `bench_served` (docs/benchmarks.md, "Where the served time goes").

    /work/bin/quiet python -m benchmarks.diag_served_engine [ALIAS_OR_GGUF] [THREADS]

Prompts are random words with `cache_prompt` off, so every prompt token is evaluated;
decode is 64 tokens with EOS ignored. Timings are the engine's own (`timings` field).
"""

from __future__ import annotations

import random
import sys


def main(model: str = "qwen2.5-coder-0.5b", threads: int = 1) -> list[dict]:
    import xllamacpp

    from selfteach.backends.llama_server import gguf_path

    p = xllamacpp.CommonParams()
    p.model.path = str(gguf_path(model))
    p.cpuparams.n_threads = p.cpuparams_batch.n_threads = threads
    p.n_parallel, p.n_ctx = 1, 4096
    server = xllamacpp.Server(p)
    words = "apple river stone cloud paper music garden window silver doctor yellow planet".split()
    rng = random.Random(0)
    server.handle_completions({"prompt": "warm up", "max_tokens": 1, "cache_prompt": False})
    rows = []
    for n in (16, 32, 128, 512):
        ms = tokens = 0.0
        for _ in range(2):
            text = " ".join(rng.choice(words) for _ in range(n))
            r = server.handle_completions({"prompt": text, "max_tokens": 1, "cache_prompt": False})
            ms += r["timings"]["prompt_ms"]
            tokens += r["timings"]["prompt_n"]
        rows.append({"model": model, "threads": threads, "what": f"prompt, {tokens / 2:.0f} tokens",
                     "tok_per_s": tokens / ms * 1000})
    r = server.handle_completions({"prompt": "Write a story about a dragon.", "max_tokens": 64,
                                   "temperature": 0, "ignore_eos": True})
    rows.append({"model": model, "threads": threads, "what": "greedy decode, 64 tokens",
                 "tok_per_s": r["timings"]["predicted_n"] / r["timings"]["predicted_ms"] * 1000})
    return rows


if __name__ == "__main__":
    from benchmarks.run_all import markdown

    args = sys.argv[1:]
    model = args[0] if args else "qwen2.5-coder-0.5b"
    print(markdown(main(model, int(args[1]) if len(args) > 1 else 1)))
