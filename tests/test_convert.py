"""Conversion of a transformers checkpoint to GGUF with llama.cpp's own converter, then
served (issue 11, items 2 and 4): the tiny random model converted at F32 and served by
llama.cpp agrees with the transformers backend on the argmax label of >= 95% of 64 claims
and on every label log-prob to 1e-3 nats. F16/Q8_0 are selectable; failures are one-line."""

from __future__ import annotations

import pytest

from selfteach.backends import load_backend
from selfteach.backends.base import DEFAULT_LABEL_VARIANTS
from selfteach.backends.convert import converter_dir, to_gguf
from selfteach.backends.models import gguf_file_type, resolve
from selfteach.errors import SelfteachError

pytestmark = [pytest.mark.slow, pytest.mark.ci, pytest.mark.server]
_real_converter = converter_dir()  # before any test points SELFTEACH_CACHE elsewhere
needs_converter = pytest.mark.skipif(not (converter_dir() / "convert_hf_to_gguf.py").is_file(),
                                     reason="llama.cpp's converter not installed: `make converter`")


@needs_converter
@pytest.mark.parametrize("quant", ["F32", "F16", "Q8_0"])
def test_converts_a_checkpoint_at_each_quantization(quant):
    path = to_gguf(resolve("tiny-random"), quant)
    assert path.name.endswith(f".{quant}.gguf") and gguf_file_type(path) == quant
    assert to_gguf(resolve("tiny-random"), quant) == path  # cached


@needs_converter
def test_served_checkpoint_agrees_with_transformers(tiny_backend):
    from selfteach.data.loaders import load_claims

    prompts = [
        f"Claim: {c.claim}\nI think this claim is"
        for c in load_claims("builtin:capitals", limit=64)
    ]
    local = tiny_backend.label_logprobs(prompts, DEFAULT_LABEL_VARIANTS)
    served = load_backend(str(to_gguf(resolve("tiny-random"), "F32")), serve=True)
    try:
        remote = served.label_logprobs(prompts, DEFAULT_LABEL_VARIANTS)
    finally:
        served.close()
    agree = sum(max(a, key=a.get) == max(b, key=b.get) for a, b in zip(local, remote, strict=True))
    assert agree / len(prompts) >= 0.95, f"argmax agreement {agree}/64"
    # the random model's label log-probs are all near -log(vocab): compare them exactly too
    gap = max(abs(a["True"] - b["True"]) for a, b in zip(local, remote, strict=True))
    assert gap < 1e-3, gap


def test_conversion_errors_are_one_line(tmp_path):
    with pytest.raises(SelfteachError, match="no config.json, not a transformers model directory"):
        to_gguf(tmp_path)
    with pytest.raises(SelfteachError, match="quantization 'Q3': choose F32, F16, Q8_0, Q4_K_M"):
        to_gguf(resolve("tiny-random"), "Q3")


@needs_converter
def test_broken_checkpoint_fails_in_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFTEACH_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "bad-model"
    bad.mkdir()
    (bad / "config.json").write_text(
        '{"architectures": ["NoSuchForCausalLM"], "model_type": "nosuch"}'
    )
    monkeypatch.setattr("selfteach.backends.convert.converter_dir", lambda: _real_converter)
    with pytest.raises(
        SelfteachError, match=r"bad-model: conversion to GGUF Q8_0 failed \(.+\)"
    ) as e:
        to_gguf(bad)
    assert "\n" not in str(e.value)
    assert not any((tmp_path / "cache" / "gguf").glob("*"))
