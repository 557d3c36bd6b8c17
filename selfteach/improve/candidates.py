"""Diverse candidate solutions sampled from the model itself (ICM+DPO pipeline, step 1).

methods.md section 2: sample several solutions per problem over a spread of temperatures
so that both right and wrong solutions appear. Only model samples are used: a public
version of this pipeline mixed in the gold solution and hand-made wrong ones, which is
supervision in disguise. Gold answers, when present, are attached to each candidate as
`correct` for reporting only; nothing downstream of ICM reads them for training.

A candidate row (candidates.jsonl, one per sample):
    {"id": "<problem id>#<j>", "problem_id", "prompt", "text", "answer", "temperature",
     "finish_reason", "tokens", "correct" (bool or null)}
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from selfteach.backends.base import Backend, Generation, SamplingParams
from selfteach.data.answers import answers_match, extract_answer
from selfteach.data.records import Candidate, Problem
from selfteach.errors import SelfteachError
from selfteach.runner import Batch, Outputs, run_items
from selfteach.runs import RunDir


def split_samples(n: int, temperatures: Sequence[float]) -> list[tuple[float, int]]:
    """Spread n samples over the temperatures as evenly as possible: (temperature, count)."""
    if not temperatures:
        raise SelfteachError("--temperatures: give at least one temperature")
    if n < 1:
        raise SelfteachError(f"--samples {n}: must be >= 1")
    k = len(temperatures)
    counts = [n // k + (1 if i < n % k else 0) for i in range(k)]
    return [(float(t), c) for t, c in zip(temperatures, counts, strict=True) if c > 0]


def generate_candidates(
    backend: Backend,
    problems: list[Problem],
    n: int = 8,
    temperatures: Sequence[float] = (0.3, 0.6, 0.9),
    max_new_tokens: int = 128,
    seed: int = 0,
    batch_size: int = 8,
    run: RunDir | None = None,
    file: str = "candidates.jsonl",
    progress: bool = True,
) -> list[dict]:
    """n samples per problem from `backend`, split over `temperatures`. With `run`, rows are
    appended to `file` per problem batch and problems already there are skipped (resume)."""
    from selfteach.evaluate.prompts import solve_prompt

    plan = split_samples(n, temperatures)

    def sample(batch: Batch[Problem]) -> list[list[Candidate]]:
        prompts = [solve_prompt(backend, p) for p in batch.items]
        per_problem: list[list[Candidate]] = [[] for _ in batch.items]
        for ti, (temp, count) in enumerate(plan):
            params = SamplingParams(n=count, temperature=temp, max_new_tokens=max_new_tokens,
                                    seed=batch.seed(f"t{ti}"))
            outs = backend.generate(prompts, params)
            for p, prompt, cands, gens in zip(batch.items, prompts, per_problem, outs, strict=True):
                cands.extend([_candidate(p, prompt, len(cands) + j, temp, g)
                              for j, g in enumerate(gens)])
        return per_problem

    # a problem counts as done only with all n samples (an interruption can tear a batch)
    outputs = Outputs(file, Candidate, key="problem_id", per_item=n)
    rows = run_items(problems, sample, outputs, seed=seed, batch_size=batch_size, run=run,
                     label="candidates", progress=progress, crash="candidates")
    return [r.to_row() for r in rows]


def _candidate(p: Problem, prompt: str, j: int, temperature: float, g: Generation) -> Candidate:
    ans = extract_answer(g.text)
    return Candidate(id=f"{p.id}#{j}", problem_id=p.id, prompt=prompt, text=g.text, answer=ans,
                     temperature=temperature, finish_reason=g.finish_reason, tokens=g.num_tokens,
                     correct=None if p.answer is None else answers_match(ans, p.answer))


def diversity_stats(candidates: list[dict]) -> dict:
    """How diverse the candidates are, and (when gold exists) how often a problem has both a
    right and a wrong candidate: the problems ICM+DPO can learn anything from."""
    by_problem: dict[str, list[dict]] = defaultdict(list)
    for c in candidates:
        by_problem[c["problem_id"]].append(c)
    if not by_problem:
        return {"problems": 0, "candidates": 0}
    distinct = [
        len({c["answer"] for c in cs if c["answer"] is not None}) for cs in by_problem.values()
    ]
    texts = [len({c["text"].strip() for c in cs}) / len(cs) for cs in by_problem.values()]
    out = {
        "problems": len(by_problem),
        "candidates": len(candidates),
        "mean_distinct_answers": sum(distinct) / len(distinct),
        "share_problems_multiple_answers": sum(d >= 2 for d in distinct) / len(distinct),
        "share_no_answer": sum(c["answer"] is None for c in candidates) / len(candidates),
        "share_truncated": sum(c["finish_reason"] == "length" for c in candidates)
        / len(candidates),
        "mean_unique_text_ratio": sum(texts) / len(texts),
        "mean_tokens": sum(c["tokens"] for c in candidates) / len(candidates),
        "by_temperature": {
            str(t): n for t, n in sorted(Counter(c["temperature"] for c in candidates).items())
        },
    }
    golded = {pid: cs for pid, cs in by_problem.items() if cs[0]["correct"] is not None}
    if golded:
        out |= {
            "candidate_accuracy": sum(c["correct"] for cs in golded.values() for c in cs)
            / sum(len(cs) for cs in golded.values()),
            "share_problems_any_correct": sum(
                any(c["correct"] for c in cs) for cs in golded.values()
            )
            / len(golded),
            "share_problems_right_and_wrong": sum(
                any(c["correct"] for c in cs) and not all(c["correct"] for c in cs)
                for cs in golded.values()
            )
            / len(golded),
        }
    return out


