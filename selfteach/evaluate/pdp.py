"""Preference-data prompting (PDP, PDP+): inference-time, no training, no labels.

"Budget-Aware Anytime Reasoning with LLM-Synthesized Preference Data" (arXiv 2601.11038),
docs/methods.md section 5: for a problem, sample several attempts at a token budget, let
the model rank them itself, and put the ranking in context before it solves the problem:

- pdp:  (better, worse) pairs: the best-ranked attempt against the worst, then the second
        against the second-worst, ... (`pdp_pairs` pairs);
- pdp+: the better attempts only (`pdp_pairs` of them).

The final solve then goes through the same anytime protocol as the plain prompt, so the
curves compare like with like. The attempts are extra compute spent before the trace;
`attempt_tokens` in each output row records it (the budgets count only the final trace).

Self-ranking (`pdp_judge`), all from the model itself, never from gold answers:
- pointwise: log P(Yes) - log P(No) for "Is this solution correct?";
- pairwise:  P(A) for "Which solution is better?", both orders averaged (position bias);
- vote:      how many attempts share its final answer (self-consistency), math/choice only.
Gold scores of the attempts are logged afterwards for analysis only (`attempt_scores`).
"""

from __future__ import annotations

import math
from typing import Any, Literal, Protocol

from selfteach.backends.base import Backend, SamplingParams, label_variants
from selfteach.data.records import Problem
from selfteach.errors import SelfteachError
from selfteach.evaluate.forced_answers import build_prompt_ids, force_answers, stop_strings
from selfteach.evaluate.scorers import format_question, get_scorer, predicted

POINTWISE = ("Problem:\n{question}\n\nProposed solution:\n{attempt}\n\n"
             "Is the proposed solution correct? Answer Yes or No.")
PAIRWISE = ("Problem:\n{question}\n\nSolution A:\n{a}\n\nSolution B:\n{b}\n\n"
            "Which solution is better reasoned and more likely correct? Answer A or B.")


class PDPSettings(Protocol):
    """The settings PDP reads: fields of `selfteach.evaluate.anytime.AnytimeConfig`, named
    here rather than imported because `anytime` runs PDP (the dependency goes one way)."""

    method: Literal["plain", "pdp", "pdp+"]
    budgets: list[int]
    prompt_template: str
    system: str | None
    top_p: float
    answer_tokens: int
    answer_stop: list[str] | None
    shared_prefix: bool
    pdp_k: int
    pdp_budget: int | None
    pdp_pairs: int
    pdp_judge: Literal["pointwise", "pairwise", "vote"]
    pdp_temperature: float


