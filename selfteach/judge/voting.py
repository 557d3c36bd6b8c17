"""Judging with inference-time scaling: k sampled judgments per item, scores summed
(SPCT, arXiv 2504.02495, section 4: "voting with generated rewards").

Each sample sees the responses in a shuffled order, and its scores are mapped back to the
original order before voting. A response's voted score is the sum of its scores over the
valid samples (range k..10k); the best response is the argmax; a tie at the top is
reported as a tie, and a sample whose scores cannot be parsed is a counted failure that
does not vote. With a meta RM, only the k_meta samples it rates highest vote
(meta-RM-guided voting, same paper, section 4).

Batching: the k samples of an item are drawn in one `generate` call with `n` samples per
prompt (one server request with n=k, or one `num_return_sequences` batch). Orders are
`balanced` by default: m distinct orders, m the largest divisor of k that is <= n!, each
sampled k/m times (for a pair: k/2 samples with each response first, which also cancels a
judge's position bias), interleaved so that any run of m consecutive samples covers every
order. `random` draws a fresh order per sample (the paper's setting) as k prompts with n=1
in the same single call.

In `pointwise` mode each response is judged alone (k samples per response); a response's
score is then the mean over its valid samples, since different responses can have
different numbers of failures (in `multi` mode counts are equal, so mean and sum rank the
same).
"""

from __future__ import annotations

import math
import random
from dataclasses import replace
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from selfteach.backends.base import Backend, ContextLimit, SamplingParams
from selfteach.data.records import JudgeItem, Judgment
from selfteach.judge.parse import close_stopped_box, parse_scores
from selfteach.judge.prompts import JudgePrompt, build_prompt, render
from selfteach.runner import Batch
from selfteach.runs import item_seed
from selfteach.validate import MAX_BATCH, MAX_SAMPLES, MAX_TEMPERATURE, MAX_TOKENS, Seed


class JudgeConfig(BaseModel):
    """How to sample judgments (defaults follow the paper where it gives one)."""

    model_config = ConfigDict(allow_inf_nan=False)

    k: int = Field(8, ge=1, le=MAX_SAMPLES, description="sampled judgments per item (votes)")
    temperature: float = Field(
        0.5, ge=0.0, le=MAX_TEMPERATURE, description="sampling temperature (paper: 0.5)"
    )
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="nucleus sampling mass")
    max_new_tokens: int = Field(384, ge=8, le=MAX_TOKENS, description="cap on a judgment's length")
    mode: Literal["multi", "pointwise"] = Field(
        "multi",
        description="multi: all responses in one prompt; pointwise: each response judged alone",
    )
    orders: Literal["balanced", "random"] = Field(
        "balanced", description="response orders over the k samples (see module docstring)"
    )
    items_per_call: int = Field(
        2, ge=1, le=MAX_BATCH, description="items whose samples share one generate call"
    )
    force_scores: bool = Field(
        False,
        description="when a multi-mode sample has no valid score line, read its "
        "scores from the model's next-token distribution over 1-10 after the judgment and "
        "a score-line prefix (fallback for small judges; not in the paper; marked forced)",
    )
    seed: Seed = Field(0, description="seed of the orders and of sampling")


# ---- orders -----------------------------------------------------------------------------
def sample_orders(n: int, k: int, how: str, rng: random.Random) -> tuple[list[list[int]], int]:
    """(distinct orders, samples per order). Sample j uses order j % len(orders)."""
    if how == "random":
        return [rng.sample(range(n), n) for _ in range(k)], 1
    m = max(d for d in range(1, k + 1) if k % d == 0 and d <= math.factorial(min(n, 10)))
    base = rng.sample(range(n), n)
    # rotations: each response once per position
    orders = [base[r:] + base[:r] for r in range(min(m, n))]
    seen = {tuple(o) for o in orders}
    while len(orders) < m:
        o = rng.sample(range(n), n)
        if tuple(o) not in seen:
            seen.add(tuple(o))
            orders.append(o)
    return orders, k // m


