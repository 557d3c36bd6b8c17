"""Small statistics shared by every evaluation: bootstrap intervals, AUROC, pass@k, maj@k.

The one place for them: methods and benchmarks import these rather than re-deriving them."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np


def bootstrap_ci(
    values: Sequence[float], n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (per-item scores)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (math.nan, math.nan)
    if x.size == 1:
        return (float(x[0]), float(x[0]))
    rng = np.random.default_rng(seed)
    return percentile_interval(
        x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1), level
    )


def percentile_interval(draws: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """The central `level` interval of bootstrap draws of a statistic (percentile method)."""
    lo, hi = np.quantile(np.asarray(draws, dtype=float), [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def auroc(scores: Sequence[float], labels: Sequence[bool | int]) -> float:
    """Area under the ROC curve: the probability that a positive outranks a negative, ties
    counting 1/2 (Mann-Whitney U / (n_pos n_neg)). NaN when one class is missing."""
    pos = np.asarray([s for s, y in zip(scores, labels, strict=True) if y], dtype=float)
    neg = np.asarray([s for s, y in zip(scores, labels, strict=True) if not y], dtype=float)
    if not pos.size or not neg.size:
        return math.nan
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins) / (pos.size * neg.size)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021, eq. 1)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def majority(answers: Sequence[str | None]) -> str | None:
    """Most common non-empty answer; ties go to the one seen first."""
    votes = Counter(a for a in answers if a is not None)
    if not votes:
        return None
    best = max(votes.values())
    return next(a for a in answers if a is not None and votes[a] == best)


def mean_ci(values: Sequence[float], seed: int = 0) -> dict[str, float]:
    """{"mean", "lo", "hi", "n"} for per-item scores."""
    lo, hi = bootstrap_ci(values, seed=seed)
    return {
        "mean": float(np.mean(values)) if len(values) else math.nan,
        "lo": lo,
        "hi": hi,
        "n": len(values),
    }
