"""The records every method shares. Methods exchange these, never each other's internals."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator


def _not_blank(v: str) -> str:
    if not v.strip():
        raise ValueError("is empty or only whitespace")
    return v


# Text a method reads: a whitespace-only question or claim is a data error, not a prompt.
Text = Annotated[str, AfterValidator(_not_blank)]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Problem(_Record):
    """A question with (optionally) a gold final answer.

    `answer` may be missing for unlabeled training prompts; evaluation needs it.
    `choices` makes it a multiple-choice problem (`answer` is then the letter, e.g. "B").
    """

    id: Text
    question: Text
    answer: Text | None = None
    solution: str | None = None  # a gold worked solution, when the data has one
    choices: list[Text] | None = Field(None, min_length=2, max_length=10)
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("answer", mode="before")
    @classmethod
    def _answer_to_str(cls, v: Any) -> Any:
        if isinstance(v, bool) or v is None:
            return v
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"{v} is not a finite number")
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        if isinstance(v, int | float):
            return str(v)
        return v

    @model_validator(mode="after")
    def _answer_is_a_choice(self) -> Problem:
        """A multiple-choice answer is the letter of one of the choices (A-D for four)."""
        if self.choices is not None and self.answer is not None:
            letter = self.answer.strip().upper()
            valid = "ABCDEFGHIJ"[: len(self.choices)]
            if len(letter) != 1 or letter not in valid:
                raise ValueError(f"field 'answer': {self.answer!r} is not a letter of the {len(self.choices)} choices "
                                 f"({valid[0]}-{valid[-1]})")
            self.answer = letter
        return self


class Claim(_Record):
    """A statement the model labels True/False (ICM's unit).

    `group` ties claims that a consistency rule relates (e.g. solutions of one problem);
    `key` is what the rule compares (e.g. a solution's final answer). `gold` is used only
    to report accuracy and never reaches the search.
    """

    id: Text
    question: str = ""
    claim: Text
    group: str | None = None
    key: str | None = None
    gold: bool | None = None
    meta: dict[str, Any] = Field(default_factory=dict)


class PreferencePair(_Record):
    """TRL's preference format: prompt, chosen, rejected."""

    prompt: str
    chosen: Text
    rejected: Text
    meta: dict[str, Any] = Field(default_factory=dict)


class JudgeItem(_Record):
    """A query with n responses for a judge. `best` is the index of the known-best response
    when known (RewardBench pairs: chosen is response 0)."""

    id: Text
    prompt: Text
    responses: list[Text] = Field(min_length=1)
    best: int | None = None
    subset: str = "default"
    meta: dict[str, Any] = Field(default_factory=dict)
