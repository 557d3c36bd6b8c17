"""`selfteach judge run | eval | rft-data | train-meta` (SPCT, arXiv 2504.02495): options
generated from JudgeRunConfig / MetaConfig; the work is in selfteach.judge.pipeline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from selfteach.cliconfig import DATA, RESUME, Opt, config_command, deferred_group, out_option
from selfteach.judge.runner import JudgeRunConfig, parse_ks

TRAIN_META_HELP = (
    "Train the meta RM (a linear head on the backbone's frozen features) on judgments labeled "
    "right (best ranked strictly first) or wrong."
)
FROM_RUN = Opt(
    "from_run",
    Path | None,
    None,
    "reuse the judgments of an earlier judge run/eval directory "
    "(e.g. to add --meta-rm ratings without sampling again)",
    panel=DATA,
    key="from_run",
)
# `k` (JudgeConfig's sample count) is set from --k: K = max(ks) samples are drawn
_JUDGE: dict[str, Any] = {
    "names": {"ks": "--k"},
    "parse": {"ks": parse_ks},
    "exclude": ("k",),
    "server": True,
}


def _train_meta() -> Callable[..., Any]:
    from selfteach.judge.meta import MetaConfig

    @config_command(
        MetaConfig,
        options=[
            Opt(
                "judgments",
                list[Path],
                ...,
                "judgments.jsonl or run directories of judge run/eval (repeatable); "
                "items need a known best",
                panel=DATA,
                key="judgments",
                metavar="PATH",
            ),
            out_option("runs/meta-rm", "output directory (meta_rm.json)"),
        ],
    )
    def train_meta(config: MetaConfig, judgments: list[Path], out: Path) -> None:
        from selfteach.judge.pipeline import train_meta_run

        _show(train_meta_run(config, judgments, out), out)

    train_meta.__doc__ = TRAIN_META_HELP
    return train_meta


judge_app = typer.Typer(
    no_args_is_help=True,
    help="Generative reward model (SPCT): run, eval, rft-data, train-meta.",
    cls=deferred_group(("train-meta", TRAIN_META_HELP, _train_meta)),
)


def _show(summary: dict, out: Path) -> None:
    from selfteach.report.console import render_summary

    render_summary(summary)
    Console().print(f"run directory: {out}")


@judge_app.command("run")
@config_command(
    JudgeRunConfig,
    defaults={"ks": [8], "data": ...},
    options=[out_option("runs/judge"), RESUME],
    **_JUDGE,
)
def run(config: JudgeRunConfig, out: Path, resume: bool) -> None:
    """Judge items: k sampled judgments each (principles, critiques, scores), voted.
    Writes judgments.jsonl (every sample, its scores in the original order, the vote)."""
    from selfteach.judge.pipeline import judge_run

    _show(judge_run(config, out, resume), out)


@judge_app.command("eval")
@config_command(
    JudgeRunConfig,
    defaults={"ks": [1, 8, 32]},
    options=[out_option("runs/judge-eval"), RESUME, FROM_RUN],
    **_JUDGE,
)
def eval_(config: JudgeRunConfig, out: Path, resume: bool, from_run: Path | None) -> None:
    """Pairwise accuracy (RewardBench rule: strictly higher wins, tie/failure = 0.5) per
    subset and overall for every k, with and without the meta RM; summary.json + PNG curve."""
    from selfteach.judge.pipeline import judge_eval

    _show(judge_eval(config, out, resume, from_run), out)


@judge_app.command("rft-data")
@config_command(
    JudgeRunConfig,
    defaults={"ks": [8]},
    options=[
        out_option("runs/judge-rft"),
        RESUME,
        FROM_RUN.but(help="reuse the judgments of a `judge run/eval` directory"),
    ],
    names={"ks": "--k"},
    parse={"ks": parse_ks},
    exclude=("k", "mode", "orders", "meta_rm", "k_meta", "force_scores", "serve"),
)
def rft_data(config: JudgeRunConfig, out: Path, resume: bool, from_run: Path | None) -> None:
    """SPCT training data: rft.jsonl (judgments ranking the known best strictly first; items
    where all samples were right are dropped) and grpo.jsonl (judge prompts for
    `train grpo --reward judge-rule`)."""
    from selfteach.judge.pipeline import rft_data as build

    _show(build(config, out, resume, from_run), out)