def pdp_budget(cfg: PDPSettings) -> int:
    """Token budget of each attempt: `pdp_budget`, or the median budget of the grid."""
    return cfg.pdp_budget or cfg.budgets[(len(cfg.budgets) - 1) // 2]


def check_pdp(cfg: PDPSettings, kinds: list[str]) -> None:
    """Bad PDP settings fail before any generation."""
    need = 2 * cfg.pdp_pairs if cfg.method == "pdp" else cfg.pdp_pairs
    if need > cfg.pdp_k:
        raise SelfteachError(
            f"--pdp-pairs {cfg.pdp_pairs}: {cfg.method} needs {need} attempts but --pdp-k is "
            f"{cfg.pdp_k}"
        )
    if cfg.pdp_judge == "vote" and "trip" in kinds:
        raise SelfteachError(
            "--pdp-judge vote: needs a final answer to vote on; trip plans have none "
            "(use pointwise or pairwise)"
        )


def rank_attempts(backend: Backend, question: str, attempts: list[str], judge: str, kind: str,
                  system: str | None = None) -> list[float]:
    """The model's own score of each attempt (higher is better); see the module docstring."""
    if judge == "vote":
        preds = [predicted(a, kind) for a in attempts]
        return [float(sum(q == p for q in preds)) if p is not None else 0.0 for p in preds]
    if judge == "pointwise":
        prompts = [
            backend.chat_prompt(
                POINTWISE.format(question=question, attempt=a.strip()), system=system
            )
            for a in attempts
        ]
        lps = backend.label_logprobs(prompts, label_variants(["Yes", "No"]))
        return [lp["Yes"] - lp["No"] for lp in lps]
    if judge == "pairwise":
        pairs = [(i, j) for i in range(len(attempts)) for j in range(len(attempts)) if i != j]
        prompts = [
            backend.chat_prompt(
                PAIRWISE.format(question=question, a=attempts[i].strip(), b=attempts[j].strip()),
                system=system,
            )
            for i, j in pairs
        ]
        lps = backend.label_logprobs(prompts, label_variants(["A", "B"]))
        wins = [0.0] * len(attempts)
        for (i, j), lp in zip(pairs, lps, strict=True):
            p_a = 1.0 / (1.0 + math.exp(lp["B"] - lp["A"]))  # P(A) renormalised over {A, B}
            wins[i] += p_a
            wins[j] += 1.0 - p_a
        return wins
    raise SelfteachError(f"--pdp-judge {judge!r}: choose pointwise, pairwise or vote")


def pdp_block(
    attempts: list[str], order: list[int], method: str, pairs: int
) -> tuple[str, list[int]]:
    """The in-context examples and the attempt indices shown (better first within a pair)."""
    if method == "pdp":
        shown = [(order[i], order[-1 - i]) for i in range(pairs)]
        parts = [
            "Here are earlier attempts at this problem, with a reviewer's preference between them."
        ]
        for n, (good, bad) in enumerate(shown, 1):
            parts.append(f"Example {n}\nBetter attempt:\n{attempts[good].strip()}\n\n"
                         f"Worse attempt:\n{attempts[bad].strip()}")
        parts.append("Follow the better attempts and avoid the mistakes of the worse ones.")
        return "\n\n".join(parts), [x for pair in shown for x in pair]
    if method == "pdp+":
        shown1 = order[:pairs]
        parts = ["Here are good earlier attempts at this problem."]
        parts += [f"Good attempt {n}:\n{attempts[i].strip()}" for n, i in enumerate(shown1, 1)]
        parts.append("Use them as a guide.")
        return "\n\n".join(parts), shown1
    raise SelfteachError(f"--method {method!r}: choose plain, pdp or pdp+")


def pdp_prompts(
    backend: Backend,
    problems: list[Problem],
    kinds: list[str],
    cfg: PDPSettings,
    suffix: str,
    seed: int,
) -> tuple[list[list[int]], list[dict[str, Any]]]:
    """Prompt ids with self-ranked attempts in context, and per-item details for the log."""
    budget = pdp_budget(cfg)
    questions = [format_question(p) for p in problems]
    base = [build_prompt_ids(backend, q, cfg.prompt_template, cfg.system) for q in questions]
    att = backend.generate(
        base,
        SamplingParams(
            n=cfg.pdp_k,
            max_new_tokens=budget,
            temperature=cfg.pdp_temperature,
            top_p=cfg.top_p,
            seed=seed + 7919,
        ),
    )
    flat_prompts = [base[i] for i, ts in enumerate(att) for _ in ts]
    flat = [t for ts in att for t in ts]
    answers = force_answers(
        backend,
        flat_prompts,
        flat,
        [budget],
        backend.tokenize(suffix),
        SamplingParams(
            max_new_tokens=cfg.answer_tokens, stop=stop_strings(cfg.answer_stop, kinds), seed=seed
        ),
        cfg.shared_prefix,
    )
    texts = [
        t.text + (suffix + a[0].text if a[0] is not None else "")
        for t, a in zip(flat, answers, strict=True)
    ]
    prompts, infos = [], []
    for n, (p, kind, q) in enumerate(zip(problems, kinds, questions, strict=True)):
        attempts = texts[n * cfg.pdp_k : (n + 1) * cfg.pdp_k]
        scores = rank_attempts(backend, q, attempts, cfg.pdp_judge, kind, cfg.system)
        # stable: ties keep sample order
        order = sorted(range(len(attempts)), key=lambda i: -scores[i])
        block, shown = pdp_block(attempts, order, cfg.method, cfg.pdp_pairs)
        prompts.append(
            build_prompt_ids(backend, f"{q}\n\n{block}", cfg.prompt_template, cfg.system)
        )
        gold = get_scorer(kind)
        infos.append(
            {
                "attempts": attempts,
                "judge_scores": scores,
                "order": order,
                "shown": shown,
                "attempt_tokens": sum(
                    t.num_tokens for t in flat[n * cfg.pdp_k : (n + 1) * cfg.pdp_k]
                ),
                # analysis only, after ranking
                "attempt_scores": [gold(a, p) for a in attempts],
            }
        )
    return prompts, infos
