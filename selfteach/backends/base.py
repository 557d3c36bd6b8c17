"""The one protocol every model backend implements.

A backend can (1) score the log-probability of candidate continuations after a prompt,
(2) read the next-token distribution (top-k log-probs, and label-word probabilities summed
over token variants), and (3) generate n samples per prompt, where a prompt may be text or
token ids, so a caller can continue from an exact token prefix (anytime evaluation).

Methods (ICM, the judge, anytime, ...) only use this protocol; they never reach into a
particular implementation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, Field, field_validator

Prompt = str | list[int]
"""A prompt is raw text, or token ids (to continue from an exact token prefix)."""


class SamplingParams(BaseModel):
    """How to sample. Defaults give one greedy completion."""

    n: int = Field(1, ge=1, description="samples per prompt")
    max_new_tokens: int = Field(256, ge=1, description="cap on generated tokens per sample")
    temperature: float = Field(0.0, ge=0.0, description="0 means greedy")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="nucleus sampling mass")
    stop: list[str] = Field(default_factory=list, description="stop strings (not included in text)")
    seed: int | None = Field(0, description="same seed, same samples (on the same device)")

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, v: list[str]) -> list[str]:
        return [s for s in v if s]


@dataclass
class Generation:
    """One sampled completion."""

    text: str
    token_ids: list[int]
    finish_reason: str = "length"  # "stop" (EOS or a stop string) or "length"

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


@dataclass
class Usage:
    """Running cost counters, so every method can report what it spent."""

    calls: int = 0  # model forward batches or server requests
    prompt_tokens: int = 0  # tokens the model had to read (after any cache reuse we control)
    generated_tokens: int = 0
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"calls": self.calls, "prompt_tokens": self.prompt_tokens,
                "generated_tokens": self.generated_tokens, **self.extra}

    def reset(self) -> None:
        self.calls = self.prompt_tokens = self.generated_tokens = 0
        self.extra = {}


DEFAULT_LABEL_VARIANTS: dict[str, list[str]] = {
    "True": [" True", "True", " true", "true", " TRUE"],
    "False": [" False", "False", " false", "false", " FALSE"],
}


def label_variants(words: list[str]) -> dict[str, list[str]]:
    """Token variants of each label word: with/without leading space, lower/title case."""
    out: dict[str, list[str]] = {}
    for w in words:
        base = w.strip()
        forms = [base, base.lower(), base.capitalize(), base.upper()]
        seen: list[str] = []
        for f in forms:
            for v in (" " + f, f):
                if v not in seen:
                    seen.append(v)
        out[base] = seen
    return out


@runtime_checkable
class Backend(Protocol):
    """What every backend provides. See `selfteach.backends.hf` and `.openai`."""

    name: str
    usage: Usage

    def score(self, prompts: list[str], continuations: list[list[str]]) -> list[list[float]]:
        """Sum of log-probs of every token of each continuation after its prompt.

        `continuations[i]` are the candidates for `prompts[i]` (e.g. multi-token answer
        choices). The context/continuation boundary is handled like lm-eval-harness:
        trailing whitespace of the prompt moves to the continuation, and the two are
        tokenised separately, so " Paris" is scored as the tokens the model would emit.
        """
        ...

    def label_logprobs(self, prompts: list[str], labels: dict[str, list[str]]) -> list[dict[str, float]]:
        """log P(label | prompt) for each label, summing the probability of its variants.

        `labels` maps a label name to its surface variants (see `label_variants`). Returns,
        per prompt, {label: log of summed probability}. Not renormalised across labels.
        """
        ...

    def top_logprobs(self, prompts: list[str], k: int = 20) -> list[dict[str, float]]:
        """The k most likely next tokens after each prompt: {token text: log-prob}."""
        ...

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[list[Generation]]:
        """`params.n` samples per prompt. A prompt given as token ids is continued exactly."""
        ...

    def tokenize(self, text: str) -> list[int]:
        """Token ids of `text`, without special tokens."""
        ...

    def detokenize(self, ids: list[int]) -> str:
        ...

    def chat_prompt(self, user: str, system: str | None = None) -> str:
        """The model's chat template applied to one user turn, ready to generate; the text
        itself when the model has no chat template (a base model)."""
        ...