# ---- voting -----------------------------------------------------------------------------
def vote(samples: list[dict], n: int, meta_k: int | None = None) -> dict:
    """Vote over `samples` (each {"scores": list[int|None] in original order, "meta"?}).

    With `meta_k`, only the `meta_k` valid samples with the highest "meta" score vote.
    Returns totals (summed scores), counts (valid votes per response), winners (indices
    at the top), tie, failed (samples without a parse) and voters."""
    valid = [
        s
        for s in samples
        if s.get("scores") is not None and any(x is not None for x in s["scores"])
    ]
    if meta_k is not None:
        valid = sorted(valid, key=lambda s: -s.get("meta", -math.inf))[:meta_k]
    totals, counts = [0] * n, [0] * n
    for s in valid:
        for i, x in enumerate(s["scores"]):
            if x is not None:
                totals[i] += x
                counts[i] += 1
    means = [t / c if c else -math.inf for t, c in zip(totals, counts, strict=True)]
    top = max(means)
    winners = [] if top == -math.inf else [i for i, m in enumerate(means) if m == top]
    return {"totals": totals, "counts": counts, "winners": winners, "tie": len(winners) > 1,
            "failed": len(samples) - len([s for s in samples if s.get("scores") is not None]),
            "voters": len(valid)}


def credit(v: dict, best: int, n: int) -> float:
    """Accuracy credit of a vote: 1 if `best` wins alone, 1/t if it ties with t-1 others,
    0 if another wins, 1/n if no sample voted (RewardBench convention for generative
    judges: tie or failure = 0.5 on a pair)."""
    if not v["winners"]:
        return 1.0 / n
    return 1.0 / len(v["winners"]) if best in v["winners"] else 0.0


# ---- sampling judgments -----------------------------------------------------------------
def _item_seed(seed: int, item_id: str) -> int:
    return item_seed(seed, item_id)


def _fits(backend: Backend, text: str, max_new: int) -> bool:
    limit = backend.max_length if isinstance(backend, ContextLimit) else None
    return limit is None or len(backend.tokenize(text)) + max_new <= limit


def _plan(backend: Backend, item: JudgeItem, cfg: JudgeConfig, prompt: JudgePrompt) -> dict:
    """The prompts of one item: [(text, order)] and samples per prompt."""
    n = len(item.responses)
    rng = random.Random(_item_seed(cfg.seed, item.id))
    if cfg.mode == "pointwise" or n == 1:
        orders, per = [[i] for i in range(n)], cfg.k
    else:
        orders, per = sample_orders(n, cfg.k, cfg.orders, rng)
    texts = [render(backend, item.prompt, [item.responses[i] for i in o], prompt) for o in orders]
    too_long = not all(_fits(backend, t, cfg.max_new_tokens) for t in texts)
    return {"texts": texts, "orders": orders, "per": per, "too_long": too_long}


def _assemble(
    item: JudgeItem, cfg: JudgeConfig, plan: dict, gens: list[list], stop: list[str]
) -> list[dict]:
    """Per-sample records with scores mapped back to the original response order."""
    n, orders, per = len(item.responses), plan["orders"], plan["per"]
    gens = [[replace(g, text=close_stopped_box(g.text, g.finish_reason, stop)) for g in row]
            for row in gens]
    pointwise = cfg.mode == "pointwise" or n == 1
    samples = []
    for j in range(cfg.k):
        if pointwise:  # sample j = the j-th judgment of every response
            outs = [gens[i][j] for i in range(n)]
            parsed = [parse_scores(g.text, 1) for g in outs]
            scores = [p.scores[0] if p.scores is not None else None for p in parsed]
            errors = [p.error for p in parsed]
            samples.append(
                {
                    "texts": [g.text for g in outs],
                    "scores": None if all(s is None for s in scores) else scores,
                    "errors": errors,
                    "tokens": sum(g.num_tokens for g in outs),
                }
            )
            continue
        o, r = j % len(orders), j // len(orders)
        g = gens[o][r]
        p = parse_scores(g.text, n)
        mapped: list[int] | None = None  # the scores in the original response order
        if p.scores is not None:
            mapped = [0] * n
            for pos, orig in enumerate(orders[o]):
                mapped[orig] = p.scores[pos]
        samples.append({"order": orders[o], "text": g.text, "scores": mapped, "error": p.error,
                        "tokens": g.num_tokens, "finish": g.finish_reason})
    assert per * len(orders) >= cfg.k
    return samples


