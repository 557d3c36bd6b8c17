"""ICM: unsupervised label elicitation (Wen et al. 2025, arXiv 2506.10139).

    from selfteach.elicit import icm, ICMConfig
    result = icm(claims, backend, task="exclusive", config=ICMConfig(alpha=50))
    result.labels   # {claim id: bool}
    result.margins  # {claim id: log P(True) - log P(False) in the final context}
    result.metrics  # U, P, I, accuracy vs gold (if any), zero-shot accuracy, cost, balance, warnings

CLI: `selfteach elicit --model M --claims FILE|builtin:capitals --task exclusive --out runs/x`.
See docs/icm.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selfteach.elicit.rules import TASKS, make_rule
from selfteach.elicit.search import ICMConfig, ICMResult, acceptance_probability, icm, temperature
from selfteach.elicit.templates import Template, comparison_claims, exclusive_claims


def demo_claims(n_countries: int = 16, seed: int = 0, family: str = "capitals"):
    """Built-in fact claims (1 true + wrong candidates per subject) for the first
    `n_countries` subjects of `family` (default capitals): the small fact task of the demo.
    Subjects are groups; exactly one candidate of each is right."""
    from selfteach.data.builtin import builtin_claims

    claims = builtin_claims(family, seed=seed)
    keep: list[str] = []
    for c in claims:
        if c.group not in keep and len(keep) < n_countries:
            keep.append(c.group)
    return [c for c in claims if c.group in keep]


def demo_summary(model: str = "gemma3-270m", out: str | Path | None = None, n_countries: int = 16,
                 iters: int | None = None, seed: int = 0, progress: bool = True, family: str = "capitals",
                 task: str = "comparison", max_context_tokens: int = 512, init: str = "random") -> dict[str, Any]:
    """ICM on a small built-in fact task, with its floor and ceiling, for `selfteach demo`.

    Returns {"zero-shot", "zero-shot + rule", "random few-shot", "ICM", "golden context",
    "golden context + rule"} label accuracies (fractions), the same keys with " AUROC", plus
    "claims", "seconds", "model_calls", "prompt_tokens" and "warnings".
    With `out`, the run directory gets labels.jsonl, metrics.jsonl and icm_result.json.
    """
    import time

    from selfteach.backends import load_backend
    from selfteach.runs import RunDir

    t0 = time.time()
    claims = demo_claims(n_countries, seed, family)
    cfg = ICMConfig(iters=iters if iters is not None else 2 * len(claims), max_context_tokens=max_context_tokens,
                    seed=seed, baselines=True, init=init)
    run = RunDir.create(out, {"model": model, "claims": f"builtin:{family}[{n_countries} subjects]",
                              "task": task, **cfg.model_dump(mode="json")}, resume=True, seed=seed) \
        if out is not None else None
    backend = load_backend(model)
    res = icm(claims, backend, task=task, config=cfg, run=run, progress=progress)
    b = res.baselines
    rows = {"zero-shot": b["zero_shot"], "zero-shot + rule": b["zero_shot_rule"],
            "random few-shot": b["random_fewshot"],
            "ICM": {"accuracy": res.metrics["accuracy"], "auroc": res.metrics["auroc"]},
            "golden context": b["golden"], "golden context + rule": b["golden_rule"]}
    summary: dict[str, Any] = {k: v["accuracy"] for k, v in rows.items()}
    summary.update({f"{k} AUROC": v["auroc"] for k, v in rows.items()})
    summary.update({"claims": len(claims), "seconds": round(time.time() - t0, 1),
                    "model_calls": res.metrics["model_calls"], "prompt_tokens": res.metrics["prompt_tokens"],
                    "warnings": res.metrics["warnings"]})
    return summary


__all__ = ["icm", "ICMConfig", "ICMResult", "Template", "TASKS", "make_rule", "temperature",
           "acceptance_probability", "comparison_claims", "exclusive_claims", "demo_claims", "demo_summary"]
