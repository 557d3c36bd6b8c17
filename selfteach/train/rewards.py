"""Reward functions for GRPO, resolved from a spec string.

- `gold-answer`: 1.0 when the completion's final answer equals the problem's gold answer
  (math-verify equivalence via `selfteach.data.answers.is_correct`), else 0.0. This is the
  supervised baseline reward that ICM+DPO is compared with (methods.md section 2).
- `judge:MODEL`: a generative judge's score (SPCT, arXiv 2504.02495), provided by
  `selfteach.judge.rewards.judge_reward(model_spec, **kw)`.
- `judge-rule`: the judge's rule-based reward, `selfteach.judge.rewards.judge_rule_reward(**kw)`.

Judge rewards are imported lazily so GRPO with `gold-answer` never loads the judge code.
Every function follows TRL's reward signature `f(prompts, completions, **columns) -> list[float]`;
the dataset's `answer` column arrives as a keyword argument.
"""

from __future__ import annotations

from collections.abc import Callable

from selfteach.data.answers import is_correct
from selfteach.errors import SelfteachError

RewardFunc = Callable[..., list[float]]


def _text(completion) -> str:
    """A completion is a string (text prompts) or a list of chat messages."""
    if isinstance(completion, list):
        return "".join(m.get("content", "") for m in completion if isinstance(m, dict))
    return str(completion)


def gold_answer_reward(prompts: list, completions: list, answer: list[str | None] | None = None,
                       **kwargs) -> list[float]:
    """1.0 if the extracted final answer equals the gold answer (math-verify), else 0.0."""
    if answer is None:
        raise SelfteachError("reward gold-answer: the training problems have no 'answer' column")
    return [
        1.0 if is_correct(_text(c), a) else 0.0 for c, a in zip(completions, answer, strict=True)
    ]


gold_answer_reward.__name__ = "gold_answer"


def resolve_reward(spec: str, **kw) -> RewardFunc:
    """`gold-answer` | `judge:MODEL` | `judge-rule` -> a TRL reward function."""
    spec = spec.strip()
    if spec == "gold-answer":
        return gold_answer_reward
    if spec.startswith("judge:"):
        model = spec.removeprefix("judge:").strip()
        if not model:
            raise SelfteachError("--reward judge:MODEL: missing model after 'judge:'")
        from selfteach.judge.rewards import judge_reward

        return judge_reward(model, **kw)
    if spec == "judge-rule":
        from selfteach.judge.rewards import judge_rule_reward

        return judge_rule_reward(**kw)
    raise SelfteachError(f"--reward {spec!r}: choose gold-answer, judge:MODEL or judge-rule")
