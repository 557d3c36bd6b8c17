"""ICM: Internal Coherence Maximization by simulated annealing.

Wen et al. 2025, "Unsupervised Elicitation of Language Models", arXiv 2506.10139,
Algorithm 1 (search) and Algorithm 2 (ConsistencyFix):

    U(D) = alpha * P(D) - I(D)
    P(D) = sum_i log P(y_i | x_i, D without i)        mutual predictability (scoring.py)
    I(D) = number of labeled pairs violating the consistency rule (rules.py)

Difference from the paper's formula (on purpose, `objective` config): by default P is the
*mean* over the labeled claims of the signed label margin log P(y_i|.) - log P(not y_i|.),
as in the authors' reference code (`train_prob = np.mean(scores)`), for which alpha=50
and T0=10 were tuned. With the sum as printed, every log-probability is negative, so
adding a claim to D always lowers U and annealing stops accepting new claims once T
cools: D stays near its K=8 seed (shown in tests/test_icm.py). `objective="sum"` gives the
printed formula, `"mean"` the mean log-probability.

1. K random claims get random balanced labels (K=8), then ConsistencyFix (`init="random"`;
   `init="zero_shot_rule"`, a departure, starts instead from the zero-shot + rule labels of
   every claim).
2. For n = 1..N_iter: T = max(T_min, T0 / (1 + beta * log n)) (`schedule="paper"`; the
   authors' code cools over accepted flips k instead, T0 / (1 + 2 ln(1 + k)),
   `schedule="reference"`); sample a claim (unlabeled
   claims related to a labeled one weigh `related_weight` = 100x); propose
   y = argmax_y P(y | x, D without x); D' = ConsistencyFix(D with the proposal);
   accept if U(D') > U(D), else with probability exp((U(D') - U(D)) / T).
3. ConsistencyFix (M=10 rounds): pick a violating pair, try every consistent assignment
   of it (both-False included where consistent), keep the best if it raises U (`fix="paper"`;
   the authors' code always applies it, `fix="reference"`). Unlike the
   paper, an assignment that would create more violations elsewhere in the group than it
   removes is not tried, so a fix never increases I(D).

Beyond one context (`context_claims` = K; a departure, off by default). The paper keeps every
labeled claim in the prompt; for larger sets it runs ICM on batches of ~256 claims, or labels
a batch, fine-tunes and labels the next. Here one search covers all N claims instead, and a
scored claim sees K labeled claims sampled afresh at every rescoring from D without it
(scoring.SampledScorer), cut to `max_context_tokens`: P(D) becomes the mean margin of
y_i given a K-sample of D, so every label still informs the others and the consistency
rule still spans the whole set (no batch boundary), while a prompt's length no longer
depends on N. What also changes, so that a step's cost does not grow with N: U's parts
(the P sum, I, the violating groups, the trajectory's counts) are kept per labeling and
updated from the changed claims only (`_Tally`), the claim to propose is drawn from the
same weights by rejection instead of a pass over all N claims, the full rescoring comes
every `refresh_every` x |D| / 256 steps beyond 256 labeled claims (the share rule
`refresh_frac` unchanged), and the checkpoint is written every N/20 steps
(`checkpoint_every`). Left O(N) per step: one C-level dict copy per proposal (as before).
The default (None) is the paper's full context, unchanged bit for bit.

Claims the search never reached get the argmax label in the final context (counted in
the metrics as `labeled_by_final_argmax`). Gold labels (`Claim.gold`) never reach the
search: they are read only by `_report` after the labels are fixed. The label state is
copied (a new dict) for every proposal, so a rejected proposal cannot leak into it.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from selfteach.backends.base import LabelReader
from selfteach.data.records import Claim
from selfteach.elicit.rules import Rule, make_rule
from selfteach.elicit.scoring import LP, logp, make_scorer, term
from selfteach.elicit.templates import Template
from selfteach.errors import SelfteachError
from selfteach.validate import MAX_STEPS, Seed

CHECKPOINT = "icm_checkpoint.json"


class ICMConfig(BaseModel):
    """ICM settings. Defaults follow the paper (arXiv 2506.10139, section 2.3)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    objective: Literal["margin", "mean", "sum"] = Field(
        "margin",
        description="P(D): margin = mean over D of log P(y_i|.) - log P(not y_i|.) "
        "(the authors' code; "
        "default); mean = mean of log P(y_i|.); sum = sum of log P(y_i|.) (the paper's formula)",
    )
    alpha: float = Field(
        50.0,
        gt=0,
        description="weight of mutual predictability P against inconsistency I; "
        "the authors lower it to 20-30 when the search moves slowly",
    )
    iters: int | None = Field(
        None, ge=0, le=MAX_STEPS, description="annealing steps N_iter; None: 2 x number of claims"
    )
    init_k: int = Field(
        8, ge=0, description="claims labeled at random (balanced) before the search"
    )
    init: Literal["random", "zero_shot_rule"] = Field(
        "random",
        description="starting labels: random = init_k random claims with random balanced labels "
        "(the "
        "paper); zero_shot_rule = every claim labeled by the zero-shot + rule baseline (a "
        "departure: the search starts from the one-pass labeling and keeps only changes "
        "that raise U)",
    )
    keep_best: bool = Field(
        False,
        description="return the labeling with the highest U measured with fresh "
        "scores (the start, each full rescoring, the end) instead of the "
        "last one: the fast scorer's cached scores can accept moves that a "
        "rescoring shows lowered U (a departure from the paper)",
    )
    leave_out: Literal["claim", "group"] = Field(
        "claim",
        description="what a scored claim's context leaves out: claim = only itself (the paper, "
        "P(y_i | x_i, D without i)); group = every claim of its group (a departure: a small "
        "model copies the label of the same-question example in context, which rewards "
        "labeling a group's candidates alike, i.e. breaking the rule)",
    )
    t0: float = Field(10.0, gt=0, description="initial temperature T0")
    t_min: float = Field(0.01, gt=0, description="final temperature T_min")
    beta: float = Field(0.99, ge=0, description="cooling rate of the paper schedule: "
                                                "T = max(T_min, T0 / (1 + beta * log n))")
    schedule: Literal["paper", "reference"] = Field(
        "paper",
        description="paper: T cools over steps n, T0 / (1 + beta * log n) (the paper's text); "
        "reference: T cools over accepted flips k, T0 / (1 + 2 ln(1 + k)) (the authors' "
        "code); both floored at T_min",
    )
    fix: Literal["paper", "reference"] = Field(
        "paper",
        description="ConsistencyFix: paper = keep the best consistent assignment of a "
        "violating pair "
        "only if it raises U (the paper's text); reference = always apply it (the authors' "
        "code)",
    )
    fix_rounds: int = Field(10, ge=0, description="ConsistencyFix rounds M per step")
    related_weight: float = Field(
        100.0,
        gt=0,
        description="sampling weight of an unlabeled claim related (same "
        "group, rule relates them) to a labeled one; others 1",
    )
    scoring: Literal["fast", "exact"] = Field(
        "fast",
        description="fast: block contexts + prefix KV reuse + cached "
        "scores (default); exact: naive full rescoring every step",
    )
    blocks: int = Field(
        2,
        ge=2,
        description="fast scoring: claims are split into this many blocks; a claim is "
        "scored with the labeled claims of the other blocks in context",
    )
    refresh_every: int = Field(
        64,
        ge=1,
        description="fast scoring: rescore all labeled claims at least every this "
        "many steps (when any label changed)",
    )
    refresh_frac: float = Field(
        0.25,
        gt=0,
        description="fast scoring: rescore all labeled claims once this share "
        "of the snapshot's labels changed or was added",
    )
    max_context_tokens: int = Field(
        3072,
        ge=0,
        description="token budget of the few-shot context; the examples "
        "farthest from the query are cut first",
    )
    context_claims: int | None = Field(
        None,
        ge=1,
        description="bounded context (a departure, for claim sets larger than a context): a scored "
        "claim sees at most this many labeled claims, sampled afresh at every rescoring, "
        "within max_context_tokens; step time and memory then do not grow with the number "
        "of claims. None: every labeled claim (the paper; cut to max_context_tokens)",
    )
    context_share: int = Field(
        8,
        ge=1,
        description="bounded context: this many claims (a fixed random chunk) share "
        "one sampled context, read once through the prefix cache; 1 = "
        "every claim its own sample",
    )
    context_select: Literal["random", "related"] = Field(
        "random",
        description="bounded context: random = a uniform sample of the labeled claims; "
        "related = the "
        "labeled claims of the scored claims' groups (same subject) first, then random",
    )
    checkpoint_every: int | None = Field(
        None,
        ge=1,
        description="write the checkpoint every this many steps "
        "(a resumed run redoes the steps since "
        "and gives the same labels); None: every step, or every claims/20 steps with "
        "context_claims (the checkpoint holds O(claims) data)",
    )
    template: Template = Field(
        default_factory=Template, description="prompt format and label words"
    )
    seed: Seed = Field(0, description="same seed, same labels")
    baselines: bool = Field(
        False,
        description="also compute zero-shot, zero-shot + rule, random-label few-shot "
        "and golden-context labels (the last only when claims carry gold)",
    )

    @field_validator("context_claims")
    @classmethod
    def _bounded_needs_fast(cls, v: int | None, info: ValidationInfo) -> int | None:
        if v is not None and info.data.get("scoring") == "exact":
            raise ValueError("bounded contexts need scoring 'fast'")
        return v


