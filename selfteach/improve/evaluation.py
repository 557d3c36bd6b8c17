"""Base vs improved: greedy accuracy and maj@k on the held-out split, with bootstrap
intervals, and paired differences between two models on the same items.

The per-model numbers come from the lead's `selfteach.evaluate.accuracy` (greedy: one
sample at temperature 0; maj@k: k samples, majority vote over extracted answers, Wang et
al. 2022, arXiv 2203.11171). `compare` bootstraps the per-item difference (paired: both
models answered the same problems), which is tighter than comparing two separate intervals.
"""

from __future__ import annotations

from pathlib import Path

from selfteach.backends.base import Backend
from selfteach.data.records import Problem
from selfteach.runs import RunDir
from selfteach.stats import bootstrap_ci


def evaluate_model(
    backend: Backend,
    problems: list[Problem],
    samples: int = 4,
    temperature: float = 0.7,
    max_new_tokens: int = 128,
    seed: int = 0,
    batch_size: int = 8,
    run_path: Path | None = None,
    progress: bool = True,
) -> dict:
    """{"greedy": {mean, lo, hi, n}, "maj": {...} (when samples > 1), "k",
    "items": {id: [greedy, maj]}}."""
    from selfteach.evaluate.accuracy import accuracy

    def one(name: str, k: int, temp: float) -> dict:
        run = None
        if run_path is not None:
            (run_path / name).mkdir(parents=True, exist_ok=True)
            run = RunDir(run_path / name)
        return accuracy(
            backend,
            problems,
            samples=k,
            temperature=temp,
            max_new_tokens=max_new_tokens,
            seed=seed,
            batch_size=batch_size,
            run=run,
            progress=progress,
        )

    g = one("greedy", 1, 0.0)
    out = {"greedy": g["accuracy"], "k": samples, "usage": g["usage"],
           "items": {it["id"]: [it["accuracy"]] for it in g["items"]}}
    if samples > 1:
        m = one("sampled", samples, temperature)
        out["maj"] = m["maj_at_k"]
        out["sample_accuracy"] = m["accuracy"]
        for it in m["items"]:
            out["items"][it["id"]].append(it["maj_at_k"])
    return out


def compare(a: dict, b: dict, which: int = 0, seed: int = 0) -> dict:
    """Paired difference b - a over shared items: mean and 95% bootstrap interval.
    `which` = 0 for greedy accuracy, 1 for maj@k."""
    ids = [
        i
        for i in a["items"]
        if i in b["items"] and len(a["items"][i]) > which and len(b["items"][i]) > which
    ]
    diffs = [b["items"][i][which] - a["items"][i][which] for i in ids]
    if not diffs:
        return {"mean": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": 0}
    lo, hi = bootstrap_ci(diffs, seed=seed)
    return {"mean": sum(diffs) / len(diffs), "lo": lo, "hi": hi, "n": len(diffs)}
