"""`selfteach eval anytime`: quality under token budgets and the Anytime Index
(arXiv 2601.11038, 2505.13438). See selfteach.evaluate.anytime and docs/anytime.md."""

from __future__ import annotations

from pathlib import Path

import typer

from selfteach.backends.served import SERVE_HELP
from selfteach.errors import SelfteachError


def _unescape(text: str | None) -> str | None:
    """Let shell users write \\n and \\t in --suffix / --prompt-template."""
    if text is None:
        return None
    return text.replace("\\n", "\n").replace("\\t", "\t")


def anytime(
    model: str = typer.Option("smollm2-135m", help="model alias, directory, GGUF, hub id or server URL"),
    data: str = typer.Option("builtin:arithmetic", help="JSONL/parquet/dataset dir or builtin:NAME (gold answers)"),
    budgets: str = typer.Option("32,64,128,256,512", help="increasing token budgets, comma-separated"),
    samples: int = typer.Option(1, min=1, help="traces per item (quality is averaged over them)"),
    method: str = typer.Option("plain", help="plain | pdp | pdp+ (preference-data prompting)"),
    out: Path = typer.Option(..., help="run directory"),
    resume: bool = typer.Option(False, help="continue an interrupted run in --out"),
    limit: int | None = typer.Option(None, min=1, help="only the first N items"),
    suffix: str | None = typer.Option(None, help="forced-answer suffix (\\n allowed); default by model family"),
    prompt_template: str | None = typer.Option(None, help="reasoning prompt with a {question} slot"),
    scorer: str = typer.Option("auto", help="auto | math | choice | trip (NaturalPlan CSR)"),
    answer_tokens: int = typer.Option(100, min=1, help="max tokens per forced answer"),
    temperature: float | None = typer.Option(None, min=0.0, help="trace temperature (default 0, or 0.7 if samples>1)"),
    seed: int = typer.Option(0, help="sampling seed"),
    batch_size: int = typer.Option(8, min=1, help="items per generation batch"),
    field: list[str] | None = typer.Option(None, "--field", help="field map TARGET=SOURCE, e.g. question=prompt"),
    backend: str = typer.Option("auto", help="hf | openai | auto"),
    no_shared_prefix: bool = typer.Option(False, help="re-read each truncated prefix instead of reusing its KV cache"),
    pdp_k: int = typer.Option(4, min=2, help="PDP: attempts sampled per item"),
    pdp_budget: int | None = typer.Option(None, min=1, help="PDP: attempt budget (default: median budget)"),
    pdp_pairs: int = typer.Option(1, min=1, help="PDP: pairs (pdp) or winners (pdp+) shown"),
    pdp_judge: str = typer.Option("pointwise", help="PDP self-ranking: pointwise | pairwise | vote"),
    serve: bool = typer.Option(False, "--serve", help=SERVE_HELP),
) -> None:
    """Anytime evaluation: one trace per item up to the largest budget, a forced answer at
    every budget, quality per budget, best-so-far curve and the Anytime Index."""
    from pydantic import ValidationError

    from selfteach.data.loaders import parse_field_map
    from selfteach.evaluate.anytime import (
        DEFAULT_TEMPLATE,
        AnytimeConfig,
        evaluate_anytime,
        parse_budgets,
    )

    if method not in ("plain", "pdp", "pdp+"):
        raise SelfteachError(f"--method {method!r}: choose plain, pdp or pdp+")
    if scorer not in ("auto", "math", "choice", "trip"):
        raise SelfteachError(f"--scorer {scorer!r}: choose auto, math, choice or trip")
    if pdp_judge not in ("pointwise", "pairwise", "vote"):
        raise SelfteachError(f"--pdp-judge {pdp_judge!r}: choose pointwise, pairwise or vote")
    try:
        cfg = AnytimeConfig(
            model=model, backend=backend, data=data, fields=parse_field_map(field), limit=limit,
            budgets=parse_budgets(budgets), samples=samples, method=method, scorer=scorer,
            prompt_template=_unescape(prompt_template) or DEFAULT_TEMPLATE, suffix=_unescape(suffix),
            answer_tokens=answer_tokens, temperature=temperature, seed=seed, batch_size=batch_size,
            shared_prefix=not no_shared_prefix, pdp_k=pdp_k, pdp_budget=pdp_budget, pdp_pairs=pdp_pairs,
            pdp_judge=pdp_judge, serve=serve)
    except ValidationError as e:
        err = e.errors()[0]
        raise SelfteachError(f"--{'-'.join(str(x) for x in err['loc'])}: {err['msg']}") from None
    result = evaluate_anytime(cfg, out, resume=resume)
    _print(result, out)


def _print(result: dict, out: Path) -> None:
    from selfteach.report.console import render_summary

    render_summary(result["summary"])
    print(f"Anytime Index {result['curve']['anytime_index']:.4f}; outputs, summary.json and anytime.png in {out}")


def register(app: typer.Typer | None = None) -> None:
    """Add `anytime` to `selfteach eval`. Given the root app (or nothing) it goes on
    `selfteach.cli.eval_app`; any other Typer app gets the command directly (tests)."""
    import selfteach.cli as cli

    target = cli.eval_app if app is None or app is cli.app else app
    if not any(c.name == "anytime" for c in target.registered_commands):  # idempotent
        target.command("anytime")(anytime)
