"""Token-level diagnostics of entropic SFT: where the gradient goes (arXiv 2602.11424, sec. 3).

DEFT's argument is about which tokens earn gradient: NLL gives every token the same gate
(1), the probability loss gives confident-conflict tokens (low entropy, low target p)
almost none, DEFT interpolates per token. So every `every` optimizer steps this logs to
metrics.jsonl (rows with `"kind": "diagnostics"`), over all trained tokens since the
last row:

- histograms of target probability p and predictive entropy H (nats);
- the p x H 2D histogram of token counts and of gradient mass, where a token's mass is
  the norm of its logit gradient, gate * ||e_y - pi|| = gate * sqrt(1 - 2p + sum pi^2)
  (exact, from quantities the fused head already computes);
- mean gate, mean alpha and its 10/50/90th percentiles;
- the share of gradient mass on confident tokens (H < 1 nat), on confident conflicts
  (H < 1 nat and p < 0.1) and on high-p tokens (p >= 0.5).

At the end `finish()` draws diagnostics.png and writes summary.json in the report format
{"title", "tables": [{"name", "columns", "rows"}], "notes"}.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from selfteach.runs import RunDir

P_BINS = 10
H_BINS = 10
H_MAX = 10.0  # nats; entropies above land in the last bin (log 262144 = 12.5)
CONFIDENT_H = 1.0  # nats: "the model is confident" (most of pi on a few tokens)
CONFLICT_P = 0.1  # confident about something else: target p below this
HIGH_P = 0.5


def grad_mass(p: torch.Tensor, log_sum_sq: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """||dL/dz||_2 per token = gate * sqrt(1 - 2p + sum_v pi_v^2)."""
    return gate * (1 - 2 * p + log_sum_sq.exp()).clamp(min=0).sqrt()


def _hist(
    x: torch.Tensor, bins: int, hi: float, weights: torch.Tensor | None = None
) -> list[float]:
    idx = (x / hi * bins).long().clamp(0, bins - 1)
    w = torch.ones_like(x) if weights is None else weights
    return torch.zeros(bins, dtype=torch.float64).index_add_(0, idx, w.double()).tolist()


def _hist2d(p: torch.Tensor, h: torch.Tensor, weights: torch.Tensor) -> list[list[float]]:
    pi = (p * P_BINS).long().clamp(0, P_BINS - 1)
    hi = (h / H_MAX * H_BINS).long().clamp(0, H_BINS - 1)
    flat = torch.zeros(P_BINS * H_BINS, dtype=torch.float64).index_add_(
        0, pi * H_BINS + hi, weights.double()
    )
    return flat.view(P_BINS, H_BINS).tolist()  # [p bin][entropy bin]


class Diagnostics:
    """Collects detached per-token stats from the training loss; `flush(step)` writes a row."""

    def __init__(self, run: RunDir | None = None, every: int = 10, objective: str = "nll"):
        self.run, self.every, self.objective = run, max(1, int(every)), objective
        self.rows: list[dict[str, Any]] = []
        self._buf: list[tuple[torch.Tensor, ...]] = []

    def update(
        self,
        p: torch.Tensor,
        entropy: torch.Tensor,
        log_sum_sq: torch.Tensor,
        gate: torch.Tensor,
        alpha: torch.Tensor,
        mask: torch.Tensor,
    ) -> None:
        m = mask.bool()
        self._buf.append(
            tuple(t.detach()[m].float().cpu() for t in (p, entropy, log_sum_sq, gate, alpha))
        )

    def flush(self, step: int) -> dict[str, Any] | None:
        if not self._buf:
            return None
        p, h, lsq, gate, alpha = (torch.cat(x) for x in zip(*self._buf, strict=True))
        self._buf.clear()
        mass = grad_mass(p, lsq, gate)
        total = float(mass.sum()) or 1.0
        confident = h < CONFIDENT_H
        q = (
            torch.quantile(alpha, torch.tensor([0.1, 0.5, 0.9])).tolist()
            if alpha.numel()
            else [0.0] * 3
        )
        row = {
            "kind": "diagnostics",
            "step": int(step),
            "tokens": int(p.numel()),
            "objective": self.objective,
            "mean_p": float(p.mean()),
            "mean_entropy": float(h.mean()),
            "mean_gate": float(gate.mean()),
            "mean_alpha": float(alpha.mean()),
            "alpha_p10": q[0],
            "alpha_p50": q[1],
            "alpha_p90": q[2],
            "grad_share_confident": float(mass[confident].sum()) / total,
            "grad_share_conflict": float(mass[confident & (p < CONFLICT_P)].sum()) / total,
            "grad_share_high_p": float(mass[p >= HIGH_P].sum()) / total,
            "hist_p": _hist(p, P_BINS, 1.0),
            "hist_entropy": _hist(h, H_BINS, H_MAX),
            "hist_alpha": _hist(alpha, P_BINS, 1.0),
            "tokens_p_entropy": _hist2d(p, h, torch.ones_like(p)),
            "grad_mass_p_entropy": _hist2d(p, h, mass),
        }
        self.rows.append(row)
        if self.run is not None:
            self.run.log_metrics(row)
        return row

    # ---- end of training: plot + summary ------------------------------------------------
    def finish(self, title: str, extra_notes: list[str] | None = None) -> dict[str, Any]:
        rows = self.rows
        if self.run is not None and not rows:  # resumed run: earlier rows live in metrics.jsonl
            rows = [r for r in self.run.read("metrics.jsonl") if r.get("kind") == "diagnostics"]
        cols = ["step", "tokens", "mean_p", "mean_entropy", "mean_gate", "mean_alpha", "alpha_p50",
                "grad_share_confident", "grad_share_conflict", "grad_share_high_p"]
        table = [
            [r[c] if isinstance(r[c], int | str) else float(f"{r[c]:.4g}") for c in cols]
            for r in rows
        ]
        mass2d = _sum2d([r["grad_mass_p_entropy"] for r in rows])
        tot = sum(map(sum, mass2d)) or 1.0
        h_edges = [f"{H_MAX * j / H_BINS:g}-{H_MAX * (j + 1) / H_BINS:g}" for j in range(H_BINS)]
        grid = [
            [f"{i / P_BINS:.1f}-{(i + 1) / P_BINS:.1f}"]
            + [float(f"{v / tot:.3g}") for v in mass2d[i]]
            for i in range(P_BINS)
        ]
        summary = {
            "title": title,
            "tables": [
                {"name": "token diagnostics over training", "columns": cols, "rows": table},
                {
                    "name": "share of gradient mass by target p (rows) "
                    "and entropy in nats (columns)",
                    "columns": ["p \\ H"] + h_edges,
                    "rows": grid,
                },
            ],
            "notes": [
                f"objective {self.objective}; gate = -dL/dlog p, so each token's logit gradient is "
                "-gate * (e_y - pi) and its mass is gate * sqrt(1 - 2p + sum pi^2).",
                f"confident: entropy < {CONFIDENT_H} nat; "
                f"conflict: confident and p < {CONFLICT_P}; "
                f"high p: p >= {HIGH_P}.",
                *(extra_notes or []),
            ],
        }
        if self.run is not None:
            self.run.write_json("summary.json", summary)
            if rows:
                plot(rows, self.run.file("diagnostics.png"), title)
        return summary


def _sum2d(grids: list[list[list[float]]]) -> list[list[float]]:
    out = [[0.0] * H_BINS for _ in range(P_BINS)]
    for g in grids:
        for i in range(P_BINS):
            for j in range(H_BINS):
                out[i][j] += g[i][j]
    return out


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Six panels: p and entropy histograms (first vs last row), gradient mass over (p, H),
    mean gate, gradient shares, and alpha percentiles over training."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(2, 3, figsize=(15, 8))
    for key, a, hi, label in (("hist_p", ax[0, 0], 1.0, "target p"),
                              ("hist_entropy", ax[0, 1], H_MAX, "entropy (nats)")):
        n = len(rows[0][key])
        centers = [hi * (i + 0.5) / n for i in range(n)]
        for r, style in ((rows[0], "--"), (rows[-1], "-")):
            tot = sum(r[key]) or 1.0
            a.plot(centers, [v / tot for v in r[key]], style, marker="o", label=f"step {r['step']}")
        a.set_xlabel(label)
        a.set_ylabel("share of tokens")
        a.legend()
    mass = _sum2d([r["grad_mass_p_entropy"] for r in rows])
    tot = sum(map(sum, mass)) or 1.0
    mass = [[v / tot for v in row] for row in mass]
    im = ax[0, 2].imshow(
        mass, origin="lower", aspect="auto", extent=(0, H_MAX, 0, 1), cmap="viridis"
    )
    ax[0, 2].set_xlabel("entropy (nats)")
    ax[0, 2].set_ylabel("target p")
    ax[0, 2].set_title("share of gradient mass (all steps)")
    fig.colorbar(im, ax=ax[0, 2])
    ax[1, 0].plot(steps, [r["mean_gate"] for r in rows], marker="o")
    ax[1, 0].set_title("mean gate (-dL/dlog p)")
    ax[1, 0].set_ylim(0, 1.05)
    for key in ("grad_share_confident", "grad_share_conflict", "grad_share_high_p"):
        ax[1, 1].plot(
            steps, [r[key] for r in rows], marker="o", label=key.removeprefix("grad_share_")
        )
    ax[1, 1].set_title("share of gradient mass")
    ax[1, 1].set_ylim(-0.02, 1.02)
    ax[1, 1].legend()
    for key in ("alpha_p10", "alpha_p50", "alpha_p90"):
        ax[1, 2].plot(steps, [r[key] for r in rows], marker="o", label=key.removeprefix("alpha_"))
    ax[1, 2].set_title("alpha percentiles")
    ax[1, 2].legend()
    for a in ax[1]:
        a.set_xlabel("step")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