class ICMResult(BaseModel):
    """Labels by claim id, their margins in the final context, and diagnostics."""

    labels: dict[str, bool] = Field(description="claim id -> ICM label")
    margins: dict[str, float] = Field(
        description="claim id -> log P(True) - log P(False) in the final context"
    )
    metrics: dict[str, Any] = Field(
        default_factory=dict,
        description="final U, P, I, accuracy (if gold), cost, balance, warnings",
    )
    baselines: dict[str, Any] = Field(
        default_factory=dict,
        description="zero_shot / zero_shot_rule / random_fewshot / golden: accuracy, labels",
    )
    trajectory: list[dict[str, Any]] = Field(
        default_factory=list, description="per-step U, P, I, T, acceptance"
    )


REFERENCE_DECAY = 2.0  # the authors' code: T = T0 / (1 + 2 ln(1 + accepted flips))


def temperature(n: int, cfg: ICMConfig, flips: int = 0) -> float:
    """Temperature at step n >= 1 after `flips` accepted proposals.

    paper:     T = max(T_min, T0 / (1 + beta * ln n))        (arXiv 2506.10139, Alg. 1)
    reference: T = max(T_min, T0 / (1 + 2 * ln(1 + flips)))  (the authors' code)
    """
    if cfg.schedule == "reference":
        return max(cfg.t_min, cfg.t0 / (1.0 + REFERENCE_DECAY * math.log1p(max(flips, 0))))
    return max(cfg.t_min, cfg.t0 / (1.0 + cfg.beta * math.log(max(n, 1))))


