"""`selfteach eval anytime`: quality under token budgets and the Anytime Index
(arXiv 2601.11038, 2505.13438). See selfteach.evaluate.anytime and docs/anytime.md."""

from __future__ import annotations

from pathlib import Path

from selfteach.cliconfig import RESUME, config_command, out_option
from selfteach.evaluate.anytime import AnytimeConfig, parse_budgets


def unescape(text: str | None) -> str | None:
    """Let shell users write \\n and \\t in --suffix, --prompt-template, --system."""
    if text is None:
        return None
    return text.replace("\\n", "\n").replace("\\t", "\t")


@config_command(
    AnytimeConfig,
    options=[out_option(None), RESUME],
    server=True,
    parse={
        "budgets": parse_budgets,
        "prompt_template": unescape,
        "suffix": unescape,
        "system": unescape,
        "answer_stop": lambda v: [unescape(x) for x in v] or None,
    },
    repeat=("answer_stop",),
)
def anytime(config: AnytimeConfig, out: Path, resume: bool) -> None:
    """Anytime evaluation: one trace per item up to the largest budget, a forced answer at
    every budget, quality per budget, best-so-far curve and the Anytime Index."""
    from selfteach.evaluate.anytime import evaluate_anytime
    from selfteach.report.console import render_summary

    result = evaluate_anytime(config, out, resume=resume)
    render_summary(result["summary"])
    print(
        f"Anytime Index {result['curve']['anytime_index']:.4f}; "
        f"outputs, summary.json and anytime.png in {out}"
    )
