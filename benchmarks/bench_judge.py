"""Benchmark: k=8 judge voting, batched vs sequential, on the same backend.

batched: `judge_items` with k=8 -- the 8 samples of an item come from one `generate` call
(2 balanced orders x n=4 samples). sequential: the same 8 prompts (same orders) as 8
`generate` calls with n=1. Target (issue 6): wall-time ratio batched/sequential <= 0.5.

Run: python -m benchmarks.bench_judge [--models tiny-random,smollm2-135m] [--items 2]
         [--max-new-tokens 64]
"""

from __future__ import annotations

import argparse
import time


def _one(model: str, n_items: int, max_new: int, repeats: int) -> dict:
    import random

    from selfteach.backends.base import SamplingParams
    from selfteach.backends.hf import HFBackend
    from selfteach.judge.data import load_judge_items
    from selfteach.judge.prompts import render
    from selfteach.judge.voting import JudgeConfig, _item_seed, judge_items, sample_orders

    backend = HFBackend(model, batch_size=16)
    items = [
        it for it in load_judge_items("builtin:pairs", pairwise=True) if it.subset == "mawps-answer"
    ][:n_items]
    cfg = JudgeConfig(k=8, max_new_tokens=max_new, items_per_call=1)
    judge_items(backend, items[:1], cfg.model_copy(update={"max_new_tokens": 4}))  # warm-up
    best_b = best_s = float("inf")
    tok_b = tok_s = 0
    for _ in range(repeats):
        backend.usage.reset()
        t = time.perf_counter()
        judge_items(backend, items, cfg)
        best_b = min(best_b, time.perf_counter() - t)
        tok_b = backend.usage.generated_tokens
        backend.usage.reset()
        t = time.perf_counter()
        for it in items:
            orders, _ = sample_orders(2, 8, "balanced", random.Random(_item_seed(cfg.seed, it.id)))
            for j in range(8):
                o = orders[j % len(orders)]
                text = render(backend, it.prompt, [it.responses[i] for i in o])
                backend.generate(
                    [text],
                    SamplingParams(
                        n=1, max_new_tokens=max_new, temperature=cfg.temperature, seed=cfg.seed + j
                    ),
                )
        best_s = min(best_s, time.perf_counter() - t)
        tok_s = backend.usage.generated_tokens
    return {
        "name": f"judge k=8 {model}",
        "items": len(items),
        "max_new_tokens": max_new,
        "batched_s": round(best_b, 2),
        "sequential_s": round(best_s, 2),
        "ratio": round(best_b / best_s, 3),
        "batched_tok_per_s": round(tok_b / best_b, 1),
        "sequential_tok_per_s": round(tok_s / best_s, 1),
        "target": "ratio <= 0.5",
        "note": f"best of {repeats}; mawps-answer pairs; "
        "sampled lengths differ between the two arms, so "
        "tokens/s is the fairer speed figure",
    }


def main(
    models: list[str] | None = None, n_items: int = 2, max_new: int = 64, repeats: int = 1
) -> list[dict]:
    return [_one(m, n_items, max_new, repeats) for m in (models or ["tiny-random", "smollm2-135m"])]


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="tiny-random,smollm2-135m")
    ap.add_argument("--items", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=1)
    a = ap.parse_args()
    rows = main(a.models.split(","), a.items, a.max_new_tokens, a.repeats)
    keys = list(rows[0])
    print(" | ".join(keys))
    for r in rows:
        print(" | ".join(str(r[k]) for k in keys))
