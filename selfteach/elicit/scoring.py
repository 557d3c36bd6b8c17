"""Mutual predictability P(D) = sum_i log P(y_i | x_i, D without i), exact and fast.

Wen et al. 2025 (arXiv 2506.10139), eq. 1-2. P(y | x, context) is the next-token
probability of the label word after the example block, summed over every token variant
of the word (" True", "True", " true", ...) and renormalised over the two labels (the
paper reads the two label words only; renormalising makes P independent of the mass the
model puts on unrelated tokens, which varies with context length).

Scorers with one interface (`predict`, `total_logp`, `after_step`, `score_all`):

- `ExactScorer` (`--scoring exact`): the naive loop of the reference code. Every U(D) is
  computed from scratch: |D| prompts, each with the other |D|-1 labeled examples in
  context, i.e. O(|D|^2) tokens per evaluation, and ConsistencyFix pays that again for
  every assignment it tries.
- `FastScorer` (default): three changes that keep the objective's shape and cut the cost
  by orders of magnitude.
  1. Leave-one-*block*-out contexts: claims are split into `blocks` fixed random blocks;
     a claim is scored with the labeled claims of all *other* blocks in context. All
     claims of a block share one context, so the backend reads it once and scores the
     claims as short suffixes against its KV cache (`label_logprobs_shared_prefix`).
     With B blocks a claim sees (B-1)/B of D (B = |D| would be exact leave-one-out).
  2. Scores are cached against a snapshot of the labels and reused: a proposal, a
     ConsistencyFix candidate and delta-U are computed from cached per-claim
     log-probabilities (a label change's effect on the *other* claims' scores is
     deferred), so most steps cost one short suffix or nothing.
  3. The snapshot is refreshed when a share `refresh_frac` of it has changed (or after
     `refresh_every` steps): all labeled claims are rescored in the current context (B
     prefixes + |D| suffixes) and U is recomputed. Refreshes are frequent while D is
     small and cheap, rare once it is large.
  The deferred cross-effects are the approximation; `benchmarks/bench_icm.py` measures
  its cost and its label accuracy against the exact loop.
- `SampledScorer` (`context_claims` = K; a departure from the paper, for claim sets that do
  not fit a context): FastScorer with many small chunks instead of 2 blocks, each chunk's
  context K labeled claims sampled from the snapshot, so prompts and per-step cost do not
  grow with N. Without a shared-prefix backend its requests are independent prompts,
  all of a rescoring in one batched call, so any backend, or a pool of endpoints, can
  answer them; `benchmarks/bench_icm_scale.py` measures it.

Contexts are the labeled examples ordered by group (related claims sit together) and
cut to `max_context_tokens` from the far end; the scored example is never cut (it is a
separate suffix).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable

from selfteach.backends.base import (
    ContextLimit,
    LabelReader,
    LastTokenScoring,
    PrefixScoring,
    Tokenizes,
)
from selfteach.data.records import Claim
from selfteach.elicit.templates import Template

LP = tuple[float, float]  # (log P(True), log P(False)), renormalised over the two labels


# bounded contexts: the refresh period grows with |D| beyond this (SampledScorer)
REFRESH_SCALE = 256
# a label the backend could not read (-inf, NaN) gets at most this (authors' eps)
FLOOR = math.log(1e-5)


def normalise(row: dict[str, float]) -> LP:
    """Renormalise {True: a, False: b} log-probs over the two labels; always finite.

    A label read as -inf or NaN (or +inf: no log-prob is positive) (e.g. absent from a
    server's top-k) is floored at min(log 1e-5, the other label's log-prob): it says "less
    likely than what was read",
    never "impossible", so the margin stays finite and U and delta-U never become inf/NaN
    (with -inf one such claim made every delta-U NaN and the search accepted nothing).
    """
    a, b = (float(row[k]) if math.isfinite(float(row[k])) else None for k in ("True", "False"))
    if a is None:
        if b is None:  # nothing read: no preference
            return (math.log(0.5), math.log(0.5))
        a = min(FLOOR, b)
    elif b is None:
        b = min(FLOOR, a)
    m = max(a, b)
    z = m + math.log(math.exp(a - m) + math.exp(b - m))
    return (a - z, b - z)


def logp(lp: LP, label: bool) -> float:
    return lp[0] if label else lp[1]


def term(lp: LP, label: bool, margin: bool = False) -> float:
    """One claim's term of P: log P(label), or the signed margin log P(label) - log P(other)."""
    return (lp[0] - lp[1]) * (1 if label else -1) if margin else logp(lp, label)


