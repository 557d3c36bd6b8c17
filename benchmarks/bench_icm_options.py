"""Which ICM variant labels better: the paper's text or the authors' code (issue 10, item 7)?

Two choices (ICMConfig / `selfteach elicit` options):
- `schedule`: paper = T0 / (1 + 0.99 ln n) over steps n; reference = T0 / (1 + 2 ln(1 + k))
  over accepted flips k (the authors' code);
- `fix`: paper = ConsistencyFix keeps a pair's best consistent assignment only if U rises;
  reference = always applies it (the authors' code).

All four combinations run on the built-in claim tasks with a deterministic synthetic
read-out (selfteach.elicit.synthetic: truth = gold, per-claim zero-shot strength
U(-0.6, 1.0), a truthful context sharpens the read-out by up to w_ctx nats; w_ctx = 0.5, 1, 2
from hard to easy) over several seeds (the seed sets
both the read-out's strengths and the search), N = 2 x claims steps, fast scoring. Reports
the mean label accuracy per task and variant, and each variant's mean paired difference to
paper/paper with a 95% bootstrap interval over (task, seed).

    python -m benchmarks.bench_icm_options            # ICM_OPT_SEEDS=10 by default

With ICM_OPT_MODEL set, the four variants instead run on that real model, on the demo's
claims (`demo_claims`: ICM_OPT_COUNTRIES countries x 2 capitals, task comparison, 512-token
context, 2 x claims steps, one CPU thread), for ICM_OPT_SEEDS seeds (default 1):

    flock /tmp/selfteach-model.lock env ICM_OPT_MODEL=gemma3-270m \
        python -m benchmarks.bench_icm_options
"""

from __future__ import annotations

import itertools
import os
import time

TASKS = [  # (name, built-in set, wrong candidates per country, --task)
    ("capitals/comparison", "capitals", 1, "comparison"),
    ("capitals-3/exclusive", "capitals", 2, "exclusive"),
    ("capitals/exclusive", "capitals", 1, "exclusive"),
    ("sums/binary", "sums", 1, "binary"),
]
VARIANTS = [(s, f) for s, f in itertools.product(("paper", "reference"), repeat=2)]


def run(seeds: int, w_ctx: float) -> dict:
    from selfteach.data.builtin import builtin_claims
    from selfteach.elicit import ICMConfig, icm
    from selfteach.elicit.synthetic import synthetic_backend_for

    acc: dict[tuple[str, str, str], list[float]] = {}
    zs: dict[str, list[float]] = {}
    for name, spec, wrong, task in TASKS:
        claims = (
            builtin_claims(spec, wrong_per_country=wrong)
            if spec == "capitals"
            else builtin_claims(spec)
        )
        for seed in range(seeds):
            for schedule, fix in VARIANTS:
                res = icm(
                    claims,
                    synthetic_backend_for(claims, seed=seed, w_ctx=w_ctx),
                    task=task,
                    progress=False,
                    config=ICMConfig(seed=seed, schedule=schedule, fix=fix),
                )
                acc.setdefault((name, schedule, fix), []).append(res.metrics["accuracy"])
            zs.setdefault(name, []).append(res.metrics["zero_shot_accuracy"])
    return {"acc": acc, "zero_shot": zs}


def real(model: str, n_countries: int, seeds: int) -> list[dict]:
    import torch

    from selfteach.backends import load_backend
    from selfteach.elicit import ICMConfig, demo_claims, icm

    torch.set_num_threads(1)
    backend = load_backend(model)
    rows = []
    for seed in range(seeds):
        claims = demo_claims(n_countries, seed=0)
        for schedule, fix in VARIANTS:
            t0 = time.time()
            res = icm(
                claims,
                backend,
                task="comparison",
                progress=False,
                config=ICMConfig(seed=seed, schedule=schedule, fix=fix, max_context_tokens=512),
            )
            m = res.metrics
            rows.append(
                {
                    "model": model,
                    "claims": len(claims),
                    "seed": seed,
                    "schedule": schedule,
                    "fix": fix,
                    "accuracy": m["accuracy"],
                    "auroc": m["auroc"],
                    "zero_shot": m["zero_shot_accuracy"],
                    "balance": m["balance"],
                    "I": m["I"],
                    "U": m["U"],
                    "acceptance": m["acceptance"],
                    "seconds": round(time.time() - t0, 1),
                }
            )
            print(rows[-1], flush=True)
    return rows


def main() -> list[dict]:
    if os.environ.get("ICM_OPT_MODEL"):
        return real(os.environ["ICM_OPT_MODEL"], int(os.environ.get("ICM_OPT_COUNTRIES", "16")),
                    int(os.environ.get("ICM_OPT_SEEDS", "1")))
    seeds = int(os.environ.get("ICM_OPT_SEEDS", "10"))
    rows = []
    for w_ctx in [float(x) for x in os.environ.get("ICM_OPT_WCTX", "0.5,1,2").split(",")]:
        rows += table(seeds, w_ctx)
    return rows


def table(seeds: int, w_ctx: float) -> list[dict]:
    from selfteach.stats import bootstrap_ci

    t0 = time.time()
    out = run(seeds, w_ctx)
    acc = out["acc"]
    rows = []
    for schedule, fix in VARIANTS:
        row: dict = {"w_ctx": w_ctx, "schedule": schedule, "fix": fix}
        diffs = []
        for name, *_ in TASKS:
            a = acc[(name, schedule, fix)]
            row[name] = round(sum(a) / len(a), 4)
            diffs += [x - y for x, y in zip(a, acc[(name, "paper", "paper")], strict=True)]
        lo, hi = bootstrap_ci(diffs)
        row["mean_diff_vs_paper"] = round(sum(diffs) / len(diffs), 4)
        row["ci95"] = [round(lo, 4), round(hi, 4)]
        rows.append(row)
    rows.append({"w_ctx": w_ctx, "schedule": "zero-shot", "fix": "-",
                 **{n: round(sum(v) / len(v), 4) for n, v in out["zero_shot"].items()}})
    print(f"context effect w_ctx={w_ctx}: {seeds} seeds, {time.time() - t0:.0f} s", flush=True)
    for r in rows:
        print(r, flush=True)
    return rows


if __name__ == "__main__":
    main()
