import math

import pytest
import torch

from selfteach.backends import label_variants
from selfteach.backends.base import DEFAULT_LABEL_VARIANTS, Backend, SamplingParams
from selfteach.backends.hf import split_context


def test_protocol(tiny_backend):
    assert isinstance(tiny_backend, Backend)


def test_split_context_moves_space():
    assert split_context("It is ", "True") == ("It is", " True")
    assert split_context("It is", " True") == ("It is", " True")


def test_score_sums_every_token_and_matches_manual(tiny_backend):
    b = tiny_backend
    prompt, cont = "The capital of France is", " Paris and Lyon"
    got = b.score([prompt], [[cont]])[0][0]
    ctx, tgt = b.tokenize(prompt), b.tokenize(cont)
    assert len(tgt) > 1
    with torch.no_grad():
        logits = b.model(torch.tensor([ctx + tgt])).logits[0].float()
    lp = torch.log_softmax(logits, -1)
    manual = sum(lp[len(ctx) - 1 + i, t].item() for i, t in enumerate(tgt))
    assert got == pytest.approx(manual, abs=1e-4)


def test_trailing_space_boundary(tiny_backend):
    # "is " + "True" must be scored as "is" + " True"
    a = tiny_backend.score(["It is "], [["True"]])[0][0]
    b = tiny_backend.score(["It is"], [[" True"]])[0][0]
    assert a == pytest.approx(b, abs=1e-5)


def test_batched_equals_one_at_a_time(tiny_backend):
    prompts = [f"Claim {i}: {'x ' * i}is" for i in range(6)]
    conts = [[" True", " False", " maybe so"]] * 6
    batched = tiny_backend.score(prompts, conts)
    single = [tiny_backend.score([p], [c])[0] for p, c in zip(prompts, conts, strict=True)]
    for r1, r2 in zip(batched, single, strict=True):
        assert r1 == pytest.approx(r2, abs=1e-4)


def test_label_logprobs_sum_variants(tiny_backend):
    b = tiny_backend
    prompt = "Claim: 2+2=4. I think this claim is"
    out = b.label_logprobs([prompt], DEFAULT_LABEL_VARIANTS)[0]
    dist = b.next_token_logprobs([prompt])[0]
    ids = {
        t for v in DEFAULT_LABEL_VARIANTS["True"] for t in [b.tokenize(v)] if len(t) == 1 for t in t
    }
    assert out["True"] == pytest.approx(torch.logsumexp(dist[list(ids)], 0).item(), abs=1e-5)
    assert out["True"] > dist[b.tokenize(" True")[0]].item()  # strictly more mass than one variant


def test_label_variants():
    v = label_variants(["true"])["true"]
    assert {" True", "True", " true", "true"} <= set(v)


def test_top_logprobs_sorted(tiny_backend):
    top = tiny_backend.top_logprobs(["Hello"], k=5)[0]
    vals = list(top.values())
    assert len(top) == 5 and vals == sorted(vals, reverse=True) and all(v <= 0 for v in vals)
    assert math.log(sum(math.exp(v) for v in vals)) <= 1e-6


def test_generate_seeded_and_counts(tiny_backend):
    p = SamplingParams(n=3, temperature=1.0, max_new_tokens=8, seed=7)
    a = tiny_backend.generate(["Once upon a time", "Hi"], p)
    b = tiny_backend.generate(["Once upon a time", "Hi"], p)
    assert [[g.token_ids for g in row] for row in a] == [[g.token_ids for g in row] for row in b]
    assert len(a) == 2 and all(len(row) == 3 for row in a)
    for g in a[0]:
        assert g.num_tokens == len(g.token_ids) <= 8
        assert g.finish_reason in ("stop", "length")


def test_generate_from_token_ids_equals_text(tiny_backend):
    p = SamplingParams(max_new_tokens=6)
    ids = tiny_backend.tokenize("Once upon a time")
    assert (
        tiny_backend.generate([ids], p)[0][0].token_ids
        == tiny_backend.generate(["Once upon a time"], p)[0][0].token_ids
    )


def test_greedy_batch_equals_single(tiny_backend):
    p = SamplingParams(max_new_tokens=6)
    prompts = ["a b c d e f g", "Hi"]
    batched = tiny_backend.generate(prompts, p)
    for prompt, row in zip(prompts, batched, strict=True):
        assert row[0].token_ids == tiny_backend.generate([prompt], p)[0][0].token_ids


def test_stop_strings_cut_text(tiny_backend):
    full = tiny_backend.generate(["Once"], SamplingParams(max_new_tokens=12))[0][0]
    assert len(full.text) > 3
    stop = full.text[2:4]
    cut = tiny_backend.generate(["Once"], SamplingParams(max_new_tokens=12, stop=[stop]))[0][0]
    assert stop not in cut.text and full.text.startswith(cut.text)
    assert cut.finish_reason == "stop"


def test_usage_counts(tiny_backend):
    tiny_backend.usage.reset()
    tiny_backend.score(["a b"], [[" c"]])
    assert tiny_backend.usage.calls == 1 and tiny_backend.usage.prompt_tokens >= 3


def test_context_overflow_is_clear_error(tiny_backend):
    from selfteach.errors import SelfteachError

    with pytest.raises(SelfteachError, match="exceeds the model's context"):
        tiny_backend.score(["word " * 3000], [[" x"]])


@pytest.mark.slow
@pytest.mark.ci
def test_smollm2_knows_paris(smol_backend):
    s = smol_backend.score(["The capital of France is"], [[" Paris", " London"]])[0]
    assert s[0] > s[1]
    out = smol_backend.generate(
        [smol_backend.chat_prompt("What is 2+3? Reply with the number only.")],
        SamplingParams(max_new_tokens=8),
    )[0][0]
    assert "5" in out.text
