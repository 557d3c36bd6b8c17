"""Integration test against a real OpenAI-compatible server (issue 2, item 3).

llama.cpp's server (the default engine: the `xllamacpp` wheel installed by `make setup`; or
`llama-server` built by `make server`) serves an F32 re-encoding of the SmolLM2-135M GGUF on
127.0.0.1; the same 50 True/False claims go through the hf backend and the openai backend,
which must agree on the argmax label for >= 95% of them, on every log-prob to a small
tolerance, and on short greedy generations.
Skipped only when no engine is installed (the reason says how to install one).
"""

from __future__ import annotations

import math

import pytest

from selfteach.backends.base import DEFAULT_LABEL_VARIANTS, SamplingParams
from selfteach.backends.llama_server import LlamaServer, engine_command
from selfteach.errors import SelfteachError

pytestmark = [pytest.mark.slow, pytest.mark.ci, pytest.mark.server]

TEMPLATE = "Claim: {claim}\nI think this claim is"


@pytest.fixture(scope="module")
def server():
    try:
        engine_command()
    except SelfteachError as e:
        pytest.skip(str(e))
    with LlamaServer("smollm2-135m", f32=True) as s:
        yield s


@pytest.fixture(scope="module")
def remote(server):
    from selfteach.backends.openai import OpenAIBackend

    with OpenAIBackend(server.url, max_concurrency=8) as b:
        yield b


@pytest.fixture(scope="module")
def prompts():
    from selfteach.data.loaders import load_claims

    claims = load_claims("builtin:capitals", limit=50)
    assert len(claims) == 50
    return [TEMPLATE.format(claim=c.claim) for c in claims]


def test_label_argmax_agrees_on_50_claims(smol_backend, remote, prompts):
    local = smol_backend.label_logprobs(prompts, DEFAULT_LABEL_VARIANTS)
    served = remote.label_logprobs(prompts, DEFAULT_LABEL_VARIANTS)
    agree = sum(max(a, key=a.get) == max(b, key=b.get) for a, b in zip(local, served, strict=True))
    assert agree / len(prompts) >= 0.95, f"argmax agreement {agree}/{len(prompts)}"
    # Not only the argmax: the F32 server reproduces transformers' numbers. The server sums
    # the variants in its top 20 only, so allow the (tiny) mass of variants outside it.
    gaps = [abs(a[k] - b[k]) for a, b in zip(local, served, strict=True) for k in a]
    assert max(gaps) < 0.05, f"largest label log-prob gap {max(gaps):.4f} nats"
    assert remote.usage.calls >= 50


def test_top_logprobs_and_forced_scores_match(smol_backend, remote, prompts):
    local, served = (
        smol_backend.top_logprobs(prompts[:5], k=5),
        remote.top_logprobs(prompts[:5], k=5),
    )
    for a, b in zip(local, served, strict=True):
        assert list(a)[:3] == list(b)[:3]
        assert all(abs(a[t] - b[t]) < 0.01 for t in a if t in b)
    conts = [[" true", " false", " correct because"]] * 3
    sa, sb = smol_backend.score(prompts[:3], conts), remote.score(prompts[:3], conts)
    for ra, rb in zip(sa, sb, strict=True):
        assert all(math.isclose(x, y, abs_tol=0.01) for x, y in zip(ra, rb, strict=True)), (ra, rb)


def test_greedy_generations_agree(smol_backend, remote):
    prompts = [
        smol_backend.chat_prompt(q) for q in ("What is the capital of France?", "Name a color.")
    ]
    prompts.append("The capital of Italy is")
    assert remote.chat_prompt("What is the capital of France?") == prompts[0]
    params = SamplingParams(max_new_tokens=12, temperature=0.0)
    local, served = smol_backend.generate(prompts, params), remote.generate(prompts, params)
    for a, b in zip(local, served, strict=True):
        assert a[0].text == b[0].text
        assert a[0].token_ids == b[0].token_ids
    # continue an exact token prefix (anytime evaluation): same ids as the text prompt
    ids = smol_backend.tokenize(prompts[2])
    again = remote.generate([ids], params)[0][0]
    assert again.token_ids == served[2][0].token_ids


def test_sampling_n_seed_and_stop(remote):
    params = SamplingParams(n=3, max_new_tokens=16, temperature=1.0, seed=7, stop=["."])
    # llama-server's prompt cache: a prompt read from its KV cache differs from a fresh read
    # in the last float bits, which can flip a sample; warm the cache, then repeats match.
    remote.generate(["Once upon a time"], SamplingParams(max_new_tokens=1))
    first = remote.generate(["Once upon a time"], params)[0]
    assert len(first) == 3 and len({g.text for g in first}) > 1
    assert [g.text for g in remote.generate(["Once upon a time"], params)[0]] == [
        g.text for g in first
    ]
    for g in first:
        assert "." not in g.text
        assert remote.detokenize(g.token_ids).startswith(g.text)
        assert g.finish_reason in ("stop", "length") and g.num_tokens <= 16


def test_chat_mode_against_the_real_server(server, smol_backend):
    from selfteach.backends.openai import OpenAIBackend

    with OpenAIBackend(server.url, mode="chat") as chat:
        q = "Is Paris the capital of France? Answer True or False."
        row = chat.label_logprobs([q], {"True": ["True"], "False": ["False"]})[0]
        local = smol_backend.label_logprobs(
            [smol_backend.chat_prompt(q)], {"True": ["True"], "False": ["False"]}
        )[0]
        assert row["True"] == pytest.approx(local["True"], abs=0.01)
        gen = chat.generate([chat.chat_prompt(q)], SamplingParams(max_new_tokens=8))[0][0]
        assert (
            gen.text
            == smol_backend.generate(
                [smol_backend.chat_prompt(q)], SamplingParams(max_new_tokens=8)
            )[0][0].text
        )
        assert gen.token_ids == smol_backend.tokenize(gen.text)
        with pytest.raises(SelfteachError, match="mode='completions'"):
            chat.score([q], [[" True"]])


def test_bad_gguf_is_one_line_error(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf")
    with pytest.raises(SelfteachError, match="exited with code"):
        LlamaServer(bad, startup_timeout=30).start()
    with pytest.raises(SelfteachError, match="not a .gguf file"):
        LlamaServer(tmp_path / "missing.gguf")