class _Base:
    def __init__(
        self,
        claims: list[Claim],
        backend: LabelReader,
        template: Template,
        max_context_tokens: int,
        leave_out: str = "claim",
    ):
        self.claims, self.backend, self.template = claims, backend, template
        # leave_out="group": a claim is scored without its own group's claims in context
        members: dict[str, list[int]] = {}
        for i, c in enumerate(claims):
            if c.group is not None:
                members.setdefault(c.group, []).append(i)
        self.left_out = {
            i: (members[c.group] if leave_out == "group" and c.group is not None else [i])
            for i, c in enumerate(claims)
        }
        self.group_members = members
        self.labels_spec = template.labels()
        order: dict[str, int] = {}
        for c in claims:
            if c.group is not None:
                order.setdefault(c.group, len(order))
        # contexts list related claims together: by group (first appearance), then index
        self.rank = {
            i: (order.get(c.group, len(order) + i) if c.group is not None else len(order) + i, i)
            for i, c in enumerate(claims)
        }
        self.budget = max_context_tokens
        limit = backend.max_length if isinstance(backend, ContextLimit) else None
        if isinstance(backend, Tokenizes):
            tok = backend.tokenize
            self.example_len = {i: len(tok(template.example(c, True) + template.separator))
                                for i, c in enumerate(claims)}
            if limit:
                longest_query = max(len(tok(template.suffix(c, True))) for c in claims)
                self.budget = max(0, min(self.budget, int(limit) - longest_query - 8))
        else:  # a backend without a tokenizer: a rough character estimate
            self.example_len = {
                i: len(template.example(c, True)) // 3 + 2 for i, c in enumerate(claims)
            }

    # ---- prompts ----------------------------------------------------------------------
    def context(self, labels: dict[int, bool], exclude: Iterable[int]) -> str:
        """Labeled examples except `exclude`, grouped, cut from the far end to the budget."""
        skip = set(exclude)
        return self._render(
            labels, sorted((i for i in labels if i not in skip), key=self.rank.__getitem__)
        )

    def _render(self, labels: dict[int, bool], members: list[int]) -> str:
        """The examples `members` in this order, cut from the far end (the front) to the budget."""
        kept: list[int] = []
        used = 0
        for i in reversed(members):  # keep the examples nearest the query
            if used + self.example_len[i] > self.budget:
                break
            kept.append(i)
            used += self.example_len[i]
        kept.reverse()
        return self.template.context(
            [self.template.example(self.claims[i], labels[i]) for i in kept]
        )

    def _score(self, prefix: str, idx: list[int]) -> dict[int, LP]:
        """Label log-probs of claims `idx` after the shared context `prefix`."""
        if not idx:
            return {}
        sufs = [self.template.suffix(self.claims[i], bool(prefix)) for i in idx]
        if prefix and isinstance(self.backend, PrefixScoring):  # the context is read once
            rows = self.backend.label_logprobs_shared_prefix(prefix, sufs, self.labels_spec)
        else:
            rows = self._label_logprobs([prefix + s for s in sufs])
        return {i: normalise(r) for i, r in zip(idx, rows, strict=True)}

    def _score_each(self, prompts: list[tuple[int, str]]) -> dict[int, LP]:
        """Each claim with its own context (no sharing), batched in one call."""
        if not prompts:
            return {}
        texts = [ctx + self.template.suffix(self.claims[i], bool(ctx)) for i, ctx in prompts]
        rows = self._label_logprobs(texts)
        return {i: normalise(r) for (i, _), r in zip(prompts, rows, strict=True)}

    def _label_logprobs(self, texts: list[str]) -> list[dict[str, float]]:
        """Label read-outs of full prompts: at the last position only where the backend can."""
        if isinstance(self.backend, LastTokenScoring):
            return self.backend.label_logprobs_last(texts, self.labels_spec)
        return self.backend.label_logprobs(texts, self.labels_spec)

    def zero_shot(self) -> dict[int, LP]:
        """No context: the model's own prior labels (a baseline and a diagnostic)."""
        return self._score("", list(range(len(self.claims))))

    # ---- checkpointing ----------------------------------------------------------------
    def state(self) -> dict:
        return {}

    def load_state(self, state: dict) -> None:
        pass


