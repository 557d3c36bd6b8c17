"""A synthetic label read-out for testing and measuring ICM without a model.

`SyntheticBackend` answers `label_logprobs` from a latent truth per claim and a
context-consistency effect: the query's prediction follows its truth with a weak, noisy
per-claim strength (possibly of the wrong sign), sharpened the more the in-context labels
agree with truth. Coherent (truthful) labelings therefore have higher mutual
predictability, as ICM assumes. Deterministic: same inputs, same read-out.
Used by tests/test_icm.py and benchmarks/bench_icm_options.py.
"""

from __future__ import annotations

import math
import random

from selfteach.backends.base import Usage
from selfteach.data.records import Claim


def _logsig(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x > -30 else x


class SyntheticBackend:
    """label_logprobs from a latent truth and a context-consistency effect."""

    name = "synthetic"

    def __init__(self, truth: dict[str, bool], strength: dict[str, float], w_ctx: float = 2.0,
                 fail_after: int | None = None):
        self.truth, self.strength, self.w_ctx = truth, strength, w_ctx
        self.usage = Usage()
        self.fail_after = fail_after
        self.prompts_seen: list[str] = []

    @staticmethod
    def _claim(block: str) -> str:
        line = next(ln for ln in block.splitlines() if ln.startswith("Claim: "))
        return line.removeprefix("Claim: ").strip()

    def label_logprobs(
        self, prompts: list[str], labels: dict[str, list[str]]
    ) -> list[dict[str, float]]:
        if self.fail_after is not None and self.usage.calls >= self.fail_after:
            raise KeyboardInterrupt
        self.usage.calls += 1
        self.usage.prompt_tokens += sum(len(p.split()) for p in prompts)
        out = []
        for p in prompts:
            self.prompts_seen.append(p)
            blocks = [b for b in p.split("\n\n") if b.strip()]
            q, ctx = self._claim(blocks[-1]), blocks[:-1]
            agree = [
                1.0 if b.rstrip().endswith("True") == self.truth[self._claim(b)] else -1.0
                for b in ctx
            ]
            m = sum(agree) / len(agree) if agree else 0.0
            z = 1.0 if self.truth[q] else -1.0
            logit = z * (self.strength[q] + self.w_ctx * max(m, 0.0))  # truthful context sharpens
            out.append({"True": _logsig(logit), "False": _logsig(-logit)})
        return out


def synthetic_task(
    n: int = 24, seed: int = 0, groups: bool = False
) -> tuple[list[Claim], dict, dict]:
    """n claims "item K holds" with random truth and strength (and groups of two if asked):
    (claims, truth by text, strength by text) for `SyntheticBackend(truth, strength)`."""
    rng = random.Random(seed)
    claims, truth, strength = [], {}, {}
    for k in range(n):
        text = f"item {k} holds"
        t = rng.random() < 0.5
        truth[text], strength[text] = t, rng.uniform(-0.6, 1.0)
        claims.append(Claim(id=f"c{k}", claim=text, gold=t, group=f"g{k // 2}" if groups else None))
    return claims, truth, strength


def synthetic_backend_for(claims: list[Claim], seed: int = 0, lo: float = -0.6, hi: float = 1.0,
                          w_ctx: float = 2.0) -> SyntheticBackend:
    """A synthetic read-out for claims with gold labels (e.g. the built-in tasks): truth =
    gold, zero-shot strength drawn uniformly from [lo, hi] per claim (seeded)."""
    rng = random.Random(f"synthetic-{seed}")
    truth = {c.claim: bool(c.gold) for c in claims}
    strength = {c.claim: rng.uniform(lo, hi) for c in claims}
    return SyntheticBackend(truth, strength, w_ctx=w_ctx)