def judge_items(
    backend: Backend,
    items: list[JudgeItem],
    cfg: JudgeConfig,
    prompt: JudgePrompt | None = None,
    meta=None,
) -> list[dict]:
    """k judgments per item, batched, voted. Returns one record per item:
    {id, subset, prompt, responses, best, mode, samples: [...], vote, error}; `meta`, a
    `MetaRM`, adds a "meta" rating to every multi-mode sample. (The judge's run directory,
    with resume, is `selfteach.judge.runner.run_judge`, through the same item runner.)"""
    from selfteach.runner import Outputs, run_items

    recs = run_items(items, lambda batch: judge_batch(backend, batch, cfg, prompt, meta),
                     Outputs("judgments.jsonl", Judgment), seed=cfg.seed,
                     batch_size=cfg.items_per_call, progress=False)
    return [r.to_row() for r in recs]


def judge_batch(backend: Backend, batch: Batch[JudgeItem], cfg: JudgeConfig,
                prompt: JudgePrompt | None = None, meta=None) -> list[Judgment | None]:
    """The k judgments of every item of one batch (`cfg.items_per_call` items sharing
    generate calls), voted. Items in `batch.done` (written before an interruption) get
    None, not a judgment."""
    prompt = prompt or JudgePrompt()
    plans = [_plan(backend, it, cfg, prompt) for it in batch.items]
    gens = _sample(backend, batch, plans, cfg, prompt)
    return [None if item.id in batch.done
            else _judgment(backend, item, pl, gens.get(ii), cfg, prompt, meta)
            for ii, (item, pl) in enumerate(zip(batch.items, plans, strict=True))]


def _sample(backend: Backend, batch: Batch[JudgeItem], plans: list[dict], cfg: JudgeConfig,
            prompt: JudgePrompt) -> dict[int, list]:
    """The generations of every prompt of the batch, by item index: one generate call per
    distinct samples-per-prompt (normally exactly one). A call is seeded by the first item
    it serves (`batch.seed(ids=...)`), as earlier versions did, so judgments repeat theirs."""
    gens: dict[int, list] = {}
    by_per: dict[int, list[tuple[int, int]]] = {}
    for ii, pl in enumerate(plans):
        if not pl["too_long"]:
            for oi in range(len(pl["texts"])):
                by_per.setdefault(pl["per"], []).append((ii, oi))
    for per, slots in by_per.items():
        params = SamplingParams(
            n=per,
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            seed=batch.seed(ids=[batch.ids[slots[0][0]]]),
            stop=prompt.stop,
        )
        out = backend.generate([plans[ii]["texts"][oi] for ii, oi in slots], params)
        for (ii, oi), g in zip(slots, out, strict=True):
            gens.setdefault(ii, [None] * len(plans[ii]["texts"]))[oi] = g
    return gens


