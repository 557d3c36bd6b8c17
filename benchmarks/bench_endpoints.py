"""Throughput of one vs two llama.cpp servers behind one `--model` (selfteach.backends.endpoints).

Each server runs with 1 thread and 4 slots; the client sends the same seeded generation
batch to one server, then to both (`URL,URL`), and reports generated tokens per second.

    /work/bin/quiet python -m benchmarks.bench_endpoints --model smollm2-135m --prompts 32
"""

from __future__ import annotations

import argparse
import json
import time

from selfteach.backends import SamplingParams
from selfteach.backends.llama_server import LlamaServer
from selfteach.backends.openai import OpenAIBackend


def run(spec: str, prompts: list[str], params: SamplingParams, concurrency: int) -> dict:
    with OpenAIBackend(spec, max_concurrency=concurrency) as b:
        b.generate(prompts[:2], SamplingParams(max_new_tokens=4))  # warm-up
        t0 = time.perf_counter()
        out = b.generate(prompts, params)
        took = time.perf_counter() - t0
    tokens = sum(g.num_tokens for row in out for g in row)
    return {
        "seconds": round(took, 2),
        "generated_tokens": tokens,
        "tokens_per_s": round(tokens / took, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--slots", type=int, default=4)
    args = ap.parse_args()
    prompts = [
        f"Question: what is {i} + {2 * i}? Explain step by step.\nAnswer:"
        for i in range(args.prompts)
    ]
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=0.8, seed=1)
    rows = {}
    with (
        LlamaServer(args.model, threads=1, parallel=args.slots) as s1,
        LlamaServer(args.model, threads=1, parallel=args.slots) as s2,
    ):
        rows["1 server"] = run(s1.url, prompts, params, args.slots)
        rows["2 servers"] = run(f"{s1.url},{s2.url}", prompts, params, args.slots)
    rows["speed-up"] = round(
        rows["2 servers"]["tokens_per_s"] / rows["1 server"]["tokens_per_s"], 2
    )
    print(
        json.dumps(
            {
                "model": args.model,
                "prompts": args.prompts,
                "max_new_tokens": args.max_new_tokens,
                "slots_per_server": args.slots,
                "threads_per_server": 1,
                **rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
