"""What a model backend provides: the core protocol every backend implements, and optional
capabilities a backend declares when it has them.

The core (`Backend`): (1) score the log-probability of candidate continuations after a
prompt, (2) read the next-token distribution (top-k log-probs, and label-word probabilities
summed over token variants), (3) generate n samples per prompt, (4) tokenize, detokenize
and apply the chat template, and count what it spent (`usage`).

Optional capabilities are protocols too; each backend class names the ones it implements
in its bases (`class HFBackend(Backend, PrefixScoring, ...)`), so a new backend can see what
it must provide for a method. A method types its backend parameter with what it needs and
gets it through `require(backend, Capability, "command")`, which fails with one line naming
the backend and the missing capability; an optional fast path checks
`isinstance(backend, Capability)`. Methods never reach into a particular implementation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field, field_validator

from selfteach.errors import SelfteachError

if TYPE_CHECKING:
    import torch

    from selfteach.backends.llama_server import LlamaServer

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
class LabelReader(Protocol):
    """The part of `Backend` that ICM needs: label log-probs, and the usage counters (a
    synthetic read-out without a model implements only this, `selfteach.elicit.synthetic`)."""

    name: str
    usage: Usage

    def label_logprobs(
        self, prompts: list[str], labels: dict[str, list[str]]
    ) -> list[dict[str, float]]:
        """log P(label | prompt) for each label, summing the probability of its variants.

        `labels` maps a label name to its surface variants (see `label_variants`). Returns,
        per prompt, {label: log of summed probability}. Not renormalised across labels.
        """
        ...


@runtime_checkable
class Tokenizes(Protocol):
    """Text to the model's token ids and back."""

    def tokenize(self, text: str) -> list[int]:
        """Token ids of `text`, without special tokens."""
        ...

    def detokenize(self, ids: list[int]) -> str:
        ...


@runtime_checkable
class Backend(LabelReader, Tokenizes, Protocol):
    """What every backend provides. See `selfteach.backends.hf` and `.openai`.

    `generate` takes token-id prompts too, but only a backend with `TokenContinuation`
    promises to continue them exactly (a chat API cannot)."""

    def score(self, prompts: list[str], continuations: list[list[str]]) -> list[list[float]]:
        """Sum of log-probs of every token of each continuation after its prompt.

        `continuations[i]` are the candidates for `prompts[i]` (e.g. multi-token answer
        choices). The context/continuation boundary is handled like lm-eval-harness:
        trailing whitespace of the prompt moves to the continuation, and the two are
        tokenised separately, so " Paris" is scored as the tokens the model would emit.
        """
        ...

    def top_logprobs(self, prompts: list[str], k: int = 20) -> list[dict[str, float]]:
        """The k most likely next tokens after each prompt: {token text: log-prob}."""
        ...

    def generate(self, prompts: Sequence[Prompt],
                 params: SamplingParams) -> list[list[Generation]]:
        """`params.n` samples per prompt. A prompt given as token ids is continued exactly
        where the backend has `TokenContinuation`."""
        ...

    def chat_prompt(self, user: str, system: str | None = None) -> str:
        """The model's chat template applied to one user turn, ready to generate; the text
        itself when the model has no chat template (a base model)."""
        ...


# ---- optional capabilities --------------------------------------------------------------
# Each names what a method needs beyond the core. `require` below turns a missing one into
# a one-line error; `isinstance(backend, Capability)` selects an optional fast path.


@runtime_checkable
class PrefixScoring(Protocol):
    """Label log-probs of many short suffixes after one long shared prefix, reading the
    prefix once (ICM's contexts): the transformers backend reuses the prefix's KV cache,
    a llama.cpp server its slot's prompt cache."""

    def label_logprobs_shared_prefix(self, prefix: str, suffixes: list[str],
                                     labels: dict[str, list[str]]) -> list[dict[str, float]]:
        """`label_logprobs([prefix + s for s in suffixes], labels)`, reading `prefix` once."""
        ...


