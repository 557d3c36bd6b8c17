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
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from selfteach.backends.base import Backend, SamplingParams
from selfteach.data.records import JudgeItem
from selfteach.judge.parse import close_stopped_box, parse_scores
from selfteach.judge.prompts import JudgePrompt, build_prompt, render
from selfteach.runs import item_seed
from selfteach.validate import MAX_BATCH, MAX_SAMPLES, MAX_TEMPERATURE, MAX_TOKENS, Seed


class JudgeConfig(BaseModel):
    """How to sample judgments (defaults follow the paper where it gives one)."""

    model_config = ConfigDict(allow_inf_nan=False)

    k: int = Field(8, ge=1, le=MAX_SAMPLES, description="sampled judgments per item (votes)")
    temperature: float = Field(0.5, ge=0.0, le=MAX_TEMPERATURE, description="sampling temperature (paper: 0.5)")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="nucleus sampling mass")
    max_new_tokens: int = Field(384, ge=8, le=MAX_TOKENS, description="cap on a judgment's length")
    mode: Literal["multi", "pointwise"] = Field("multi", description="multi: all responses in one prompt; "
                                                "pointwise: each response judged alone")
    orders: Literal["balanced", "random"] = Field("balanced", description="response orders over the k samples "
                                                  "(see module docstring)")
    items_per_call: int = Field(2, ge=1, le=MAX_BATCH, description="items whose samples share one generate call")
    force_scores: bool = Field(False, description="when a multi-mode sample has no valid score line, read its "
                               "scores from the model's next-token distribution over 1-10 after the judgment and "
                               "a score-line prefix (fallback for small judges; not in the paper; marked forced)")
    seed: Seed = Field(0, description="seed of the orders and of sampling")


# ---- orders -----------------------------------------------------------------------------
def sample_orders(n: int, k: int, how: str, rng: random.Random) -> tuple[list[list[int]], int]:
    """(distinct orders, samples per order). Sample j uses order j % len(orders)."""
    if how == "random":
        return [rng.sample(range(n), n) for _ in range(k)], 1
    m = max(d for d in range(1, k + 1) if k % d == 0 and d <= math.factorial(min(n, 10)))
    base = rng.sample(range(n), n)
    orders = [base[r:] + base[:r] for r in range(min(m, n))]  # rotations: each response once per position
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
    valid = [s for s in samples if s.get("scores") is not None and any(x is not None for x in s["scores"])]
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


def _chunks(xs: list, size: int) -> Iterator[list]:
    for i in range(0, len(xs), size):
        yield xs[i : i + size]


def _fits(backend: Backend, text: str, max_new: int) -> bool:
    limit = getattr(backend, "max_length", None)
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


def _assemble(item: JudgeItem, cfg: JudgeConfig, plan: dict, gens: list[list], stop: list[str]) -> list[dict]:
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
            scores = [p.scores[0] if p.ok else None for p in parsed]
            errors = [p.error for p in parsed]
            samples.append({"texts": [g.text for g in outs], "scores": None if all(s is None for s in scores)
                            else scores, "errors": errors, "tokens": sum(g.num_tokens for g in outs)})
            continue
        o, r = j % len(orders), j // len(orders)
        g = gens[o][r]
        p = parse_scores(g.text, n)
        scores = None
        if p.ok:
            scores = [0] * n
            for pos, orig in enumerate(orders[o]):
                scores[orig] = p.scores[pos]
        samples.append({"order": orders[o], "text": g.text, "scores": scores, "error": p.error,
                        "tokens": g.num_tokens, "finish": g.finish_reason})
    assert per * len(orders) >= cfg.k
    return samples


