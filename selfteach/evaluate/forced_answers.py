"""The forced-answer protocol of anytime evaluation, shared by `anytime` and `pdp`.

AnytimeReasoner (arXiv 2505.13438) as used by arXiv 2601.11038 (docs/methods.md section 5):
a reasoning trace is cut at exactly b tokens, a forced-answer suffix is appended
("\\nTherefore, the final answer is", or the `</think>` one for thinking models) and the
model writes a short answer; a trace that ended on its own within b tokens is answered as
it is. With `PrefixGeneration` (the transformers backend) every cut of one trace continues
from the trace's KV cache; otherwise each cut is sent as its own token-id prompt (a
server's prefix cache reuses the shared part).

This module is the bottom of the evaluate layer for budgets: `anytime` (the run, metrics,
config) and `pdp` (preference-data prompts) both use it; it imports neither.
"""

from __future__ import annotations

from selfteach.backends.base import (
    Backend,
    ChatTemplate,
    Generation,
    PrefixGeneration,
    SamplingParams,
)

PLAIN_SUFFIX = "\nTherefore, the final answer is"
THINK_SUFFIX = "\n\n</think>\n\n**Final Answer**\n"
DEFAULT_TEMPLATE = "{question}\n\nThink step by step, then give the final answer."


def default_suffix(backend: Backend) -> str:
    """The forced-answer suffix for a model family: thinking chat templates (a `<think>`
    block) get the `</think>` suffix, everything else the plain one."""
    template = backend.chat_template if isinstance(backend, ChatTemplate) else None
    return THINK_SUFFIX if "<think>" in (template or "") else PLAIN_SUFFIX


def build_prompt_ids(backend: Backend, question: str, template: str = DEFAULT_TEMPLATE,
                     system: str | None = None) -> list[int]:
    """Token ids of the reasoning prompt: the template in the model's chat format."""
    return backend.tokenize(backend.chat_prompt(template.format(question=question), system=system))


def forced_answer_plan(trace: Generation, budgets: list[int]) -> list[int | None]:
    """Per budget: how many trace tokens to keep before the forced answer, or None when the
    trace ended on its own within the budget (then it is answered as is)."""
    finished = trace.finish_reason == "stop"
    return [
        None if finished and trace.num_tokens <= b else min(b, trace.num_tokens) for b in budgets
    ]


def force_answers(
    backend: Backend,
    prompts: list[list[int]],
    traces: list[Generation],
    budgets: list[int],
    suffix_ids: list[int],
    params: SamplingParams,
    shared_prefix: bool = True,
) -> list[list[Generation | None]]:
    """Forced answers after `prompt + trace[:b] + suffix` for every trace and budget (None
    where the trace finished within b). Truncation is at exact token counts."""
    plans = [forced_answer_plan(t, budgets) for t in traces]
    out: list[list[Generation | None]] = [[None] * len(budgets) for _ in traces]
    if shared_prefix and isinstance(backend, PrefixGeneration):
        # per trace, the (budget index, tokens kept) of its forced answers
        rows = [
            (i, [(j, k) for j, k in enumerate(plan) if k is not None])
            for i, plan in enumerate(plans)
        ]
        rows = [(i, kept) for i, kept in rows if kept]
        if rows:
            prefixes = [prompts[i] + traces[i].token_ids for i, _ in rows]
            cuts = [[len(prompts[i]) + k for _, k in kept] for i, kept in rows]
            gens = backend.generate_from_shared_prefix(prefixes, cuts, suffix_ids, params)
            for (i, kept), row in zip(rows, gens, strict=True):
                for (j, _), g in zip(kept, row, strict=True):
                    out[i][j] = g
        return out
    flat = [(i, j, k) for i, plan in enumerate(plans) for j, k in enumerate(plan) if k is not None]
    if flat:
        samples = backend.generate(
            [prompts[i] + traces[i].token_ids[:k] + suffix_ids for i, _, k in flat], params
        )
        for (i, j, _), sample in zip(flat, samples, strict=True):
            out[i][j] = sample[0]
    return out


def stop_strings(given: list[str] | None, kinds: list[str]) -> list[str]:
    """Stop strings of a forced answer: `given`, else a blank line, except for trip plans
    (which contain blank lines)."""
    if given is not None:
        return given
    return [] if "trip" in kinds else ["\n\n"]
