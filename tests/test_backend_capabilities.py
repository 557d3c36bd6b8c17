"""Backend capabilities (selfteach.backends.base): every backend implements what it declares,
and a method given a backend without what it needs stops with one line (exit 2 on the CLI)."""

from __future__ import annotations

import typing

import pytest
import torch
from test_openai_backend import fake  # noqa: F401  (the fake OpenAI-compatible server fixture)

from selfteach.backends import base
from selfteach.backends.base import (
    Backend,
    ChatTemplate,
    HiddenStates,
    LabelReader,
    PrefixGeneration,
    PrefixScoring,
    TokenContinuation,
    has,
    require,
)
from selfteach.errors import SelfteachError

CAPABILITIES = [
    v
    for v in vars(base).values()
    if isinstance(v, type) and getattr(v, "_is_protocol", False) and v.__module__ == base.__name__
]


def declared(cls: type) -> list[type]:
    """The capability protocols a backend class names among its bases (directly or inherited)."""
    return [c for c in cls.__mro__ if c in CAPABILITIES]


def missing_members(obj: object) -> list[str]:
    """Members of the declared protocols that the object does not really implement: a
    method only inherited from the protocol's `...` body, or a data member never set."""
    cls = type(obj)
    out = []
    for proto in declared(cls):
        names = set(typing.get_type_hints(proto)) | {n for n, v in vars(proto).items()
                                                     if callable(v) or isinstance(v, property)}
        for name in sorted(n for n in names if not n.startswith("_")):
            owner = next((k for k in cls.__mro__ if name in vars(k)), None)
            if owner in CAPABILITIES or (owner is None and name not in vars(obj)):
                out.append(f"{proto.__name__}.{name}")
    return out


def test_capability_list_is_what_base_documents():
    names = {c.__name__ for c in CAPABILITIES}
    assert {
        "Backend",
        "LabelReader",
        "Tokenizes",
        "PrefixScoring",
        "LastTokenScoring",
        "PrefixGeneration",
        "TokenContinuation",
        "ChatTemplate",
        "HiddenStates",
        "ContextLimit",
        "OnDevice",
        "ServedProcess",
    } <= names
    assert set(base.ABILITIES) | {Backend, LabelReader, base.Tokenizes} == set(CAPABILITIES)


def test_the_member_check_catches_a_declared_but_missing_method():
    class Half(Backend, PrefixScoring):  # declares PrefixScoring, implements nothing
        name = "half"

    gaps = missing_members(Half())
    assert "PrefixScoring.label_logprobs_shared_prefix" in gaps and "Backend.generate" in gaps
    assert "LabelReader.usage" in gaps


def test_hf_backend_implements_every_capability_it_declares(tiny_backend):
    caps = declared(type(tiny_backend))
    assert set(caps) == set(CAPABILITIES) - {base.ServedProcess}  # everything but a server
    assert missing_members(tiny_backend) == []
    assert all(has(tiny_backend, c) for c in caps)


def test_hf_hidden_states_are_the_base_models_and_padding_free(tiny_backend):
    seqs = [tiny_backend.tokenize("The sky is blue."), tiny_backend.tokenize("Hi")]
    batched = tiny_backend.hidden_states(seqs, batch_size=2)
    for s, h in zip(seqs, batched, strict=True):
        with torch.inference_mode():
            alone = (
                tiny_backend.model.base_model(input_ids=torch.tensor([s]))
                .last_hidden_state[0]
                .float()
            )
        assert h.shape == alone.shape == (len(s), tiny_backend.model.config.hidden_size)
        torch.testing.assert_close(h, alone, atol=1e-5, rtol=1e-4)  # right padding changes nothing


def test_openai_backend_implements_what_it_declares(fake):  # noqa: F811
    from selfteach.backends.openai import OpenAIBackend

    with OpenAIBackend(fake.url) as be:
        assert set(declared(type(be))) == {
            Backend,
            LabelReader,
            base.Tokenizes,
            TokenContinuation,
            ChatTemplate,
        }
        assert missing_members(be) == []
        assert has(be, TokenContinuation) and be.chat_template is None  # no local tokenizer
        assert not isinstance(be, PrefixScoring | PrefixGeneration | HiddenStates)
    with OpenAIBackend(fake.url, mode="chat") as chat:  # the chat API takes text only
        assert isinstance(chat, TokenContinuation) and not has(chat, TokenContinuation)
        with pytest.raises(SelfteachError) as err:
            require(chat, TokenContinuation, "eval anytime")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(
        f"eval anytime: backend {chat.name} (OpenAIBackend) cannot continue"
    )
    assert "(TokenContinuation); use the server's completions mode" in msg


def test_served_backend_declares_the_prompt_cache_and_its_process():
    from selfteach.backends.served import ServedBackend

    caps = set(declared(ServedBackend))
    assert {PrefixScoring, base.ServedProcess, TokenContinuation} <= caps
    assert "label_logprobs_shared_prefix" in vars(ServedBackend) and "close" in vars(ServedBackend)


def test_require_names_backend_and_capability_in_one_line():
    from selfteach.elicit.synthetic import SyntheticBackend

    be = SyntheticBackend({}, {})
    # ICM's minimum, nothing more
    assert isinstance(be, LabelReader) and not isinstance(be, Backend)
    with pytest.raises(
        SelfteachError,
        match=r"^meta RM: backend synthetic \(SyntheticBackend\) cannot give "
        r"the network's hidden states \(HiddenStates\); use a transformers",
    ):
        require(be, HiddenStates, "meta RM")


def test_meta_rm_features_need_hidden_states(fake):  # noqa: F811
    from selfteach.backends.openai import OpenAIBackend
    from selfteach.judge.meta import features

    with (
        OpenAIBackend(fake.url) as be,
        pytest.raises(SelfteachError, match=r"cannot give the network's hidden"),
    ):
        features(be, ["a judgment"], max_tokens=16)


def test_cli_anytime_on_a_chat_mode_server_is_one_line_exit_2(fake, selfteach_main, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    code, stdout, stderr = selfteach_main(
        "eval",
        "anytime",
        "--model",
        fake.url + "?mode=chat",
        "--data",
        "builtin:arithmetic",
        "--limit",
        "2",
        "--budgets",
        "4,8",
        "--out",
        out,
    )
    assert code == 2, (stdout, stderr)
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr
    assert (
        "eval anytime: backend" in lines[0]
        and "cannot continue a token-id prompt exactly (TokenContinuation)" in lines[0]
    )
    assert not out.exists()  # checked before the run directory is made
