"""Every PNG a method writes into its run directory, drawn one way (matplotlib, Agg):
anytime quality vs budget, judge accuracy vs k, improve's accuracy bars. `selfteach
report` embeds whatever PNGs a run directory holds."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def figure(path: str | Path, size: tuple[float, float], dpi: int = 110) -> Iterator[Any]:
    """`with figure(path, (w, h)) as ax:` draw on `ax`; the PNG is saved (folders made)
    and the figure closed on exit, also when drawing fails."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size)
    try:
        yield ax
        fig.tight_layout()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)


def _log2_ticks(ax: Any, ticks: list[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()


def plot_curves(curves: list[dict[str, Any]], out_png: str | Path,
                title: str | None = None) -> Path:
    """Anytime quality vs budget, one solid line per curve and its best-so-far dashed."""
    with figure(out_png, (6.4, 4.2), dpi=120) as ax:
        for c in curves:
            line, = ax.plot(c["budgets"], c["quality"], marker="o",
                            label=f"{c.get('label', c['method'])} (AI {c['anytime_index']:.3f})")
            ax.plot(c["budgets"], c["best_so_far"], linestyle="--", color=line.get_color(),
                    alpha=0.6)
        _log2_ticks(ax, sorted({b for c in curves for b in c["budgets"]}))
        ax.set_xlabel("token budget")
        ax.set_ylabel("quality (accuracy / CSR)")
        ax.set_ylim(0, max(1e-3, max(max(c["quality"]) for c in curves)) * 1.15)
        ax.set_title(title or "anytime quality (dashed: best so far)", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return Path(out_png)


def plot_curve(curve: dict[str, dict[int, float]], path: Path, title: str) -> Path | None:
    """Judge accuracy vs k (log2 x axis), one line per subset/overall, meta-RM lines dashed."""
    if not curve:
        return None
    with figure(path, (6, 4)) as ax:
        for name, pts in curve.items():
            ks = sorted(pts)
            ax.plot(ks, [pts[k] for k in ks], marker="o", linestyle="--" if "meta" in name else "-",
                    linewidth=2.5 if name.startswith("overall") else 1.2, label=name)
        _log2_ticks(ax, sorted({k for pts in curve.values() for k in pts}))
        ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
        ax.set_xlabel("k (sampled judgments voting)")
        ax.set_ylabel("pairwise accuracy")
        ax.set_ylim(0, 1)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    return path


def plot_bars(path: Path, groups: list[str], series: dict[str, list[dict[str, float] | None]],
              ylabel: str, title: str) -> None:
    """Grouped bars with 95% intervals: `series[label][i]` is {"mean", "lo", "hi"} for
    group i (None: no bar)."""
    width = 0.72 / max(1, len(series))
    with figure(path, (1.6 * len(groups) + 2, 3.2)) as ax:
        for j, (label, values) in enumerate(series.items()):
            bars = [(i + width * j, m) for i, m in enumerate(values) if m]
            if bars:
                err = [[m["mean"] - m["lo"] for _, m in bars],
                       [m["hi"] - m["mean"] for _, m in bars]]
                ax.bar([x for x, _ in bars], [m["mean"] for _, m in bars], width=width * 0.95,
                       yerr=err, capsize=3, label=label)
        centres = [i + width * (len(series) - 1) / 2 for i in range(len(groups))]
        ax.set_xticks(centres, groups, rotation=20, ha="right", fontsize=7)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
        ax.set_title(title, fontsize=9)
