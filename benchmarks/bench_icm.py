"""ICM cost (issue 3, item 4): `--scoring exact` (the naive loop) vs the default `fast`.

Same model, same 128 built-in capital claims (task "exclusive", group = country), same
seed and number of annealing steps. Exact rescoring of every labeled claim with all the
others in context costs O(|D|^2) tokens per step (and again per ConsistencyFix
candidate); fast scoring reads each block's shared context once (prefix KV cache), reuses
cached per-claim scores, and rescores everything only when a quarter of the labels moved.

Reported per scoring mode: model calls and prompt tokens of ICM itself (search + final
context; the zero-shot diagnostic is the same for both and left out), wall seconds of the
same, label accuracy against gold, and the agreement of the two modes' labels.

On the shared 2-core CPU the exact loop is far too slow for a full run (each exact step
at |D| = 100 reads ~300k tokens), so both modes run the same reduced number of steps
(ICM_BENCH_ITERS, default 4) and the same context budget (ICM_BENCH_CONTEXT tokens,
default 256, about 9 examples); claims the search did not reach are labeled by argmax in
the final context, in both modes alike.

    python -m benchmarks.bench_icm                 # SmolLM2-135M, ~20-30 min on a busy 2-core box
    ICM_BENCH_MODEL=gemma3-270m python -m benchmarks.bench_icm
"""

from __future__ import annotations

import os
import time


def run_one(backend, claims, scoring: str, iters: int, context: int, seed: int) -> dict:
    from selfteach.elicit import ICMConfig, icm

    clear = getattr(backend, "clear_prefix_cache", None)
    if clear:
        clear()
    backend.usage.reset()
    t = time.perf_counter()
    res = icm(claims, backend, task="exclusive", progress=False,
              config=ICMConfig(scoring=scoring, iters=iters, max_context_tokens=context, seed=seed))
    wall = time.perf_counter() - t
    m = res.metrics
    icm_seconds = sum(m["cost"].get(k, {}).get("seconds", 0.0) for k in ("search", "final"))
    return {
        "labels": res.labels,
        "row": {
            "name": f"icm-{scoring}",
            "scoring": scoring,
            "claims": len(claims),
            "steps": iters,
            "labeled_by_search": m["labeled_by_search"],
            "model_calls": m["model_calls"],
            "prompt_tokens": m["prompt_tokens"],
            "icm_seconds": round(icm_seconds, 1),
            "total_seconds": round(wall, 1),
            "accuracy": m["accuracy"],
            "zero_shot_accuracy": m["zero_shot_accuracy"],
            "calls_per_claim": m["calls_per_claim"],
            "tokens_per_claim": m["tokens_per_claim"],
        },
    }


def main() -> list[dict]:
    import torch

    from selfteach.backends.hf import HFBackend
    from selfteach.data.loaders import load_claims

    torch.set_num_threads(int(os.environ.get("ICM_BENCH_THREADS", "1")))
    model = os.environ.get("ICM_BENCH_MODEL", "smollm2-135m")
    iters = int(os.environ.get("ICM_BENCH_ITERS", "4"))
    context = int(os.environ.get("ICM_BENCH_CONTEXT", "256"))
    limit = int(os.environ.get("ICM_BENCH_LIMIT", "128"))
    claims = load_claims("builtin:capitals", limit=limit)
    backend = HFBackend(model)
    out = {s: run_one(backend, claims, s, iters, context, seed=0) for s in ("fast", "exact")}
    fast, exact = out["fast"]["row"], out["exact"]["row"]
    agree = sum(out["fast"]["labels"][k] == v for k, v in out["exact"]["labels"].items()) / len(
        claims
    )
    note = (
        f"{model}, builtin:capitals x{len(claims)}, task exclusive, {iters} annealing steps, "
        "context budget "
        f"{context} tokens, seed 0, 1 CPU thread"
    )
    for r in (fast, exact):
        r["model"] = model
        r["note"] = note
    ratio = {
        "name": "exact / fast",
        "model": model,
        "claims": len(claims),
        "steps": iters,
        "model_calls": round(exact["model_calls"] / max(fast["model_calls"], 1), 1),
        "prompt_tokens": round(exact["prompt_tokens"] / max(fast["prompt_tokens"], 1), 1),
        "icm_seconds": round(exact["icm_seconds"] / max(fast["icm_seconds"], 1e-9), 1),
        "accuracy": round((fast["accuracy"] or 0) - (exact["accuracy"] or 0), 4),
        "note": "ratios (exact/fast); accuracy = fast - exact; "
        f"label agreement fast vs exact {agree:.3f}",
    }
    return [fast, exact, ratio]


if __name__ == "__main__":
    from benchmarks.run_all import markdown

    print(markdown(main()))