class ExactScorer(_Base):
    """The naive loop: every U(D) rescored from scratch with leave-one-out contexts."""

    name = "exact"

    def predict(self, i: int, labels: dict[int, bool]) -> LP:
        return self._score_each([(i, self.context(labels, self.left_out[i]))])[i]

    def total_logp(self, labels: dict[int, bool], margin: bool = False) -> float:
        scores = self._score_each([(i, self.context(labels, self.left_out[i])) for i in labels])
        return sum(term(scores[i], y, margin) for i, y in labels.items())

    def after_step(self, step: int, labels: dict[int, bool], changed: int | None = None) -> bool:
        return False

    def refresh(self, labels: dict[int, bool]) -> None:
        pass

    def score_all(self, labels: dict[int, bool]) -> dict[int, LP]:
        """Every claim scored with all other labeled claims in context."""
        return self._score_each(
            [(i, self.context(labels, self.left_out[i])) for i in range(len(self.claims))]
        )


class FastScorer(_Base):
    """Leave-one-block-out contexts read once per block, cached scores, periodic refresh."""

    name = "fast"

    def __init__(
        self,
        claims: list[Claim],
        backend: LabelReader,
        template: Template,
        max_context_tokens: int,
        blocks: int = 2,
        refresh_every: int = 64,
        refresh_frac: float = 0.25,
        seed: int = 0,
        leave_out: str = "claim",
    ):
        super().__init__(claims, backend, template, max_context_tokens, leave_out)
        perm = list(range(len(claims)))
        random.Random(f"icm-blocks-{seed}").shuffle(perm)
        self.n_blocks = max(1, min(blocks, len(claims)))
        self.block = {i: r % self.n_blocks for r, i in enumerate(perm)}
        # a group shares its first member's block: never in its own context
        if leave_out == "group":
            for i in range(len(claims)):
                self.block[i] = self.block[min(self.left_out[i])]
        self.refresh_every, self.refresh_frac = refresh_every, refresh_frac
        self.last_refresh = 0
        self.snapshot: dict[int, bool] = {}
        self.cache: dict[int, LP] = {}

    def _prefix(self, b: int) -> str:
        return self.context(self.snapshot, [i for i in self.snapshot if self.block[i] == b])

    def _fill(self, idx: Iterable[int]) -> None:
        """Score uncached claims against the snapshot, one shared context per block."""
        by_block: dict[int, list[int]] = {}
        for i in idx:
            if i not in self.cache:
                by_block.setdefault(self.block[i], []).append(i)
        for b, members in sorted(by_block.items()):
            self.cache.update(self._score(self._prefix(b), sorted(members)))

    def predict(self, i: int, labels: dict[int, bool]) -> LP:
        self._fill([i])
        return self.cache[i]

    def total_logp(self, labels: dict[int, bool], margin: bool = False) -> float:
        self._fill(labels)
        return sum(term(self.cache[i], y, margin) for i, y in labels.items())

    def refresh(self, labels: dict[int, bool]) -> None:
        """New snapshot = current labels; rescore every labeled claim in it."""
        self.snapshot = dict(labels)
        self.cache = {}
        self._fill(labels)

    def after_step(self, step: int, labels: dict[int, bool], changed: int | None = None) -> bool:
        """Refresh when the labels moved enough since the snapshot (a share `refresh_frac`
        of it changed or was added: refreshes are cheap while D is small and rarer as it
        grows), or after `refresh_every` steps with any change. Returns True if refreshed.
        `changed`: the number of labels that differ from the snapshot, if the caller keeps it."""
        if changed is None:
            changed = sum(self.snapshot.get(i) != y for i, y in labels.items())
        due = self._due(step)
        if changed and (due or changed >= self.refresh_frac * max(len(self.snapshot), 8)):
            self.refresh(labels)
            self.last_refresh = step
            return True
        return False

    def _due(self, step: int) -> bool:
        return step - self.last_refresh >= self.refresh_every

    def score_all(self, labels: dict[int, bool]) -> dict[int, LP]:
        self.snapshot = dict(labels)
        self.cache = {}
        self._fill(range(len(self.claims)))
        return dict(self.cache)

    def state(self) -> dict:
        return {
            "last_refresh": self.last_refresh,
            "snapshot": {str(i): y for i, y in self.snapshot.items()},
            "cache": {str(i): list(v) for i, v in self.cache.items()},
        }

    def load_state(self, state: dict) -> None:
        self.last_refresh = int(state.get("last_refresh", 0))
        self.snapshot = {int(i): bool(y) for i, y in state.get("snapshot", {}).items()}
        self.cache = {int(i): (float(v[0]), float(v[1])) for i, v in state.get("cache", {}).items()}


