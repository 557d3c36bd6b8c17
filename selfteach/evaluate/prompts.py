"""Prompt formats for solving problems. Chat models get their chat template; base models a
plain few-words format. The answer convention ("The answer is N.") is what
`selfteach.data.answers.extract_answer` reads first after `####` and `\\boxed{}`."""

from __future__ import annotations

from selfteach.backends.base import Backend
from selfteach.data.loaders import LETTERS
from selfteach.data.records import Problem

MATH_INSTRUCTION = "Solve the problem. End with 'The answer is N.' where N is the final number."
CHOICE_INSTRUCTION = (
    "Answer the multiple-choice question. End with 'The answer is X.' where X is the letter."
)


def problem_text(problem: Problem) -> str:
    if problem.choices:
        opts = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(problem.choices))
        return f"{problem.question}\n{opts}"
    return problem.question


def solve_prompt(backend: Backend, problem: Problem) -> str:
    """The prompt asking `backend`'s model to solve `problem`."""
    instruction = CHOICE_INSTRUCTION if problem.choices else MATH_INSTRUCTION
    text = problem_text(problem)
    if backend.chat_prompt("x") != "x":  # the model has a chat template
        return backend.chat_prompt(f"{text}\n\n{instruction}")
    return f"Question: {text}\n{instruction}\nAnswer:"
