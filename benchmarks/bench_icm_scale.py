"""ICM beyond one context (issue 15, item 3): bounded contexts (`--context-claims K`) vs the
full-context search, and the cost of labeling up to 10,000 claims.

Parts (ICM_SCALE_PART, comma-separated; default "accuracy,steps"):

- accuracy: built-in claim sets small enough for the full-context search (both fit), the
  deterministic synthetic read-out of `selfteach.elicit.synthetic` (truth = gold, zero-shot
  strength U(-0.6, 1.0) per claim, a truthful context sharpens the read-out by up to w_ctx
  nats), ICM_SCALE_SEEDS seeds (default 10), 2 x claims steps, fast scoring: the full
  context vs K = 8 and 16 sampled examples. Mean label accuracy, prompt tokens per claim
  (search + final context, as the synthetic backend counts them: words), and the mean
  paired difference to the full context with a 95% bootstrap interval over (set, seed).
- steps: `builtin:sums-N` (binary) for N = ICM_SCALE_NS (default 1000,3000,10000) with
  the synthetic read-out, bounded (K = 8) and, up to 3,000 claims, full context: wall
  seconds, ms per step (whole search, and over the second half of the steps, when D is
  near its final size), tokens per claim, peak RSS, each N in a fresh process.
- tiny: the same with the tiny random transformers model (`tiny-random`, 1 CPU thread,
  batch 32): the time to label N built-in claims with a real forward pass per prompt.
- real: one short run of a real model on a built-in fact family, full vs bounded
  (ICM_SCALE_MODEL, default qwen2.5-coder-0.5b, served; ICM_SCALE_FAMILY, default elements,
  task comparison, seed 0). Run it through the model lock.

    python -m benchmarks.bench_icm_scale
    ICM_SCALE_PART=tiny python -m benchmarks.bench_icm_scale
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

SETS = [  # (name, built-in set, wrong candidates per subject, --task): all fit one context
    ("capitals/comparison", "capitals", 1, "comparison"),
    ("capitals-3/exclusive", "capitals", 2, "exclusive"),
    ("state-capitals/comparison", "state-capitals", 1, "comparison"),
    ("sums/binary", "sums", None, "binary"),
]
KS = [None, 8, 16]


def accuracy(seeds: int, w_ctx: float) -> list[dict]:
    from selfteach.data.builtin import builtin_claims
    from selfteach.elicit import ICMConfig, icm
    from selfteach.elicit.synthetic import synthetic_backend_for
    from selfteach.stats import bootstrap_ci

    acc: dict[tuple[str, int | None], list[float]] = {}
    tok: dict[tuple[str, int | None], list[float]] = {}
    zero: dict[str, list[float]] = {}
    for name, spec, wrong, task in SETS:
        for seed in range(seeds):
            claims = builtin_claims(spec, seed=seed, wrong_per_subject=wrong)
            for k in KS:
                res = icm(
                    claims,
                    synthetic_backend_for(claims, seed=seed, w_ctx=w_ctx),
                    task=task,
                    progress=False,
                    config=ICMConfig(seed=seed, context_claims=k),
                )
                acc.setdefault((name, k), []).append(res.metrics["accuracy"])
                tok.setdefault((name, k), []).append(res.metrics["tokens_per_claim"])
            zero.setdefault(name, []).append(res.metrics["zero_shot_accuracy"])
    rows = []
    for k in KS:
        row: dict = {"w_ctx": w_ctx, "context_claims": k or "full"}
        diffs = []
        for name, *_ in SETS:
            row[name] = round(sum(acc[(name, k)]) / seeds, 4)
            row[f"{name} tokens/claim"] = round(sum(tok[(name, k)]) / seeds)
            diffs += [x - y for x, y in zip(acc[(name, k)], acc[(name, None)], strict=True)]
        lo, hi = bootstrap_ci(diffs)
        row["mean_diff_vs_full"] = round(sum(diffs) / len(diffs), 4)
        row["ci95"] = [round(lo, 4), round(hi, 4)]
        rows.append(row)
    rows.append(
        {
            "w_ctx": w_ctx,
            "context_claims": "zero-shot",
            **{n: round(sum(v) / len(v), 4) for n, v in zero.items()},
        }
    )
    return rows


def one(n: int, k: int | None, backend_name: str) -> dict:
    """Label builtin:sums-N in this process; the row for the steps/tiny tables."""
    from selfteach.data.builtin import builtin_claims
    from selfteach.elicit import ICMConfig, icm
    from selfteach.runs import RunDir

    claims = builtin_claims(f"sums-{n}", seed=0)
    if backend_name == "synthetic":
        from selfteach.elicit.synthetic import synthetic_backend_for

        backend = synthetic_backend_for(claims, seed=0, w_ctx=0.5)
    else:
        import torch

        from selfteach.backends.hf import HFBackend

        torch.set_num_threads(1)
        backend = HFBackend(backend_name, batch_size=32)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    load0 = os.getloadavg()[0]
    cfg = ICMConfig(seed=0, context_claims=k)
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir.create(os.path.join(tmp, "run"), cfg, seed=0)
        t0 = time.time()
        res = icm(claims, backend, task="binary", config=cfg, run=run, progress=False)
        wall = time.time() - t0
        times = [
            r["time"]
            for r in map(json.loads, open(run.file("metrics.jsonl")))
            if r.get("stage") == "icm"
        ]
    m = res.metrics
    steps = m["steps"]
    half = steps // 2
    return {
        "backend": backend_name,
        "claims": n,
        "context_claims": k or "full",
        "steps": steps,
        "wall_s": round(wall, 1),
        "search_s": m["cost"]["search"]["seconds"],
        "ms_per_step": round(1000 * m["cost"]["search"]["seconds"] / steps, 2),
        "ms_per_step_2nd_half": round(1000 * (times[-1] - times[half - 1]) / (steps - half), 2),
        "tokens_per_claim": m["tokens_per_claim"],
        "calls_per_claim": m["calls_per_claim"],
        "accuracy": m["accuracy"],
        "zero_shot_accuracy": m["zero_shot_accuracy"],
        "rss_before_icm_mb": rss0,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "load_1min": [round(load0, 2), round(os.getloadavg()[0], 2)],
        "utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }


def steps(ns: list[int], backend_name: str, full_up_to: int) -> list[dict]:
    rows = []
    for n in ns:
        for k in (8, None):
            if k is None and n > full_up_to:
                continue
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.bench_icm_scale",
                    "one",
                    str(n),
                    str(k),
                    backend_name,
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    return rows


def real(model: str, family: str) -> list[dict]:
    from selfteach.backends import load_backend
    from selfteach.data.builtin import builtin_claims
    from selfteach.elicit import ICMConfig, icm

    claims = builtin_claims(family, seed=0)
    backend = load_backend(model, serve=True)
    rows = []
    for k in (None, 8):
        t0 = time.time()
        res = icm(
            claims,
            backend,
            task="comparison",
            progress=False,
            config=ICMConfig(seed=0, context_claims=k),
        )
        m = res.metrics
        rows.append(
            {
                "model": model,
                "family": family,
                "claims": len(claims),
                "context_claims": k or "full",
                "accuracy": m["accuracy"],
                "zero_shot": m["zero_shot_accuracy"],
                "auroc": m["auroc"],
                "balance": m["balance"],
                "I": m["I"],
                "tokens_per_claim": m["tokens_per_claim"],
                "seconds": round(time.time() - t0, 1),
            }
        )
        print(rows[-1], flush=True)
    close = getattr(backend, "close", None)
    if close:
        close()
    return rows


def main() -> list[dict]:
    parts = os.environ.get("ICM_SCALE_PART", "accuracy,steps").split(",")
    ns = [int(x) for x in os.environ.get("ICM_SCALE_NS", "1000,3000,10000").split(",")]
    rows: list[dict] = []
    if "accuracy" in parts:
        seeds = int(os.environ.get("ICM_SCALE_SEEDS", "10"))
        for w_ctx in [float(x) for x in os.environ.get("ICM_SCALE_WCTX", "0.5,1").split(",")]:
            t0 = time.time()
            table = accuracy(seeds, w_ctx)
            print(f"w_ctx={w_ctx}: {seeds} seeds, {time.time() - t0:.0f} s", flush=True)
            for r in table:
                print(r, flush=True)
            rows += table
    if "steps" in parts:
        rows += steps(ns, "synthetic", full_up_to=3000)
    if "tiny" in parts:
        rows += steps(
            ns, "tiny-random", full_up_to=int(os.environ.get("ICM_SCALE_TINY_FULL", "1000"))
        )
    if "real" in parts:
        rows += real(
            os.environ.get("ICM_SCALE_MODEL", "qwen2.5-coder-0.5b"),
            os.environ.get("ICM_SCALE_FAMILY", "elements"),
        )
    return rows


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "one":
        print(
            json.dumps(
                one(
                    int(sys.argv[2]),
                    None if sys.argv[3] == "None" else int(sys.argv[3]),
                    sys.argv[4],
                )
            )
        )
    else:
        main()