class SampledScorer(FastScorer):
    """Bounded contexts (`ICMConfig.context_claims` = K): a scored claim sees at most K
    labeled claims sampled from the snapshot, not all of D, so a prompt's length and a
    step's cost do not grow with the number of claims.

    Claims are split into fixed random chunks of `share` claims; a chunk's claims share one
    context (read once through the prefix cache, like FastScorer's blocks), drawn afresh at
    every refresh from a seed of (run seed, refresh count, chunk): deterministic, so a
    resumed run draws the same contexts, and independent of which backend or endpoint
    answers. The draw leaves out the chunk's own claims (and their groups with
    leave_out="group"); select="related" first takes the labeled claims of the chunk's groups
    (the nearest by subject), then fills up at random. The examples are cut to the token
    budget from the far end as usual.

    Refreshes: as FastScorer's (a share `refresh_frac` of the labels changed, or
    `refresh_every` steps passed), except that the period grows with D beyond
    `REFRESH_SCALE` labeled claims (every refresh_every x |D| / 256 steps): a full
    rescoring costs O(|D|) scorings, so a fixed period would make a step's cost grow with
    |D|; this keeps it O(1) per step, and equal to FastScorer's schedule up to 256 claims.
    """

    def __init__(
        self,
        claims: list[Claim],
        backend: LabelReader,
        template: Template,
        max_context_tokens: int,
        k: int,
        share: int = 8,
        select: str = "random",
        refresh_every: int = 64,
        refresh_frac: float = 0.25,
        seed: int = 0,
        leave_out: str = "claim",
    ):
        super().__init__(
            claims,
            backend,
            template,
            max_context_tokens,
            blocks=2,
            refresh_every=refresh_every,
            refresh_frac=refresh_frac,
            seed=seed,
            leave_out=leave_out,
        )
        self.k, self.select, self.seed = k, select, seed
        perm = list(range(len(claims)))
        random.Random(f"icm-chunks-{seed}").shuffle(perm)
        self.n_blocks = max(1, math.ceil(len(claims) / share))
        self.block = {i: r // share for r, i in enumerate(perm)}
        chunks: dict[int, list[int]] = {}
        for i in sorted(self.block):
            chunks.setdefault(self.block[i], []).append(i)
        self.excluded = {b: {j for i in m for j in self.left_out[i]} for b, m in chunks.items()}
        self.chunk_groups = {b: sorted({g for i in m if (g := self.claims[i].group) is not None})
                             for b, m in chunks.items()}
        self.version = 0  # refreshes so far: part of the context seed
        # the snapshot's labeled claims, sorted: what contexts are drawn from
        self.pool: list[int] = []

    def _snap(self, labels: dict[int, bool]) -> None:
        self.snapshot = dict(labels)
        self.pool = sorted(self.snapshot)
        self.version += 1
        self.cache = {}

    def _prefix(self, b: int) -> str:
        excl = self.excluded[b]
        chosen: list[int] = []
        if self.select == "related":
            near = [j for g in self.chunk_groups[b] for j in self.group_members[g]
                    if j in self.snapshot and j not in excl]
            chosen = near[-self.k:]
        taken = set(chosen)
        rng = random.Random(f"icm-context-{self.seed}-{self.version}-{b}")
        draw = rng.sample(self.pool, min(len(self.pool), self.k + len(excl) + len(taken)))
        fill = [j for j in draw if j not in excl and j not in taken][:self.k - len(chosen)]
        # related examples last: nearest the query, and the last to be cut by the budget
        return self._render(self.snapshot, fill + chosen)

    def _fill(self, idx: Iterable[int]) -> None:
        """Score uncached claims. A backend that reads a shared prefix once gets one call per
        chunk (FastScorer); any other gets every prompt in one batched call of independent
        requests, which an endpoint pool can spread (the prompts are the same either way)."""
        if isinstance(self.backend, PrefixScoring):
            super()._fill(idx)
            return
        todo = sorted({i for i in idx if i not in self.cache}, key=lambda i: (self.block[i], i))
        prefixes = {b: self._prefix(b) for b in sorted({self.block[i] for i in todo})}
        self.cache.update(self._score_each([(i, prefixes[self.block[i]]) for i in todo]))

    def refresh(self, labels: dict[int, bool]) -> None:
        self._snap(labels)
        self._fill(labels)

    def _due(self, step: int) -> bool:
        return step - self.last_refresh >= self.refresh_every * max(
            1.0, len(self.snapshot) / REFRESH_SCALE
        )

    def score_all(self, labels: dict[int, bool]) -> dict[int, LP]:
        self._snap(labels)
        self._fill(range(len(self.claims)))
        return dict(self.cache)

    def state(self) -> dict:
        return {**super().state(), "version": self.version}

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        self.version = int(state.get("version", 0))
        self.pool = sorted(self.snapshot)


def make_scorer(
    kind: str,
    claims: list[Claim],
    backend: LabelReader,
    template: Template,
    max_context_tokens: int,
    blocks: int,
    refresh_every: int,
    refresh_frac: float,
    seed: int,
    leave_out: str = "claim",
    context_claims: int | None = None,
    context_share: int = 8,
    context_select: str = "random",
) -> ExactScorer | FastScorer:
    if kind == "exact":
        return ExactScorer(claims, backend, template, max_context_tokens, leave_out)
    if context_claims is not None:
        return SampledScorer(
            claims,
            backend,
            template,
            max_context_tokens,
            k=context_claims,
            share=context_share,
            select=context_select,
            refresh_every=refresh_every,
            refresh_frac=refresh_frac,
            seed=seed,
            leave_out=leave_out,
        )
    return FastScorer(
        claims,
        backend,
        template,
        max_context_tokens,
        blocks=blocks,
        refresh_every=refresh_every,
        refresh_frac=refresh_frac,
        seed=seed,
        leave_out=leave_out,
    )
