"""Entropic SFT objectives (arXiv 2602.11424): formulas, gradients, chunking, masking, bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from selfteach.errors import SelfteachError
from selfteach.train.objectives import (
    DEFT_EPS,
    OBJECTIVES,
    check_objective,
    entropic_loss,
    objective_loss,
    reduce_loss,
    token_stats,
)

ALPHAS = {"deformed": 0.3}


def _dist_logits(probs: list[float], vocab: int) -> torch.Tensor:
    """Logits of a distribution: the given leading probabilities, the rest spread evenly."""
    rest = (1.0 - sum(probs)) / (vocab - len(probs))
    pi = torch.tensor(probs + [rest] * (vocab - len(probs)), dtype=torch.float64)
    return pi.log().float().view(1, 1, vocab)


def _deft(logits: torch.Tensor, target: int):
    st_ = token_stats(logits, torch.tensor([[target]]), shift=False)
    return entropic_loss(st_.log_p, st_.mask, "deft", None, st_.log_sum_sq)


def test_deft_worked_value_confident_conflict():
    # methods.md: p = 0.01 with another token at 0.98 -> alpha 0.96, gate 0.012
    tl = _deft(_dist_logits([0.98, 0.01], 100), target=1)
    assert tl.p.item() == pytest.approx(0.01, rel=1e-4)
    assert tl.alpha.item() == pytest.approx(0.96, abs=0.005)
    assert tl.gate.item() == pytest.approx(0.012, abs=0.0005)


def test_deft_worked_value_diffuse():
    # methods.md: p = 0.01 spread over 100 options -> alpha 0.01, gate 0.955
    tl = _deft(torch.zeros(1, 1, 100), target=7)
    assert tl.alpha.item() == pytest.approx(0.01, rel=1e-4)
    assert tl.gate.item() == pytest.approx(0.955, abs=0.0005)
    assert tl.loss.item() == pytest.approx((1 - 0.01 ** 0.01) / (0.01 + DEFT_EPS), rel=1e-4)


def _batch(seed: int = 0, B: int = 3, T: int = 6, V: int = 37, scale: float = 3.0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, V, generator=g) * scale
    labels = torch.randint(0, V, (B, T), generator=g)
    labels[0, :2] = -100  # a "prompt"
    labels[2, -3:] = -100  # "padding"
    return logits, labels


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_gradient_is_gate_times_nll_error(objective):
    """dL/dz = -gate * (e_y - pi) per trained token, against autograd; zero where masked."""
    logits, labels = _batch()
    logits.requires_grad_(True)
    st_ = token_stats(logits, labels, shift=False)
    tl = entropic_loss(st_.log_p, st_.mask, objective, ALPHAS.get(objective), st_.log_sum_sq)
    tl.loss.sum().backward()
    pi = logits.detach().softmax(-1)
    onehot = F.one_hot(labels.clamp(min=0), logits.shape[-1]).float()
    expected = -tl.gate.unsqueeze(-1) * (onehot - pi) * st_.mask.unsqueeze(-1)
    torch.testing.assert_close(logits.grad, expected, atol=1e-6, rtol=1e-4)
    assert torch.all(logits.grad[~st_.mask] == 0)


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_masked_tokens_get_zero_gradient_through_a_model(objective):
    torch.manual_seed(0)
    emb = torch.nn.Embedding(20, 8)
    head = torch.nn.Linear(8, 20)
    ids = torch.randint(0, 20, (2, 5))
    labels = ids.clone()
    labels[:, :3] = -100  # only the last two positions of each row are trained
    hidden = emb(ids)
    hidden.retain_grad()
    loss = objective_loss(head(hidden), labels, objective, ALPHAS.get(objective), chunk_size=6)
    loss.backward()
    # with shift, positions 0..1 predict labels 1..2 (masked): their hidden states get no gradient
    assert torch.all(hidden.grad[:, :2] == 0)
    assert hidden.grad[:, 2:4].abs().sum() > 0


def test_deformed_limits_match_nll_and_prob():
    logits, labels = _batch(1)
    st_ = token_stats(logits, labels, shift=False)
    m = st_.mask
    nll = entropic_loss(st_.log_p, m, "nll").loss
    small = entropic_loss(st_.log_p, m, "deformed", 1e-6).loss
    torch.testing.assert_close(small, nll, rtol=1e-4, atol=1e-5)
    one = entropic_loss(st_.log_p, m, "deformed", 1.0).loss
    prob = entropic_loss(st_.log_p, m, "prob").loss
    torch.testing.assert_close(one, prob)
    torch.testing.assert_close(prob, (1 - st_.log_p.exp()) * m)
    torch.testing.assert_close(
        nll, -F.cross_entropy(logits.transpose(1, 2), labels, reduction="none").neg()
    )


def test_deft_alpha_is_collision_probability():
    logits, labels = _batch(2)
    st_ = token_stats(logits, labels, shift=False)
    tl = entropic_loss(st_.log_p, st_.mask, "deft", None, st_.log_sum_sq)
    collision = (logits.softmax(-1) ** 2).sum(-1)
    torch.testing.assert_close(tl.alpha, collision * st_.mask)
    # and exp(-H2): the Renyi-2 entropy view
    h2 = -torch.log((logits.softmax(-1) ** 2).sum(-1))
    torch.testing.assert_close(tl.alpha, torch.exp(-h2) * st_.mask)


def test_cayley_alpha_known_values():
    """Worked by hand (methods.md): p = 0.5, 0.2, 0.9 trained, one masked token (p = 0.01) left
    out of the batch mean, so f = 0.5 * 1.6/3 = 4/15 and alpha = f + (1 - f) p/(2 - p) =
    23/45, 47/135, 13/15; loss (1 - p^alpha)/alpha, gate p^alpha."""
    lp = torch.tensor([0.5, 0.2, 0.9, 0.01]).log()
    mask = torch.tensor([True, True, True, False])
    tl = entropic_loss(lp, mask, "cayley")
    torch.testing.assert_close(tl.alpha, torch.tensor([23 / 45, 47 / 135, 13 / 15, 0.0]))
    torch.testing.assert_close(
        tl.loss, torch.tensor([0.583666, 1.232163, 0.100693, 0.0]), atol=2e-6, rtol=0
    )
    torch.testing.assert_close(
        tl.gate, torch.tensor([0.701682, 0.571025, 0.912732, 0.0]), atol=2e-6, rtol=0
    )
    # a batch of near-zero p: f + (1 - f) p/(2 - p) ~ 1e-4, clamped up to 0.001
    tiny = entropic_loss(torch.tensor([1e-4, 1e-4]).log(), torch.tensor([True, True]), "cayley")
    torch.testing.assert_close(tiny.alpha, torch.tensor([0.001, 0.001]))


def test_dft_is_stopgrad_p_times_nll():
    logits, labels = _batch(4)
    st_ = token_stats(logits, labels, shift=False)
    tl = entropic_loss(st_.log_p, st_.mask, "dft")
    torch.testing.assert_close(tl.loss, -st_.log_p.exp() * st_.log_p * st_.mask)


@pytest.mark.parametrize("chunk", [1, 5, 16, 37, 64])
def test_chunked_equals_unchunked(chunk):
    logits, labels = _batch(5)
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    sa = token_stats(a, labels, chunk_size=chunk)
    sb = token_stats(b, labels, chunk_size=10**6)
    for x, y in ((sa.log_p, sb.log_p), (sa.entropy, sb.entropy), (sa.log_sum_sq, sb.log_sum_sq)):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)
    entropic_loss(sa.log_p, sa.mask, "deft", None, sa.log_sum_sq).loss.sum().backward()
    entropic_loss(sb.log_p, sb.mask, "deft", None, sb.log_sum_sq).loss.sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6)
    # reference values from a full log-softmax
    lsm = logits[:, :-1].log_softmax(-1)
    mask = labels[:, 1:] != -100
    ref_lp = lsm.gather(-1, labels[:, 1:].clamp(min=0).unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(sa.log_p[mask], ref_lp[mask], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        sa.entropy[mask], -(lsm.exp() * lsm).sum(-1)[mask], rtol=1e-5, atol=1e-5
    )


def test_objective_loss_nll_equals_cross_entropy():
    logits, labels = _batch(6)
    ours = objective_loss(logits, labels, "nll", chunk_size=8)
    ref = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))
    torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("objective", ["nll", "deft", "cayley"])
def test_bf16_logits_close_to_fp32(objective):
    logits, labels = _batch(7, scale=2.0)
    l32 = objective_loss(logits, labels, objective, chunk_size=8)
    lbf = logits.bfloat16().requires_grad_(True)
    l16 = objective_loss(lbf, labels, objective, chunk_size=8)
    assert l16.dtype == torch.float32 and torch.isfinite(l16)
    assert l16.item() == pytest.approx(l32.item(), rel=0.02)
    l16.backward()
    assert lbf.grad.dtype == torch.bfloat16 and torch.isfinite(lbf.grad).all()


def test_extreme_logits_are_finite():
    logits = torch.tensor([[[80.0, -80.0, 0.0], [0.0, 0.0, 0.0]]], requires_grad=True)
    labels = torch.tensor([[1, 0]])  # target with p ~ e^-160
    for obj in OBJECTIVES:
        loss = reduce_loss(*_loss_and_mask(logits, labels, obj))
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(logits.grad).all(), obj
        logits.grad = None


def _loss_and_mask(logits, labels, obj):
    st_ = token_stats(logits, labels, shift=False)
    return entropic_loss(st_.log_p, st_.mask, obj, ALPHAS.get(obj), st_.log_sum_sq).loss, st_.mask


@settings(max_examples=60, deadline=None)
@given(p=st.floats(1e-6, 1.0), a=st.floats(1e-4, 1.0), b=st.floats(1e-4, 1.0))
def test_deformed_sits_between_prob_and_nll(p, a, b):
    """L_alpha(p) is non-increasing in alpha: 1 - p <= L_alpha(p) <= -log p; gate in [p, 1]."""
    lp = torch.tensor([math.log(p)])
    m = torch.tensor([True])
    la = entropic_loss(lp, m, "deformed", a)
    lb = entropic_loss(lp, m, "deformed", b)
    lo, hi = (la, lb) if a >= b else (lb, la)
    assert lo.loss.item() <= hi.loss.item() + 1e-6
    assert (1 - p) - 1e-6 <= la.loss.item() <= -math.log(p) + 1e-5
    assert p - 1e-6 <= la.gate.item() <= 1 + 1e-6


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), V=st.integers(2, 50), chunk=st.integers(1, 60))
def test_token_stats_chunking_property(seed, V, chunk):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 4, V, generator=g) * 4
    labels = torch.randint(0, V, (2, 4), generator=g)
    s = token_stats(logits, labels, chunk_size=chunk, shift=False)
    pi = logits.softmax(-1)
    torch.testing.assert_close(s.log_sum_sq.exp(), (pi ** 2).sum(-1), rtol=1e-4, atol=1e-6)
    assert torch.all(s.log_sum_sq <= 1e-6)  # sum pi^2 <= 1
    assert torch.all(s.entropy >= -1e-5) and torch.all(s.entropy <= math.log(V) + 1e-4)


@pytest.mark.parametrize("objective,alpha,match", [
    ("kl", None, "unknown objective"),
    ("deformed", None, "needs --alpha"),
    ("deformed", 0.0, "out of range"),
    ("deformed", 1.5, "out of range"),
    ("deformed", -0.2, "out of range"),
    ("deformed", float("nan"), "out of range"),
    ("deft", 0.5, "takes no alpha"),
    ("nll", 0.1, "takes no alpha"),
])
def test_bad_objective_or_alpha(objective, alpha, match):
    with pytest.raises(SelfteachError, match=match):
        check_objective(objective, alpha)


def test_deft_without_collision_stats_is_a_programming_error():
    with pytest.raises(ValueError):
        entropic_loss(torch.zeros(2), torch.ones(2, dtype=torch.bool), "deft")
