"""ICM: unsupervised label elicitation (Wen et al. 2025, arXiv 2506.10139).

    from selfteach.elicit import icm, ICMConfig
    result = icm(claims, backend, task="exclusive", config=ICMConfig(alpha=50))
    result.labels   # {claim id: bool}
    result.margins  # {claim id: log P(True) - log P(False) in the final context}
    result.metrics  # U, P, I, accuracy vs gold (if any), zero-shot accuracy, cost, balance,
                    # warnings

CLI: `selfteach elicit --model M --claims FILE|builtin:capitals --task exclusive --out runs/x`.
See docs/icm.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selfteach.elicit.rules import TASKS, make_rule
from selfteach.elicit.search import ICMConfig, ICMResult, acceptance_probability, icm, temperature
from selfteach.elicit.templates import Template, comparison_claims, exclusive_claims


def demo_claims(n_countries: int = 16, seed: int = 0):
    """Built-in capital claims (1 true + 1 wrong capital per country) for `n_countries`
    countries: the small fact task of the demo (group = country; exactly one of the two
    candidates is right, so the demo uses the "comparison" rule: not both True, not both
    False)."""
    from selfteach.data.builtin import builtin_claims

    claims = builtin_claims("capitals", seed=seed)
    keep: list[str] = []
    for c in claims:
        if c.group is not None and c.group not in keep and len(keep) < n_countries:
            keep.append(c.group)
    return [c for c in claims if c.group in keep]


def demo_summary(model: str = "gemma3-270m", out: str | Path | None = None, n_countries: int = 16,
                 iters: int | None = None, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """ICM on a small built-in fact task, with its floor and ceiling, for `selfteach demo`.

    Returns {"zero-shot", "zero-shot + rule", "random few-shot", "ICM", "golden context"} label
    accuracies (fractions) plus "claims", "seconds", "model_calls", "prompt_tokens" and
    "warnings".
    With `out`, the run directory gets labels.jsonl, metrics.jsonl and icm_result.json.
    """
    import time

    from selfteach.backends import load_backend
    from selfteach.runs import RunDir

    t0 = time.time()
    claims = demo_claims(n_countries, seed)
    cfg = ICMConfig(iters=iters if iters is not None else 2 * len(claims), max_context_tokens=512,
                    seed=seed, baselines=True)
    run = (
        RunDir.create(
            out,
            {
                "model": model,
                "claims": f"builtin:capitals[{n_countries} countries]",
                "task": "comparison",
                **cfg.model_dump(mode="json"),
            },
            resume=True,
            seed=seed,
        )
        if out is not None
        else None
    )
    backend = load_backend(model)
    res = icm(claims, backend, task="comparison", config=cfg, run=run, progress=progress)
    b = res.baselines
    return {
        "zero-shot": b["zero_shot"]["accuracy"],
        "zero-shot + rule": b["zero_shot_rule"]["accuracy"],
        "random few-shot": b["random_fewshot"]["accuracy"],
        "ICM": res.metrics["accuracy"],
        "golden context": b["golden"]["accuracy"],
        "claims": len(claims),
        "seconds": round(time.time() - t0, 1),
        "model_calls": res.metrics["model_calls"],
        "prompt_tokens": res.metrics["prompt_tokens"],
        "warnings": res.metrics["warnings"],
    }


__all__ = [
    "icm",
    "ICMConfig",
    "ICMResult",
    "Template",
    "TASKS",
    "make_rule",
    "temperature",
    "acceptance_probability",
    "comparison_claims",
    "exclusive_claims",
    "demo_claims",
    "demo_summary",
]
