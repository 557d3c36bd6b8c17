"""The records every method shares. Methods exchange these, never each other's internals."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

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
                raise ValueError(
                    f"field 'answer': {self.answer!r} is not a letter of the "
                    f"{len(self.choices)} choices "
                    f"({valid[0]}-{valid[-1]})"
                )
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


# ---- per-item output rows ----------------------------------------------------------------
# What a method writes, one JSON line per row, to a run directory's outputs file, and what
# `--resume` reads back (selfteach.runner). Field order is the order on disk: a row written
# by `Row.to_row()` is byte-identical to the dict rows earlier versions wrote, so existing
# run directories still resume. NaN is allowed: these are our own measurements.


class Row(BaseModel):
    """A per-item output row. `to_row()` gives the dict written to disk; fields listed in
    `_optional` are left out when None (they were only ever written when present)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=True)
    _optional: frozenset[str] = frozenset()

    def to_row(self) -> dict[str, Any]:
        return self.model_dump(exclude={k for k in self._optional if getattr(self, k) is None})


Number = int | float  # kept as written: 1 stays 1, 1.0 stays 1.0 (byte-identical rows)


class AccuracyRow(Row):
    """One problem of `eval accuracy` (outputs.jsonl): k sampled answers and their scores."""

    id: str
    gold: str | None
    answers: list[str | None]
    correct: list[bool]
    accuracy: Number
    pass_at_k: Number
    maj_at_k: Number
    outputs: list[str]
    verify_timeouts: int = 0
    tokens: list[int]


class Candidate(Row):
    """One sampled solution of `improve` (candidates.jsonl); `correct` is for reports only."""

    id: str  # "<problem id>#<j>"
    problem_id: str
    prompt: str
    text: str
    answer: str | None
    temperature: float
    finish_reason: str | None
    tokens: int
    correct: bool | None


class BudgetPoint(Row):
    """One budget of one anytime trace: the forced (or natural) answer and its score."""

    budget: int
    forced: bool
    answer: str | None
    pred: str | None
    score: Number


class AnytimeSample(Row):
    """One reasoning trace of an anytime item, scored at every budget."""

    trace: str
    trace_tokens: int
    finished: bool
    budgets: list[BudgetPoint]


class AnytimeRow(Row):
    """One item of `eval anytime` (outputs.jsonl): quality per budget over its traces."""

    _optional = frozenset({"pdp"})

    id: str
    gold: str | None
    scorer: str
    quality: list[Number]
    samples: list[AnytimeSample]
    verify_timeouts: int = 0
    prompt_tokens: int | None = None
    pdp: dict[str, Any] | None = None


class Judgment(Row):
    """One item judged K times (judgments.jsonl). The samples keep their mode-specific
    shapes (multi: order/text/scores/error/tokens/finish; pointwise: texts/scores/errors/
    tokens; optional meta/forced/raw_error), which judge/voting.py reads."""

    id: str
    subset: str = "default"
    prompt: str
    responses: list[str]
    best: int | None = None
    mode: Literal["multi", "pointwise"] = "multi"
    samples: list[dict[str, Any]]
    vote: dict[str, Any]
    error: str | None = None



def judged_item(row: dict[str, Any]) -> JudgeItem:
    """The query a judgment row (a `Judgment` as read from judgments.jsonl) judged, as the
    JudgeItem the judge's prompt builders read."""
    return JudgeItem(id=str(row["id"]), prompt=row["prompt"], responses=row["responses"],
                     best=row.get("best"), subset=row.get("subset", "default"))
