"""Entropic SFT objectives: the deformed-log family, DFT, Cayley and DEFT (per token).

"Gradients Must Earn Their Influence: Unifying SFT with Generalized Entropic Objectives",
arXiv 2602.11424. For a target token with model probability p (predictive distribution pi):

    L_alpha(p) = (1 - p^alpha) / alpha        deformed (Tsallis) log, alpha = 1 - q
    dL/dz      = -p^alpha (e_y - pi)          alpha held fixed (stop-gradient)

so every objective is NLL's error (e_y - pi) times a "trust gate" p^alpha:

    objective  alpha (stop-gradient)                    loss                      gate
    nll        0                                        -log p                    1
    deformed   fixed, 0 < alpha <= 1                    (1 - p^alpha) / alpha     p^alpha
    prob       1                                        1 - p                     p
    dft        (arXiv 2508.05629)                       -sg(p) log p              p
    cayley     f + (1-f) p/(2-p), f = mean_batch(p)/2   (1 - p^alpha) / alpha     p^alpha
    deft       sum_v pi_v^2  (collision prob., exp(-H2)) (1 - p^alpha)/(alpha+1e-6)
                                                         p^alpha alpha/(alpha+1e-6)

`gate` below is exactly -dL/dlog p, so the logit gradient of every token is
-gate * (e_y - pi), and its norm is gate * sqrt(1 - 2p + sum_v pi_v^2) (used by the
diagnostics as the token's gradient mass).

p^alpha is computed as exp(alpha log p) and 1 - p^alpha as -expm1(alpha log p), which is
exact for small alpha (alpha -> 0 recovers -log p without cancellation).

Everything here works on per-token `log_p` (with gradient) and `log_sum_sq` =
log sum_v pi_v^2 (no gradient). In training these come from TRL's fused LM head, which
never builds the (tokens, vocab) logits; `token_stats` computes the same quantities from
a logits tensor in vocabulary chunks, for tests and for callers that already have logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from selfteach.errors import SelfteachError

OBJECTIVES = ("nll", "deformed", "prob", "dft", "cayley", "deft")
DEFT_EPS = 1e-6  # the paper's denominator guard: loss = (1 - p^alpha) / (alpha + 1e-6)
CAYLEY_CLAMP = (0.001, 1.0)
IGNORE_INDEX = -100


def check_objective(objective: str, alpha: float | None) -> float | None:
    """Validate an (objective, alpha) pair before training; returns the alpha to use.

    Only `deformed` takes an alpha (0 < alpha <= 1: between NLL and the probability loss);
    the others fix or compute it themselves, so passing one is an error rather than being
    silently ignored.
    """
    if objective not in OBJECTIVES:
        raise SelfteachError(
            f"--objective {objective!r}: unknown objective (choose: {', '.join(OBJECTIVES)})"
        )
    if objective == "deformed":
        if alpha is None:
            raise SelfteachError(
                "--objective deformed needs --alpha A with 0 < A <= 1 "
            "(A -> 0 is nll, A = 1 is prob)"
            )
        if not (0.0 < float(alpha) <= 1.0):
            raise SelfteachError(f"--alpha {alpha}: out of range for deformed, need 0 < alpha <= 1")
        return float(alpha)
    if alpha is not None:
        fixed = {"nll": "0", "prob": "1", "dft": "none (gate = p)", "cayley": "computed per token",
                 "deft": "computed per token"}[objective]
        raise SelfteachError(
            f"--alpha {alpha}: --objective {objective} takes no alpha (its alpha is {fixed}); "
            "use --objective deformed --alpha A for a fixed alpha"
        )
    return None


@dataclass
class TokenLoss:
    """Per-token results, all shaped like `log_p`; zero where masked.

    `loss` carries the gradient. `gate` (= -dL/dlog p), `alpha` and `p` are detached.
    """

    loss: torch.Tensor
    gate: torch.Tensor
    alpha: torch.Tensor
    p: torch.Tensor


def entropic_loss(
    log_p: torch.Tensor,
    mask: torch.Tensor,
    objective: str = "nll",
    alpha: float | None = None,
    log_sum_sq: torch.Tensor | None = None,
) -> TokenLoss:
    """Per-token loss and gate of `objective` (see the module table).

    log_p: log-probability of each target token (gradient flows through it only).
    mask: True where the token is trained (labels != -100).
    log_sum_sq: log sum_v pi_v^2 per token (needed by `deft`; detached).
    Computed in fp32 whatever the input dtype (bf16 log-probs lose the small-gate digits).
    """
    alpha = check_objective(objective, alpha)
    mask = mask.bool()
    lp = torch.where(mask, log_p.float(), torch.zeros_like(log_p, dtype=torch.float32))
    p = lp.detach().exp()
    zero = torch.zeros_like(p)
    if objective == "nll":
        loss, gate, a = -lp, torch.ones_like(p), zero
    # -sg(p) log p (arXiv 2508.05629); same gradient as prob, different value
    elif objective == "dft":
        loss, gate, a = -p * lp, p, zero
    else:
        eps = 0.0
        if objective in ("deformed", "prob"):
            a = torch.full_like(p, 1.0 if objective == "prob" else alpha)
        elif objective == "cayley":
            f = 0.5 * p[mask].mean() if mask.any() else p.new_tensor(0.0)
            a = (f + (1 - f) * p / (2 - p)).clamp(*CAYLEY_CLAMP)
        else:  # deft
            if log_sum_sq is None:
                raise ValueError("deft needs log_sum_sq (log of sum_v pi_v^2 per token)")
            a, eps = log_sum_sq.detach().float().exp().clamp(max=1.0), DEFT_EPS
        # (1 - p^a) / (a + eps), with 1 - p^a = -expm1(a log p): exact as a -> 0
        loss = -torch.expm1(a * lp) / (a + eps)
        gate = torch.exp(a * lp.detach()) * (a / (a + eps) if eps else 1.0)
    m = mask.to(p.dtype)
    return TokenLoss(loss=loss * m, gate=gate * m, alpha=a * m, p=p * m)


def reduce_loss(
    per_token: torch.Tensor, mask: torch.Tensor, num_items: int | torch.Tensor | None = None
) -> torch.Tensor:
    """Sum over trained tokens / their count (TRL's token-level mean; `num_items` is the
    whole accumulated batch's count when gradient accumulation passes it)."""
    n = mask.sum() if num_items is None else num_items
    return per_token.sum() / torch.as_tensor(n, device=per_token.device).clamp(min=1)


@dataclass
class TokenStats:
    """What the objectives and diagnostics need per next-token position (shape [B, T-1]):
    log_p (with gradient), entropy and log_sum_sq = log sum_v pi_v^2 (both detached), mask."""

    log_p: torch.Tensor
    entropy: torch.Tensor
    log_sum_sq: torch.Tensor
    mask: torch.Tensor


def token_stats(
    logits: torch.Tensor, labels: torch.Tensor, chunk_size: int = 8192, shift: bool = True
) -> TokenStats:
    """Per-token statistics from logits [B, T, V], folding the vocabulary in chunks.

    log p_y = z_y - logsumexp(z): the log-sum-exp is an online fold over vocabulary chunks,
    so no full-vocabulary fp32 log-softmax copy is made (cross_entropy makes one; at
    Gemma-3's 262k vocabulary that copy is the largest tensor of the step). Entropy and
    sum pi^2 are folded the same way under no_grad. `shift=True` predicts labels[:, 1:]
    from logits[:, :-1] (causal LM convention).
    """
    if shift:
        logits, labels = logits[:, :-1], labels[:, 1:]
    mask = labels != IGNORE_INDEX
    target = labels.clamp(min=0)
    vocab = logits.shape[-1]
    z_y = logits.gather(-1, target.unsqueeze(-1)).squeeze(-1).float()
    # Online log-sum-exp with gradient: combine per-chunk LSEs (each a view, no copy of logits).
    lse = None
    for s in range(0, vocab, chunk_size):
        c = torch.logsumexp(logits[..., s:s + chunk_size].float(), dim=-1)
        lse = c if lse is None else torch.logaddexp(lse, c)
    log_p = z_y - lse
    with torch.no_grad():
        lse_d = lse.detach()
        ent = torch.zeros_like(lse_d)
        sq = torch.zeros_like(lse_d)
        for s in range(0, vocab, chunk_size):
            lp_c = logits[..., s:s + chunk_size].float() - lse_d.unsqueeze(-1)
            pc = lp_c.exp()
            ent -= (pc * lp_c).sum(-1)
            sq += (pc * pc).sum(-1)
        log_sq = sq.clamp(min=1e-30).log()
    zero = torch.zeros((), dtype=log_p.dtype, device=log_p.device)
    return TokenStats(log_p=torch.where(mask, log_p, zero), entropy=torch.where(mask, ent, zero),
                      log_sum_sq=torch.where(mask, log_sq, zero), mask=mask)


def objective_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    objective: str = "nll",
    alpha: float | None = None,
    num_items: int | None = None,
    chunk_size: int = 8192,
) -> torch.Tensor:
    """Scalar loss of `objective` from logits and labels (-100 = not trained), e.g. for a
    custom training loop: `objective_loss(model(ids).logits, labels, "deft").backward()`."""
    st = token_stats(logits, labels, chunk_size=chunk_size)
    tl = entropic_loss(st.log_p, st.mask, objective, alpha, st.log_sum_sq)
    return reduce_loss(tl.loss, st.mask, num_items)
