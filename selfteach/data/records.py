"""The records every method shares. Methods exchange these, never each other's internals."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Problem(_Record):
    """A question with (optionally) a gold final answer.

    `answer` may be missing for unlabeled training prompts; evaluation needs it.
    `choices` makes it a multiple-choice problem (`answer` is then the letter, e.g. "B").
    """

    id: str
    question: str = Field(min_length=1)
    answer: str | None = None
    solution: str | None = None  # a gold worked solution, when the data has one
    choices: list[str] | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("answer", mode="before")
    @classmethod
    def _answer_to_str(cls, v: Any) -> Any:
        if isinstance(v, bool) or v is None:
            return v
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        if isinstance(v, int | float):
            return str(v)
        return v


class Claim(_Record):
    """A statement the model labels True/False (ICM's unit).

    `group` ties claims that a consistency rule relates (e.g. solutions of one problem);
    `key` is what the rule compares (e.g. a solution's final answer). `gold` is used only
    to report accuracy and never reaches the search.
    """

    id: str
    question: str = ""
    claim: str = Field(min_length=1)
    group: str | None = None
    key: str | None = None
    gold: bool | None = None
    meta: dict[str, Any] = Field(default_factory=dict)


class PreferencePair(_Record):
    """TRL's preference format: prompt, chosen, rejected."""

    prompt: str
    chosen: str = Field(min_length=1)
    rejected: str = Field(min_length=1)
    meta: dict[str, Any] = Field(default_factory=dict)


class JudgeItem(_Record):
    """A query with n responses for a judge. `best` is the index of the known-best response
    when known (RewardBench pairs: chosen is response 0)."""

    id: str
    prompt: str = Field(min_length=1)
    responses: list[str] = Field(min_length=1)
    best: int | None = None
    subset: str = "default"
    meta: dict[str, Any] = Field(default_factory=dict)