def judge_items(backend: Backend, items: list[JudgeItem], cfg: JudgeConfig, prompt: JudgePrompt | None = None,
                on_item: Callable[[dict], None] | None = None, advance: Callable[[int], None] | None = None,
                meta=None, done: set[str] | frozenset[str] = frozenset()) -> list[dict]:
    """k judgments per item, batched, voted. Returns one record per item:
    {id, subset, prompt, responses, best, mode, samples: [...], vote, error}. `on_item` is
    called with each finished record (the CLI appends it to the run directory);
    `meta`, a `MetaRM`, adds a "meta" rating to every multi-mode sample. Items whose ids
    are in `done` (written before an interruption) get no record; chunks keep their
    positions in `items`, so a resumed run samples every other item as an uninterrupted one."""
    prompt = prompt or JudgePrompt()
    results = []
    for chunk in _chunks(items, cfg.items_per_call):
        if all(it.id in done for it in chunk):
            continue
        plans = [_plan(backend, it, cfg, prompt) for it in chunk]
        # one generate call per distinct samples-per-prompt (normally exactly one)
        gens: dict[int, list] = {}
        by_per: dict[int, list[tuple[int, int]]] = {}
        for ii, pl in enumerate(plans):
            if not pl["too_long"]:
                for oi in range(len(pl["texts"])):
                    by_per.setdefault(pl["per"], []).append((ii, oi))
        for per, slots in by_per.items():
            params = SamplingParams(n=per, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                    top_p=cfg.top_p, seed=_item_seed(cfg.seed, chunk[slots[0][0]].id),
                                    stop=prompt.stop)
            out = backend.generate([plans[ii]["texts"][oi] for ii, oi in slots], params)
            for (ii, oi), g in zip(slots, out, strict=True):
                gens.setdefault(ii, [None] * len(plans[ii]["texts"]))[oi] = g
        for ii, (item, pl) in enumerate(zip(chunk, plans, strict=True)):
            if item.id in done:
                continue
            n = len(item.responses)
            if pl["too_long"]:
                samples = [{"order": None, "text": "", "scores": None, "error": "too_long", "tokens": 0}
                           for _ in range(cfg.k)]
            else:
                samples = _assemble(item, cfg, pl, gens[ii], prompt.stop)
            if cfg.force_scores and cfg.mode == "multi" and not pl["too_long"]:
                _force(backend, item, samples, prompt)
            if meta is not None and cfg.mode == "multi" and not pl["too_long"]:
                ratings = meta.score([meta_text(item, s) for s in samples])
                for s, m in zip(samples, ratings, strict=True):
                    s["meta"] = m
            rec = {"id": item.id, "subset": item.subset, "prompt": item.prompt, "responses": item.responses,
                   "best": item.best, "mode": cfg.mode, "samples": samples, "vote": vote(samples, n),
                   "error": "too_long" if pl["too_long"] else None}
            results.append(rec)
            if on_item:
                on_item(rec)
            if advance:
                advance(1)
    return results


FORCE_PREFIX = "\nScores: \\boxed{"


def read_scores(backend: Backend, prefixes: list[str], n: int, lo: int = 1, hi: int = 10) -> list[list[int]]:
    """Constrained greedy read-out of n scores after each prefix (which ends in
    `\\boxed{`): score by score, the most likely integer in [lo, hi] under the model's
    next-token distribution, then ", " and the next one."""
    labels = {str(v): [str(v)] for v in range(lo, hi + 1)}
    chosen: list[list[int]] = [[] for _ in prefixes]
    cur = list(prefixes)
    for pos in range(n):
        for i, lp in enumerate(backend.label_logprobs(cur, labels)):
            best = max(lp, key=lp.get)
            chosen[i].append(int(best))
            cur[i] += best + (", " if pos < n - 1 else "")
    return chosen


def _force(backend: Backend, item: JudgeItem | dict, samples: list[dict], prompt: JudgePrompt | None = None) -> None:
    """Read the scores of failed multi-mode samples from the judge's own next-token
    distribution after its judgment + "Scores: \\boxed{" (see `JudgeConfig.force_scores`).
    The original failure reason is kept as `raw_error`; applying it twice is a no-op."""
    get = (lambda f: item[f]) if isinstance(item, dict) else (lambda f: getattr(item, f))
    responses = get("responses")
    failed = [s for s in samples if s.get("scores") is None and s.get("order") and s.get("error") != "too_long"]
    if not failed:
        return
    prefixes = []
    for s in failed:
        text = s["text"]
        if s.get("forced"):  # a previous forced line is replaced
            text = text[: text.rfind(FORCE_PREFIX)]
        s["text"] = text.rstrip()
        prefixes.append(render(backend, get("prompt"), [responses[i] for i in s["order"]], prompt) + s["text"]
                        + FORCE_PREFIX)
    for s, shown in zip(failed, read_scores(backend, prefixes, len(responses)), strict=True):
        scores = [0] * len(responses)
        for pos, orig in enumerate(s["order"]):
            scores[orig] = shown[pos]
        s.update(text=s["text"] + FORCE_PREFIX + ", ".join(map(str, shown)) + "}", scores=scores,
                 raw_error=s.get("raw_error") or s.get("error"), error=None, forced=True)


def meta_text(item: JudgeItem | dict, sample: dict, prompt: JudgePrompt | None = None) -> str:
    """What the meta RM reads: the judge's query (responses in the sample's order) and the
    judgment (principles + critiques + scores)."""
    get = (lambda f: item[f]) if isinstance(item, dict) else (lambda f: getattr(item, f))
    order = sample.get("order") or list(range(len(get("responses"))))
    shown = build_prompt(get("prompt"), [get("responses")[i] for i in order], prompt)
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
