"""Judge prompt templates (SPCT, arXiv 2504.02495, section 3: principles, then critiques,
then one score per response).

The judge reads a query and n responses and writes, in order: principles for this query,
each with a weight; a critique of each response against them; and a last line
`Scores: \\boxed{a, b, ...}` with one integer 1-10 per response, in the order shown. In
pointwise mode it sees one response and ends with `Score: \\boxed{a}`. The wording is ours;
every template is a field of `JudgePrompt`, so a user can replace it (`--prompts FILE`,
a YAML/JSON file with any of these fields).

Prompt styles (`--prompt-style`, measured in docs/judge.md, "Output format"): `paper` is the
plain instruction above; `example` (default) adds a template of the output format (two
principles, two critiques, the score box, each slot a <...> to fill in), because small
judges (Qwen2.5-Coder-0.5B) follow the instructions but often never write the box.
The method is unchanged: the judge still writes its own principles, critiques and scores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from selfteach.backends.base import Backend
from selfteach.errors import SelfteachError

SYSTEM = "You are a careful and impartial judge. You grade answers to a user's query."

MULTI_PAPER = """Grade the {n} responses to the query below.

1. First write two to four principles that a good answer to this query must satisfy, each with a weight in percent, e.g. "Principle 1 (50%): the final result is computed correctly."
2. Then critique every response against these principles, one short paragraph per response.
3. Finally give every response an integer score from 1 (worst) to 10 (best). End with exactly one line
Scores: \\boxed{{s1, s2}}
that lists the {n} scores in the order of the responses, separated by commas.

[Query]
{query}

{responses}"""

POINTWISE_PAPER = """Grade the response to the query below.

1. First write two to four principles that a good answer to this query must satisfy, each with a weight in percent.
2. Then critique the response against these principles in one short paragraph.
3. Finally give the response an integer score from 1 (worst) to 10 (best). End with exactly one line
Score: \\boxed{{s}}

[Query]
{query}

{responses}"""

# The example shows the shape only: a concrete worked example (principles and critiques of
# another query, `\\boxed{3, 9}`) was copied word for word by Qwen2.5-Coder-0.5B, scores
# included (docs/judge.md, Output format), so every slot is a <...> the judge fills in.
EXAMPLE_MULTI = """

Write your judgment in this format, with your own principles, critiques and scores in place of each <...>:
Principle 1 (<weight>%): <what a good answer to this query must do>
Principle 2 (<weight>%): <what a good answer to this query must do>
Critique of Response 1: <how well Response 1 meets the principles>
Critique of Response 2: <how well Response 2 meets the principles>
Scores: \\boxed{{<score of Response 1>, <score of Response 2>}}
"""

EXAMPLE_POINTWISE = """

Write your judgment in this format, with your own principles, critique and score in place of each <...>:
Principle 1 (<weight>%): <what a good answer to this query must do>
Principle 2 (<weight>%): <what a good answer to this query must do>
Critique: <how well the response meets the principles>
Score: \\boxed{{<score>}}
"""

_QUERY = "\n\n[Query]\n"


def _with_example(template: str, example: str) -> str:
    """`template` with the format example inserted after the instructions, before the query."""
    head, tail = template.split(_QUERY, 1)
    return head + example.rstrip("\n") + _QUERY + tail


MULTI_EXAMPLE = _with_example(MULTI_PAPER, EXAMPLE_MULTI)
POINTWISE_EXAMPLE = _with_example(POINTWISE_PAPER, EXAMPLE_POINTWISE)
PromptStyle = Literal["paper", "example"]
STYLES: dict[str, dict[str, str]] = {
    "paper": {"multi": MULTI_PAPER, "pointwise": POINTWISE_PAPER},
    "example": {"multi": MULTI_EXAMPLE, "pointwise": POINTWISE_EXAMPLE},
}
# "example": on Qwen2.5-Coder-1.5B 12/12 judgments parseable vs 5/12 with "paper" on the same 6
# pairs (docs/judge.md); on the 0.5B neither parses (0/32, 0/16). The CLI's default too.
DEFAULT_STYLE: PromptStyle = "example"

RESPONSE = "[Response {i}]\n{response}\n[End of response {i}]\n"


class JudgePrompt(BaseModel):
    """The judge's prompt templates. `{query}`, `{responses}`, `{n}` are filled in; each
    response is rendered with `response` (`{i}` is 1-based, `{response}` its text)."""

    model_config = ConfigDict(extra="forbid")

    system: str | None = Field(SYSTEM, description="system message (None: no system turn)")
    multi: str = Field(STYLES[DEFAULT_STYLE]["multi"], description="template for n >= 2 responses judged together")
    pointwise: str = Field(STYLES[DEFAULT_STYLE]["pointwise"], description="template for one response judged alone")
    response: str = Field(RESPONSE, description="how one response is shown; {i} is 1-based")
    chat: bool = Field(True, description="wrap in the model's chat template (no effect on base models)")
    stop: list[str] = Field(default_factory=list, description="stop strings ending a judgment; a stop string that "
                            "starts with '}' and cuts a judgment inside its last box gets that brace back "
                            "(parse.close_stopped_box)")

    @classmethod
    def style(cls, name: PromptStyle = DEFAULT_STYLE, **fields) -> JudgePrompt:
        """The templates of a prompt style (`paper` or `example`), with `fields` overriding."""
        if name not in STYLES:
            raise SelfteachError(f"--prompt-style {name!r}: choose {' or '.join(STYLES)}")
        return cls(**{**STYLES[name], **fields})

    @classmethod
    def from_file(cls, path: str | Path | None, style: PromptStyle = DEFAULT_STYLE) -> JudgePrompt:
        """Templates from a YAML or JSON file (missing fields keep those of `style`)."""
        if path is None:
            return cls.style(style)
        p = Path(path)
        if not p.is_file():
            raise SelfteachError(f"{p}: prompts file not found")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise SelfteachError(f"{p}: not valid YAML/JSON ({str(e).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise SelfteachError(f"{p}: expected a mapping of template fields")
        try:
            prompt = cls.style(style, **data)
        except ValidationError as e:
            err = e.errors()[0]
            raise SelfteachError(f"{p}: field {'.'.join(map(str, err['loc']))!r}: {err['msg']}") from None
        for name in ("multi", "pointwise"):  # fail now, not at the first item
            try:
                getattr(prompt, name).format(n=2, query="q", responses="r")
            except (KeyError, IndexError, ValueError) as e:
                raise SelfteachError(f"{p}: field {name!r}: bad template ({e!r}); use {{n}} {{query}} {{responses}}, "
                                     "and double literal braces: \\\\boxed{{{{s}}}}") from None
        return prompt


def build_prompt(query: str, responses: list[str], prompt: JudgePrompt | None = None) -> str:
    """The judge's user message for `responses` in the order they are shown. One response
    uses the pointwise template, two or more the multi-response one."""
    prompt = prompt or JudgePrompt()
    shown = "\n".join(prompt.response.format(i=i + 1, response=r.strip()) for i, r in enumerate(responses))
    template = prompt.pointwise if len(responses) == 1 else prompt.multi
    return template.format(n=len(responses), query=query.strip(), responses=shown)


def render(backend: Backend, query: str, responses: list[str], prompt: JudgePrompt | None = None) -> str:
    """The full text sent to the model: the user message inside the chat template."""
    prompt = prompt or JudgePrompt()
    user = build_prompt(query, responses, prompt)
    return backend.chat_prompt(user, system=prompt.system) if prompt.chat else user
