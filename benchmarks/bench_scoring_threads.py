"""Batched vs one-prompt-at-a-time label scoring on the HF backend, by thread count and
batch size (issue 2's ">= 3x" goal). SmolLM2-135M, 64 built-in capital claims, single-token
label variants, best of one run each.

    python -m benchmarks.bench_scoring_threads
"""

from __future__ import annotations

import time

LABELS = {
    "True": [" True", "True", " true", "true"],
    "False": [" False", "False", " false", "false"],
}


def main() -> list[dict]:
    import torch

    from selfteach.backends.hf import HFBackend
    from selfteach.data.loaders import load_claims

    prompts = [
        f"Claim: {c.claim}\nI think this claim is" for c in load_claims("builtin:capitals")[:64]
    ]
    rows = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for bs in (8, 16, 32):
            b = HFBackend("smollm2-135m", batch_size=bs)
            b.label_logprobs(prompts[:4], LABELS)  # warm-up
            t = time.perf_counter()
            for p in prompts:
                b.label_logprobs([p], LABELS)
            one = time.perf_counter() - t
            t = time.perf_counter()
            b.label_logprobs(prompts, LABELS)
            batched = time.perf_counter() - t
            rows.append({"threads": threads, "batch_size": bs, "one_at_a_time_s": round(one, 2),
                         "batched_s": round(batched, 2), "speedup": round(one / batched, 2),
                         "note": "target >= 3x"})
    return rows


if __name__ == "__main__":
    for r in main():
        print(r)
