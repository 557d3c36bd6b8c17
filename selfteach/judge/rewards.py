"""Reward functions in TRL's signature `(prompts, completions, **kwargs) -> list[float]`.

- `judge_rule_reward()`: trains the judge itself (SPCT rule-based online RL, arXiv
  2504.02495, section 3.2): +1 if the completion's `\\boxed{...}` scores rank the known
  best response strictly first, else -1 (unparsable included; the paper uses a KL penalty
  rather than a format reward). Needs dataset columns `judge_best` (index of the best
  response *as shown*) and `judge_n` (see `selfteach.judge.rft.grpo_rows`).
- `judge_reward(model)`: scores a policy's completions with a generative judge in
  pointwise mode (k samples, mean score of the valid ones, mapped to [0, 1]); all
  completions of a step are judged in one batched call. With `asynchronous=True` it is an
  `async` function that TRL runs on its event loop (the model call runs in a worker thread).

`selfteach train grpo --reward judge-rule | judge:MODEL` imports these lazily.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from selfteach.backends.base import Backend
from selfteach.data.records import JudgeItem
from selfteach.errors import SelfteachError
from selfteach.judge.parse import parse_scores, ranks_best_first


def _text(x) -> str:
    """A completion/prompt as text: a string, or the last message of a conversation."""
    if isinstance(x, str):
        return x
    if isinstance(x, list) and x and isinstance(x[-1], dict):
        return str(x[-1].get("content", ""))
    return ""


def _query(x) -> str:
    if isinstance(x, list):
        users = [m for m in x if isinstance(m, dict) and m.get("role") == "user"]
        return str((users or x)[-1].get("content", "")) if x else ""
    return str(x)


def judge_rule_reward(correct: float = 1.0, wrong: float = -1.0) -> Callable[..., list[float]]:
    """Rule reward for GRPO on judge prompts (see module docstring)."""

    def judge_rule(prompts, completions, judge_best=None, judge_n=None, **kwargs) -> list[float]:
        if judge_best is None or judge_n is None:
            raise ValueError("judge_rule_reward needs dataset columns 'judge_best' and 'judge_n' "
                             "(build them with selfteach.judge.rft.grpo_rows)")
        out = []
        for c, best, n in zip(completions, judge_best, judge_n, strict=True):
            p = parse_scores(_text(c), int(n))
            out.append(correct if ranks_best_first(p.scores, int(best)) else wrong)
        return out

    return judge_rule


def judge_reward(
    model_spec: str | None = None,
    k: int = 1,
    backend: Backend | None = None,
    temperature: float = 0.5,
    max_new_tokens: int = 384,
    fail_reward: float = 0.5,
    asynchronous: bool = False,
    seed: int = 0,
    **backend_kwargs,
) -> Callable:
    """Pointwise generative-judge reward in [0, 1]: (mean valid score - 1) / 9, or
    `fail_reward` when no sample parses. The judge model is loaded on first use
    (`load_backend(model_spec)`) unless a `backend` is given."""
    from selfteach.judge.voting import JudgeConfig, judge_items

    if backend is None and not model_spec:
        raise SelfteachError("judge reward: give a judge model (judge:MODEL) or a backend")
    state: dict[str, Any] = {"backend": backend, "calls": 0}
    cfg = JudgeConfig(
        k=k, temperature=temperature, max_new_tokens=max_new_tokens, mode="pointwise", seed=seed
    )

    def _score(prompts, completions) -> list[float]:
        if state["backend"] is None:
            from selfteach.backends import load_backend

            state["backend"] = load_backend(str(model_spec), **backend_kwargs)
        items = [
            JudgeItem(
                id=f"c{i}", prompt=_query(p) or "(empty prompt)", responses=[_text(c) or "(empty)"]
            )
            for i, (p, c) in enumerate(zip(prompts, completions, strict=True))
        ]
        state["calls"] += 1
        call_cfg = cfg.model_copy(
            update={"items_per_call": max(1, len(items)), "seed": seed + state["calls"]}
        )
        recs = judge_items(state["backend"], items, call_cfg)
        out = []
        for r in recs:
            t, c = r["vote"]["totals"][0], r["vote"]["counts"][0]
            out.append((t / c - 1) / 9 if c else fail_reward)
        return out

    if asynchronous:
        async def judge(prompts, completions, **kwargs) -> list[float]:
            return await asyncio.to_thread(_score, prompts, completions)
    else:
        # named like the async variant: TRL logs a reward function under its __name__
        def judge(prompts, completions, **kwargs) -> list[float]:  # type: ignore[misc]
            return _score(prompts, completions)
    return judge