def _judgment(backend: Backend, item: JudgeItem, pl: dict, gens: list | None, cfg: JudgeConfig,
              prompt: JudgePrompt, meta) -> Judgment:
    """One item's samples (forced and meta-rated when asked) and their vote."""
    if pl["too_long"]:
        samples = [{"order": None, "text": "", "scores": None, "error": "too_long", "tokens": 0}
                   for _ in range(cfg.k)]
    else:
        samples = _assemble(item, cfg, pl, gens or [], prompt.stop)
    if cfg.force_scores and cfg.mode == "multi" and not pl["too_long"]:
        _force(backend, item, samples, prompt)
    if meta is not None and cfg.mode == "multi" and not pl["too_long"]:
        for s, m in zip(samples, meta.score([meta_text(item, s) for s in samples]), strict=True):
            s["meta"] = m
    return Judgment(id=item.id, subset=item.subset, prompt=item.prompt, responses=item.responses,
                    best=item.best, mode=cfg.mode, samples=samples,
                    vote=vote(samples, len(item.responses)),
                    error="too_long" if pl["too_long"] else None)


FORCE_PREFIX = "\nScores: \\boxed{"


def read_scores(
    backend: Backend, prefixes: list[str], n: int, lo: int = 1, hi: int = 10
) -> list[list[int]]:
    """Constrained greedy read-out of n scores after each prefix (which ends in
    `\\boxed{`): score by score, the most likely integer in [lo, hi] under the model's
    next-token distribution, then ", " and the next one."""
    labels = {str(v): [str(v)] for v in range(lo, hi + 1)}
    chosen: list[list[int]] = [[] for _ in prefixes]
    cur = list(prefixes)
    for pos in range(n):
        for i, lp in enumerate(backend.label_logprobs(cur, labels)):
            best = max(lp, key=lp.__getitem__)
            chosen[i].append(int(best))
            cur[i] += best + (", " if pos < n - 1 else "")
    return chosen


def _force(backend: Backend, item: JudgeItem, samples: list[dict],
           prompt: JudgePrompt | None = None) -> None:
    """Read the scores of failed multi-mode samples from the judge's own next-token
    distribution after its judgment + "Scores: \\boxed{" (see `JudgeConfig.force_scores`).
    The original failure reason is kept as `raw_error`; applying it twice is a no-op."""
    responses = item.responses
    failed = [
        s
        for s in samples
        if s.get("scores") is None and s.get("order") and s.get("error") != "too_long"
    ]
    if not failed:
        return
    prefixes = []
    for s in failed:
        text = s["text"]
        if s.get("forced"):  # a previous forced line is replaced
            text = text[: text.rfind(FORCE_PREFIX)]
        s["text"] = text.rstrip()
        shown = render(backend, item.prompt, [responses[i] for i in s["order"]], prompt)
        prefixes.append(shown + s["text"] + FORCE_PREFIX)
    for s, read in zip(failed, read_scores(backend, prefixes, len(responses)), strict=True):
        scores = [0] * len(responses)
        for pos, orig in enumerate(s["order"]):
            scores[orig] = read[pos]
        s.update(text=s["text"] + FORCE_PREFIX + ", ".join(map(str, read)) + "}", scores=scores,
                 raw_error=s.get("raw_error") or s.get("error"), error=None, forced=True)


def meta_text(item: JudgeItem, sample: dict, prompt: JudgePrompt | None = None) -> str:
    """What the meta RM reads: the judge's query (responses in the sample's order) and the
    judgment (principles + critiques + scores)."""
    order = sample.get("order") or list(range(len(item.responses)))
    shown = build_prompt(item.prompt, [item.responses[i] for i in order], prompt)
    return f"{shown}\n\n[Judgment]\n{sample.get('text', '')}"


# ---- accuracy over several k ------------------------------------------------------------
def accuracy_at_k(record: dict, k: int, meta_k: int | None = None) -> float | None:
    """Mean credit over the disjoint runs of k consecutive samples of one item record
    (K samples give K//k votes@k, a lower-variance estimate than a single one). None when
    the record has fewer than k samples."""
    samples, n, best = record["samples"], len(record["responses"]), record["best"]
    runs = len(samples) // k
    if runs == 0:
        return None
    vals = []
    for r in range(runs):
        chunk = samples[r * k : (r + 1) * k]
        vals.append(credit(vote(chunk, n, meta_k=meta_k), best, n))
    return sum(vals) / len(vals)