def acceptance_probability(delta: float, t: float) -> float:
    """Metropolis: 1 if the objective rises, else exp(delta / T)."""
    if delta > 0:
        return 1.0
    return math.exp(max(delta / t, -700.0))


class _Search:
    def __init__(self, claims: list[Claim], backend: LabelReader, rule: Rule, cfg: ICMConfig):
        self.claims, self.backend, self.rule, self.cfg = claims, backend, rule, cfg
        self.rng = random.Random(cfg.seed)
        self.scorer = make_scorer(
            cfg.scoring,
            claims,
            backend,
            cfg.template,
            cfg.max_context_tokens,
            cfg.blocks,
            cfg.refresh_every,
            cfg.refresh_frac,
            cfg.seed,
            cfg.leave_out,
            cfg.context_claims,
            cfg.context_share,
            cfg.context_select,
        )
        # bounded mode keeps U's parts per labeling (_Tally) so that a step costs O(1) in N
        self.bounded = cfg.context_claims is not None
        self.margin = cfg.objective == "margin"
        self.zs_label: dict[int, bool] = {}
        self.w_max = max(1.0, cfg.related_weight) if rule.relates() else 1.0

    def U(self, labels: dict[int, bool]) -> float:
        if not labels:
            return 0.0
        if self.bounded:
            p = labels.tally.psum  # type: ignore[attr-defined]
        else:
            p = self.scorer.total_logp(labels, margin=self.margin)
        if self.cfg.objective != "sum":
            p /= len(labels)
        # normalise() keeps read-outs finite; an inf/NaN U would stall the search
        if not math.isfinite(p):
            raise SelfteachError(
                f"ICM: mutual predictability is {p} (a label read-out was not finite)"
            )
        return self.cfg.alpha * p - self.count(labels)

    # ---- labelings: plain dicts, or (bounded mode) dicts carrying a running tally ------------
    def change(self, labels: dict[int, bool], changes: dict[int, bool]) -> dict[int, bool]:
        """A new labeling: `labels` with `changes` applied (a copy: a rejected proposal must
        not touch the current state). Bounded mode updates the tally from the changed claims
        and their groups only."""
        if not self.bounded:
            out = dict(labels)
            out.update(changes)
            return out
        new = _Labels(labels)
        old_t: _Tally = labels.tally  # type: ignore[attr-defined]  # a _Labels in bounded mode
        t = new.tally = _Tally(
            old_t.psum, old_t.icount, set(old_t.bad), old_t.ntrue, old_t.nagree, old_t.moved
        )
        snap = self.scorer.snapshot  # type: ignore[union-attr]  # bounded mode: a SampledScorer
        groups = set()
        for k, y in changes.items():
            lp = self.scorer.predict(k, labels)  # cached (or filled) against the snapshot
            old = labels.get(k)
            if old is not None:
                t.psum -= term(lp, old, self.margin)
                t.ntrue -= old
                t.nagree -= old == self.zs_label[k]
                t.moved -= snap.get(k) != old
            t.psum += term(lp, y, self.margin)
            t.ntrue += y
            t.nagree += y == self.zs_label[k]
            t.moved += snap.get(k) != y
            new[k] = y
            g = self.rule.group_of[k]
            if self.rule.relates() and g is not None:
                groups.add(g)
        for g in groups:
            now = len(self._group_violations(new, g))
            t.icount += now - len(self._group_violations(labels, g))
            if now:
                t.bad.add(g)
            else:
                t.bad.discard(g)
        return new

    def retally(self, labels: dict[int, bool], psum: float | None = None) -> dict[int, bool]:
        """Bounded mode: the labeling with its tally computed from scratch (after a refresh,
        or from a checkpoint, whose running `psum` is restored bit for bit). Else `labels`."""
        if not self.bounded:
            return labels
        new = _Labels(labels)
        bad = (
            {
                g
                for g in {self.rule.group_of[i] for i in new}
                if g is not None and self._group_violations(new, g)
            }
            if self.rule.relates()
            else set()
        )
        snap = self.scorer.snapshot  # type: ignore[union-attr]  # bounded mode: a SampledScorer
        new.tally = _Tally(
            self.scorer.total_logp(new, margin=self.margin) if psum is None else psum,
            sum(len(self._group_violations(new, g)) for g in bad),
            bad,
            sum(new.values()),
            sum(y == self.zs_label[i] for i, y in new.items()),
            sum(snap.get(i) != y for i, y in new.items()),
        )
        return new

    def _group_violations(self, labels: dict[int, bool], g: str) -> list[tuple[int, int]]:
        members = [i for i in self.rule.groups[g] if i in labels]
        return [(i, j) for a, i in enumerate(members) for j in members[a + 1:]
                if self.rule.violates(i, labels[i], j, labels[j])]

    def violations(self, labels: dict[int, bool]) -> list[tuple[int, int]]:
        if not self.bounded:
            return self.rule.violations(labels)
        bad = sorted(labels.tally.bad, key=lambda g: self.rule.groups[g][0])  # type: ignore[attr-defined]
        return [p for g in bad for p in self._group_violations(labels, g)]

    def count(self, labels: dict[int, bool]) -> int:
        return labels.tally.icount if self.bounded else self.rule.count(labels)  # type: ignore[attr-defined]

    def summary(self, labels: dict[int, bool]) -> tuple[int, int, int]:
        """(I, labels True, labels equal to zero-shot), for the trajectory."""
        if self.bounded:
            t: _Tally = labels.tally  # type: ignore[attr-defined]
            return t.icount, t.ntrue, t.nagree
        return (self.rule.count(labels), sum(labels.values()),
                sum(labels[i] == self.zs_label[i] for i in labels))

    def moved(self, labels: dict[int, bool]) -> int | None:
        return labels.tally.moved if self.bounded else None  # type: ignore[attr-defined]

    def sample(self, labels: dict[int, bool]) -> int:
        """The claim to propose a label for, drawn with `weights`. Bounded mode draws the
        same distribution by rejection (uniform claim, kept with probability weight / max
        weight): O(max weight) expected work, not O(N)."""
        if not self.bounded:
            return self.rng.choices(range(len(self.claims)), weights=self.weights(labels))[0]
        while True:
            i = self.rng.randrange(len(self.claims))
            related = i not in labels and any(j in labels for j in self.rule.related(i))
            w = self.cfg.related_weight if related else 1.0
            if w >= self.w_max or self.rng.random() * self.w_max < w:
                return i

    def init_labels(self, zs: dict[int, LP]) -> dict[int, bool]:
        """The search's starting labels (`ICMConfig.init`). zero_shot_rule: the task's rule on
        the zero-shot margins for every claim (label-free; no model call beyond the zero-shot
        pass already made)."""
        if self.cfg.init == "zero_shot_rule":
            return self.rule.zero_shot_rule({i: v[0] - v[1] for i, v in zs.items()})[0]
        k = min(self.cfg.init_k, len(self.claims))
        idx = self.rng.sample(range(len(self.claims)), k)
        ys = [True] * (k // 2) + [False] * (k - k // 2)
        self.rng.shuffle(ys)
        return dict(zip(idx, ys, strict=True))

    def consistency_fix(self, labels: dict[int, bool], u: float) -> tuple[dict[int, bool], float]:
        """Algorithm 2: repair violating pairs; never raises I. fix="paper" keeps a pair's
        best assignment only if it raises U; fix="reference" always applies it (the
        authors' code), so U may drop."""
        tried: set[tuple[int, int]] = set()
        for _ in range(self.cfg.fix_rounds):
            pairs = [p for p in self.violations(labels) if p not in tried]
            if not pairs:
                break
            i, j = pairs[self.rng.randrange(len(pairs))]
            tried.add((i, j))
            now = self.count(labels)
            best: tuple[dict[int, bool], float] | None = None
            for a, b in self.rule.consistent_assignments(i, j):
                cand = self.change(labels, {i: a, j: b})
                if self.count(cand) > now:
                    continue
                uc = self.U(cand)
                if best is None or uc > best[1]:
                    best = (cand, uc)
            if best is not None and (best[1] > u or self.cfg.fix == "reference"):
                labels, u = best
        return labels, u

    def weights(self, labels: dict[int, bool]) -> list[float]:
        """Unlabeled claims related to a labeled one weigh `related_weight`, all others 1
        (as in the authors' code: the boost pulls in the partners of labeled claims so
        the rule can act; boosting labeled claims too would starve unlabeled ones)."""
        w = []
        for i in range(len(self.claims)):
            related = i not in labels and any(j in labels for j in self.rule.related(i))
            w.append(self.cfg.related_weight if related else 1.0)
        return w


class _Tally:
    """Bounded mode: the running parts of U and of the trajectory row for one labeling,
    updated per changed claim (O(changes x group size) per step, not O(|D|))."""

    __slots__ = ("psum", "icount", "bad", "ntrue", "nagree", "moved")

    def __init__(self, psum: float, icount: int, bad: set, ntrue: int, nagree: int, moved: int):
        self.psum, self.icount, self.bad = psum, icount, bad  # P's sum; I; groups with a violation
        # True; = zero-shot; != scorer snapshot
        self.ntrue, self.nagree, self.moved = ntrue, nagree, moved


class _Labels(dict):
    """A labeling (claim index -> label) with its `_Tally` (bounded mode only)."""

    __slots__ = ("tally",)
    tally: _Tally


# options that do not change the labels, or are new and at their default
# (old checkpoints still match)
_NOT_FINGERPRINTED = {"baselines", "checkpoint_every"}
_BOUNDED_OPTIONS = {"context_claims", "context_share", "context_select"}


def _fingerprint(claims: list[Claim], task: str, cfg: ICMConfig) -> str:
    skip = _NOT_FINGERPRINTED | (_BOUNDED_OPTIONS if cfg.context_claims is None else set())
    payload = json.dumps([[c.id, c.question, c.claim, c.group, c.key] for c in claims] + [task],
                         sort_keys=True) + cfg.model_dump_json(exclude=skip)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _rng_state(rng: random.Random) -> list:
    v, s, g = rng.getstate()
    return [v, list(s), g]


def _set_rng(rng: random.Random, state: list) -> None:
    rng.setstate((state[0], tuple(state[1]), state[2]))


def icm(
    claims: list[Claim],
    backend: LabelReader,
    task: str = "binary",
    config: ICMConfig | dict | None = None,
    run=None,
    progress: bool = True,
) -> ICMResult:
    """Label `claims` True/False without supervision (ICM, arXiv 2506.10139).

    task: "binary" (no rule), "math" (final answers in `key`, problems in `group`),
    "comparison" (both orders of a pair share `group`), "exclusive" (candidates of one
    question share `group`: at most one True). `run` (a RunDir) receives labels.jsonl,
    metrics.jsonl (the trajectory), icm_result.json and a checkpoint after every step;
    an existing matching checkpoint is resumed and gives the same labels.
    """
    try:
        cfg = config if isinstance(config, ICMConfig) else ICMConfig(**(config or {}))
    except ValidationError as e:
        err = e.errors()[0]
        raise SelfteachError(f"ICM config field {'.'.join(map(str, err['loc']))!r}: {err['msg']} "
                             f"(got {err.get('input')!r})") from None
    rule = make_rule(task, claims)
    s = _Search(claims, backend, rule, cfg)
    n_iter = cfg.iters if cfg.iters is not None else 2 * len(claims)
    usage = backend.usage
    start_calls, start_tokens = usage.calls, usage.prompt_tokens
    fp = _fingerprint(claims, task, cfg)
    ck = _load_checkpoint(run, fp)
    t_start = time.time()
    # stages after the search (final context, baselines) are redone by a resumed run:
    # not counted twice
    cost: dict[str, dict[str, float]] = {k: v for k, v in (ck.get("cost", {}) if ck else {}).items()
                                         if k in ("zero_shot", "search")}

    def spent(stage: str, calls0: int, tokens0: int, t0: float) -> None:
        c = cost.setdefault(stage, {"calls": 0, "prompt_tokens": 0, "seconds": 0.0})
        c["calls"] += usage.calls - calls0
        c["prompt_tokens"] += usage.prompt_tokens - tokens0
        c["seconds"] = round(c["seconds"] + time.time() - t0, 3)

    if ck:
        zs = {int(i): tuple(v) for i, v in ck["zero_shot"].items()}
        s.zs_label = {i: v[0] >= v[1] for i, v in zs.items()}
        labels = {int(i): bool(y) for i, y in ck["labels"].items()}
        u, step, accepted, proposals = (
            float(ck["U"]),
            int(ck["step"]),
            int(ck["accepted"]),
            int(ck["proposals"]),
        )
        _set_rng(s.rng, ck["rng"])
        s.scorer.load_state(ck["scorer"])
        labels = s.retally(labels, ck.get("psum"))
        trajectory = ck.get("trajectory", [])
        best = (
            ({int(i): bool(y) for i, y in ck["best"][0].items()}, float(ck["best"][1]))
            if ck.get("best")
            else (dict(labels), u)
        )
        if trajectory:  # the trajectory's call/token counts continue where the checkpoint left them
            start_calls = usage.calls - int(trajectory[-1]["calls"])
            start_tokens = usage.prompt_tokens - int(trajectory[-1]["prompt_tokens"])
    else:
        c0, k0, t0 = usage.calls, usage.prompt_tokens, time.time()
        zs = s.scorer.zero_shot()
        s.zs_label = {i: v[0] >= v[1] for i, v in zs.items()}
        spent("zero_shot", c0, k0, t0)
        c0, k0, t0 = usage.calls, usage.prompt_tokens, time.time()
        labels = s.init_labels(zs)
        s.scorer.refresh(labels)
        labels = s.retally(labels)
        labels, u = s.consistency_fix(labels, s.U(labels))
        step, accepted, proposals, trajectory = 0, 0, 0, []
        best = (dict(labels), u)  # U here is fresh: the scorer was just refreshed
        spent("search", c0, k0, t0)

    metrics_offset = _restore_metrics(run, ck, trajectory)
    every = cfg.checkpoint_every or (max(1, len(claims) // 20) if s.bounded else 1)

    def save(done: bool = False) -> None:
        if run is None:
            return
        # compact JSON (the C encoder; indent=2 takes the pure-Python one,
        # ~10x slower on 10k claims)
        run.write_text(
            CHECKPOINT,
            json.dumps(
                {
                    "psum": labels.tally.psum if s.bounded else None,  # type: ignore[attr-defined]
                    "fingerprint": fp,
                    "step": step,
                    "U": u,
                    "accepted": accepted,
                    "proposals": proposals,
                    "done": done,
                    "metrics_offset": metrics_offset,
                    "labels": {str(i): y for i, y in labels.items()},
                    "rng": _rng_state(s.rng),
                    "scorer": s.scorer.state(),
                    "cost": cost,
                    "trajectory": trajectory,
                    "zero_shot": {str(i): list(v) for i, v in zs.items()},
                    "best": [{str(i): y for i, y in best[0].items()}, best[1]],
                },
                separators=(",", ":"),
                default=str,
            ),
        )

    if not ck and every > 1:
        save()  # the start (zero-shot and init are the costly part of a large run's first interval)
    bar = _progress(progress, n_iter, step)
    try:
        while step < n_iter:
            c0, k0, t0 = usage.calls, usage.prompt_tokens, time.time()
            n = step + 1
            t = temperature(n, cfg, accepted)
            i = s.sample(labels)
            lp = s.scorer.predict(i, labels)
            y = lp[0] >= lp[1]
            ok = False
            if labels.get(i) != y:  # the same label again changes nothing: no need to score it
                proposals += 1
                # a copy: a rejected proposal must not touch the current state
                prop = s.change(labels, {i: y})
                prop, u_new = s.consistency_fix(prop, s.U(prop))
                delta = u_new - u
                ok = delta > 0 or s.rng.random() < acceptance_probability(delta, t)
                if ok:
                    labels, u = prop, u_new
                    accepted += 1
            refreshed = s.scorer.after_step(n, labels, s.moved(labels))
            if refreshed:
                labels = s.retally(labels)
                u = s.U(labels)
            if (refreshed or s.scorer.name == "exact") and u > best[1]:  # a U from fresh scores
                best = (dict(labels), u)
            step = n
            spent("search", c0, k0, t0)
            row = _trajectory_row(
                step,
                t,
                u,
                len(labels),
                s.summary(labels),
                cfg,
                ok,
                accepted,
                proposals,
                usage,
                start_calls,
                start_tokens,
            )
            trajectory.append(row)
            if step % every == 0 or step == n_iter:
                save()
            if run is not None:
                run.log_metrics({"stage": "icm", **row})
            if bar is not None:
                bar[0].update(
                    bar[1], advance=1, description=f"ICM U={u:.1f} I={row['I']} n={len(labels)}"
                )
    finally:
        if bar is not None:
            bar[0].stop()

    if cfg.keep_best:
        s.scorer.refresh(labels)
        labels = s.retally(labels)
        u = s.U(labels)
        if best[1] > u:
            labels, u = dict(best[0]), best[1]
    # final context: margins for every claim; claims never reached get the argmax label
    c0, k0, t0 = usage.calls, usage.prompt_tokens, time.time()
    final = s.scorer.score_all(labels)
    spent("final", c0, k0, t0)
    reached = len(labels)
    out_labels = {i: labels.get(i, final[i][0] >= final[i][1]) for i in range(len(claims))}
    result = _report(
        claims,
        rule,
        cfg,
        s,
        out_labels,
        labels,
        final,
        zs,
        u,
        trajectory,
        cost,
        reached,
        accepted,
        proposals,
        step,
        time.time() - t_start,
    )
    if cfg.baselines:
        result.baselines = _baselines(claims, s, zs, cost)
        result.metrics["baselines"] = {k: v.get("accuracy") for k, v in result.baselines.items()}
    _write_outputs(run, result, claims)
    save(done=True)
    return result


def _trajectory_row(
    step,
    t,
    u,
    n_labeled: int,
    summary: tuple[int, int, int],
    cfg,
    ok,
    accepted,
    proposals,
    usage,
    c0,
    k0,
) -> dict[str, Any]:
    i_count, n_true, n_agree = summary
    agree = n_agree / max(n_labeled, 1)
    return {
        "step": step,
        "T": round(t, 5),
        "U": round(u, 4),
        "P": round((u + i_count) / cfg.alpha, 4),
        "I": i_count,
        "accepted": ok,
        "acceptance": round(accepted / max(proposals, 1), 4),
        "labeled": n_labeled,
        "balance": round(n_true / max(n_labeled, 1), 4),
        "agree_zero_shot": round(agree, 4),
        "calls": usage.calls - c0,
        "prompt_tokens": usage.prompt_tokens - k0,
    }


def _progress(progress: bool, total: int, done: int):
    if not progress or total == 0:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=False,
    )
    task = bar.add_task("ICM", total=total, completed=done)
    bar.start()
    return bar, task


def accuracy(labels: dict[int, bool], claims: list[Claim]) -> float | None:
    gold = [(labels[i], c.gold) for i, c in enumerate(claims) if c.gold is not None and i in labels]
    return None if not gold else sum(a == b for a, b in gold) / len(gold)


def auroc(margins: dict[int, float], claims: list[Claim]) -> float | None:
    """Probability that a gold-True claim has a higher margin than a gold-False one
    (`selfteach.stats.auroc` over the claims with gold and a margin); None without both."""
    from selfteach.stats import auroc as _auroc

    known = [
        (margins[i], c.gold) for i, c in enumerate(claims) if c.gold is not None and i in margins
    ]
    value = _auroc([m for m, _ in known], [g for _, g in known])
    return None if math.isnan(value) else value


def _report(
    claims,
    rule,
    cfg,
    s,
    out_labels,
    searched,
    final: dict[int, LP],
    zs: dict[int, LP],
    u,
    trajectory,
    cost,
    reached,
    accepted,
    proposals,
    steps,
    seconds,
) -> ICMResult:
    margins = {i: final[i][0] - final[i][1] for i in range(len(claims))}
    zs_labels = {i: v[0] >= v[1] for i, v in zs.items()}
    n = len(claims)
    i_count = rule.count(out_labels)
    p_final = sum(logp(final[i], y) for i, y in out_labels.items())
    balance = sum(out_labels.values()) / n
    agree = sum(out_labels[i] == zs_labels[i] for i in range(n)) / n
    # the cost of ICM itself: search + final context (zero-shot and baselines are reported apart)
    calls = sum(cost.get(k, {}).get("calls", 0) for k in ("search", "final"))
    tokens = sum(cost.get(k, {}).get("prompt_tokens", 0) for k in ("search", "final"))
    metrics: dict[str, Any] = {
        "task": rule.name,
        "scoring": cfg.scoring,
        "claims": n,
        "steps": steps,
        "proposals": proposals,
        "accepted": accepted,
        "acceptance": round(accepted / proposals, 4) if proposals else None,
        "labeled_by_search": reached,
        "labeled_by_final_argmax": n - reached,
        "U": round(u, 4),
        "P_final_context": round(p_final, 4),
        "I": i_count,
        "balance": round(balance, 4),
        "agree_zero_shot": round(agree, 4),
        "accuracy": accuracy(out_labels, claims),
        "zero_shot_accuracy": accuracy(zs_labels, claims),
        "auroc": auroc(margins, claims),
        "zero_shot_auroc": auroc({i: v[0] - v[1] for i, v in zs.items()}, claims),
        "model_calls": calls,
        "prompt_tokens": tokens,
        "calls_per_claim": round(calls / n, 3),
        "tokens_per_claim": round(tokens / n, 1),
        "cost": cost,
        "seconds": round(seconds, 2),
    }
    if cfg.context_claims is not None:
        metrics["context_claims"] = cfg.context_claims
    warnings = []
    if balance in (0.0, 1.0):
        warnings.append(f"degenerate labeling: every claim is {out_labels[0]}")
    elif balance < 0.1 or balance > 0.9:
        warnings.append(f"strong imbalance: {balance:.0%} of claims labeled True")
    if metrics["accuracy"] is not None and metrics["zero_shot_accuracy"] is not None:
        if metrics["accuracy"] <= metrics["zero_shot_accuracy"]:
            warnings.append(
                f"no gain over zero-shot ({metrics['accuracy']:.3f} "
                f"vs {metrics['zero_shot_accuracy']:.3f})"
            )
    elif agree > 0.95:
        warnings.append(
            f"labels agree with zero-shot on {agree:.0%} of claims: ICM may have added nothing"
        )
    if i_count:
        warnings.append(f"{i_count} consistency violations remain")
    metrics["warnings"] = warnings
    ids = [c.id for c in claims]
    return ICMResult(labels={ids[i]: y for i, y in out_labels.items()},
                     margins={ids[i]: round(m, 5) for i, m in margins.items()}, metrics=metrics,
                     trajectory=trajectory)


def _baseline_row(labels: dict[int, bool], scores: dict[int, float], claims: list[Claim],
                  rule: Rule | None = None) -> dict[str, Any]:
    """Accuracy, AUROC and share True of one baseline, plus its per-claim labels and scores
    (claim order) so that intervals can be computed after the run (benchmarks/icm_families.py)."""
    row: dict[str, Any] = {"accuracy": accuracy(labels, claims), "auroc": auroc(scores, claims),
                           "balance": sum(labels.values()) / len(claims)}
    if rule is not None:
        row["I"] = rule.count(labels)
    row["labels"] = [bool(labels[i]) for i in range(len(claims))]
    row["scores"] = [round(float(scores[i]), 5) for i in range(len(claims))]
    return row


def _baselines(claims, s: _Search, zs: dict[int, LP], cost) -> dict[str, Any]:
    """Floor and ceiling in the same scorer: zero-shot, zero-shot + rule (where the task has
    a rule), random-label many-shot, gold many-shot (and gold + rule)."""
    out: dict[str, Any] = {}
    zm = {i: v[0] - v[1] for i, v in zs.items()}
    out["zero_shot"] = _baseline_row({i: m >= 0 for i, m in zm.items()}, zm, claims)
    if s.rule.relates():  # the same rule on the zero-shot margins: label-free, no extra model call
        out["zero_shot_rule"] = _baseline_row(*s.rule.zero_shot_rule(zm), claims, s.rule)
    usage = s.backend.usage
    rng = random.Random(f"icm-random-baseline-{s.cfg.seed}")
    ys = [True] * (len(claims) // 2) + [False] * (len(claims) - len(claims) // 2)
    rng.shuffle(ys)
    contexts = {"random_fewshot": dict(enumerate(ys))}
    if any(c.gold is not None for c in claims):
        contexts["golden"] = {i: c.gold for i, c in enumerate(claims) if c.gold is not None}
    for name, ctx in contexts.items():
        c0, k0, t0 = usage.calls, usage.prompt_tokens, time.time()
        scores = s.scorer.score_all(ctx)
        c = cost.setdefault(f"baseline_{name}", {"calls": 0, "prompt_tokens": 0, "seconds": 0.0})
        c["calls"] += usage.calls - c0
        c["prompt_tokens"] += usage.prompt_tokens - k0
        c["seconds"] = round(time.time() - t0, 3)
        m = {i: v[0] - v[1] for i, v in scores.items()}
        out[name] = _baseline_row({i: x >= 0 for i, x in m.items()}, m, claims)
        if name == "golden" and s.rule.relates():
            # the ceiling to compare ICM's rule-consistent labels with: the rule on the
            # golden-context margins (threshold 0 alone suffers from the read-out's bias)
            out["golden_rule"] = _baseline_row(*s.rule.zero_shot_rule(m), claims, s.rule)
    return out


def _restore_metrics(run, ck: dict | None, trajectory: list[dict[str, Any]]) -> int:
    """Byte offset in metrics.jsonl where this ICM run's rows begin (rows before it belong to
    the caller, e.g. `improve`). On resume, everything after it is rewritten from the
    checkpoint's trajectory, the authoritative record: a kill between the checkpoint and the
    log line (a gap), after the log line (a duplicate when the step is redone), in the middle
    of a line (torn), or after the final row (a second final row) leaves metrics.jsonl equal
    to an uninterrupted run's. Rows keep their original `time` where one was written."""
    if run is None:
        return 0
    f = run.file("metrics.jsonl")
    data = f.read_bytes() if f.exists() else b""
    if not ck or "metrics_offset" not in ck:
        return len(data)
    off = min(int(ck["metrics_offset"]), len(data))
    times: dict[Any, Any] = {}
    others = []  # rows a caller wrote after ICM finished: kept, after the trajectory
    for line in data[off:].splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a torn line
        if isinstance(row, dict) and row.get("stage") == "icm":
            times.setdefault(row.get("step"), row.get("time"))
        elif not isinstance(row, dict) or row.get("stage") != "icm_final":
            others.append(line.decode("utf-8") + "\n")
    from selfteach.data.jsonl import _dump, atomic_write_text

    now = round(time.time(), 3)
    rows = "".join(
        _dump({"time": times.get(r["step"], now), "stage": "icm", **r}) + "\n" for r in trajectory
    )
    atomic_write_text(f, data[:off].decode("utf-8") + rows + "".join(others))
    return off


def _load_checkpoint(run, fp: str) -> dict | None:
    if run is None:
        return None
    f = run.file(CHECKPOINT)
    if not f.exists():
        return None
    try:
        ck = json.loads(f.read_text())
    except (json.JSONDecodeError, OSError):
        return None
    return ck if ck.get("fingerprint") == fp else None


def _write_outputs(run, result: ICMResult, claims: list[Claim]) -> None:
    if run is None:
        return
    from selfteach.data.jsonl import write_jsonl

    rows = [
        {
            "id": c.id,
            "label": result.labels[c.id],
            "margin": result.margins[c.id],
            "claim": c.claim,
            "group": c.group,
            "gold": c.gold,
        }
        for c in claims
    ]
    write_jsonl(run.file("labels.jsonl"), rows)
    run.write_json("icm_result.json", {"metrics": result.metrics, "baselines": result.baselines})
    run.log_metrics({"stage": "icm_final", **{k: v for k, v in result.metrics.items()
                                              if not isinstance(v, dict | list)}})
