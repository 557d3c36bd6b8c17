"""Parseability and pairwise accuracy of judge runs (issue 13, items 1-2).

    python -m benchmarks.judge_parse_table runs/ev/j15-paper runs/ev/j15-example ...

Reads each run's `judgments.jsonl` (also from a run stopped early: every finished item is
there) and prints one markdown row per run: parseable samples with a 95% Wilson interval,
failure reasons, mean tokens, samples that hit the token cap, and pairwise accuracy at
k = 1 and k = 2 (`accuracy_at_k`, RewardBench rule) with a 95% bootstrap interval over items.
"""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from selfteach.judge import accuracy_at_k


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def boot(xs: list[float], n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    a = np.asarray(xs, dtype=float)
    rng = np.random.default_rng(seed)
    means = a[rng.integers(0, len(a), (n_boot, len(a)))].mean(axis=1)
    return float(a.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def row(run: Path, ks: tuple[int, ...] = (1, 2)) -> str:
    recs = [json.loads(x) for x in (run / "judgments.jsonl").read_text().splitlines() if x.strip()]
    samples = [s for r in recs for s in r["samples"]]
    ok = sum(s["error"] is None for s in samples)
    lo, hi = wilson(ok, len(samples))
    errs = Counter(s["error"] for s in samples if s["error"])
    toks = [s["tokens"] for s in samples]
    capped = sum(s.get("finish") == "length" for s in samples)
    accs = []
    for k in ks:
        if all(len(r["samples"]) >= k for r in recs):
            m, a, b = boot([accuracy_at_k(r, k) for r in recs])
            accs.append(f"{m:.3f} [{a:.2f}, {b:.2f}]")
        else:
            accs.append("-")
    err_s = ", ".join(f"{k} {v}" for k, v in errs.most_common()) or "-"
    return (f"| {run.name} | {len(recs)} | {ok}/{len(samples)} ({ok / len(samples):.0%}) [{lo:.2f}, {hi:.2f}] | {err_s} | "
            f"{np.mean(toks):.0f} | {capped} | " + " | ".join(accs) + " |")


def main() -> None:
    print("| run | items | parseable [95% Wilson] | failures | mean tokens | hit cap | acc k=1 | acc k=2 |")
    print("|---|---|---|---|---|---|---|---|")
    for arg in sys.argv[1:]:
        print(row(Path(arg)))


if __name__ == "__main__":
    main()