@runtime_checkable
class LastTokenScoring(Protocol):
    """Label log-probs from the next-token distribution alone: one-token variants only, the
    LM head at the last position only (cheaper than `label_logprobs` for big vocabularies)."""

    def label_logprobs_last(
        self, prompts: list[str], labels: dict[str, list[str]]
    ) -> list[dict[str, float]]: ...


@runtime_checkable
class PrefixGeneration(Protocol):
    """Many continuations of cuts of one token prefix, paying for the prefix once (anytime
    evaluation's forced answers at every budget of one trace)."""

    def generate_from_shared_prefix(
        self,
        prefixes: list[list[int]],
        cuts: list[list[int]],
        suffix: list[int],
        params: SamplingParams,
    ) -> list[list[Generation]]:
        """`out[i][j]`: one generation continuing `prefixes[i][:cuts[i][j]] + suffix`."""
        ...


@runtime_checkable
class TokenContinuation(Protocol):
    """`generate` continues a prompt given as token ids exactly, token for token (anytime
    evaluation cuts a trace at an exact token count and continues it). A backend whose
    ability depends on how it was opened says so per instance: an OpenAI-compatible
    server in chat mode cannot (the chat API takes text and applies the template itself)."""

    @property
    def continues_token_prompts(self) -> bool:
        ...


@runtime_checkable
class ChatTemplate(Protocol):
    """The text (Jinja) of the model's chat template, or None where there is none or it is
    not known here (a server that applies its own)."""

    @property
    def chat_template(self) -> str | None:
        ...


@runtime_checkable
class HiddenStates(Protocol):
    """The final hidden states of the underlying network (the meta reward model's features)."""

    def hidden_states(self, seqs: list[list[int]], batch_size: int = 8) -> list[torch.Tensor]:
        """Per token sequence, its final hidden states, [len, hidden] float32 on the CPU."""
        ...


@runtime_checkable
class ContextLimit(Protocol):
    """The model's context length in tokens (prompt plus generation)."""

    max_length: int


@runtime_checkable
class OnDevice(Protocol):
    """A model running in this process, on `device` ("cpu", "cuda", "cuda:1", ...)."""

    device: str


@runtime_checkable
class ServedProcess(Protocol):
    """A backend that owns a model server process; `close()` stops it and frees its cores."""

    server: LlamaServer

    def close(self) -> None:
        ...


ABILITIES: dict[type, str] = {
    PrefixScoring: "score labels after a shared prefix read once",
    LastTokenScoring: "read labels at the last position only",
    PrefixGeneration: "continue cuts of a shared token prefix",
    TokenContinuation: "continue a token-id prompt exactly",
    ChatTemplate: "show its chat template",
    HiddenStates: "give the network's hidden states",
    ContextLimit: "state its context length",
    OnDevice: "run in this process",
    ServedProcess: "stop a server it owns",
}
HINTS: dict[type, str] = {
    TokenContinuation: "use the server's completions mode (not chat mode) or a local model",
    HiddenStates: "use a transformers model (--backend hf)",
}

def has(backend: object, capability: type) -> bool:
    """Whether `backend` provides `capability` (its class implements the protocol and, for
    `TokenContinuation`, this instance was opened in a way that allows it)."""
    if capability is TokenContinuation:
        return isinstance(backend, TokenContinuation) and bool(backend.continues_token_prompts)
    return isinstance(backend, capability)


def require(backend: Backend, capability: type, what: str) -> Any:
    """`backend` as a `capability` (annotate the result: `m: HiddenStates = require(...)`;
    mypy refuses a protocol class as `type[C]`), or one line naming the command, the
    backend and what it cannot do, e.g. "eval anytime: backend URL#model (OpenAIBackend)
    cannot continue a token-id prompt exactly (TokenContinuation); use the server's
    completions mode ..."."""
    if has(backend, capability):
        return backend
    ability = ABILITIES.get(capability, f"provide {capability.__name__}")
    hint = HINTS.get(capability)
    raise SelfteachError(
        f"{what}: backend {backend.name} ({type(backend).__name__}) cannot {ability} "
        f"({capability.__name__})" + (f"; {hint}" if hint else "")
    )
