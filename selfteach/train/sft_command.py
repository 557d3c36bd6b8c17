"""`selfteach train sft`: built when used, since its config module imports the trainer (and
TRL), which `selfteach --help` and the other commands should not pay for."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

SFT_HELP = (
    "Fine-tune with an entropic objective (DEFT family, arXiv 2602.11424); completion-only loss."
)


def sft_command() -> Callable[..., Any]:
    """The `train sft` command, options generated from SFTRunConfig."""
    import typer

    from selfteach.cliconfig import RESUME, config_command, out_option
    from selfteach.train.sft import SFTRunConfig

    @config_command(
        SFTRunConfig,
        options=[
            out_option("runs/sft"),
            RESUME.but(help="continue from the last checkpoint in --out"),
        ],
    )
    def sft(config: SFTRunConfig, out: Path, resume: bool) -> None:
        import json

        from selfteach.errors import SelfteachError
        from selfteach.train.sft import train_sft

        if not config.data:
            raise SelfteachError("--data is required (a JSONL file or builtin:arithmetic)")
        options = config.model_dump(exclude={"model", "data", "objective", "alpha"})
        summary = train_sft(
            config.model,
            config.data,
            out,
            objective=config.objective,
            alpha=config.alpha,
            resume=resume,
            progress=True,
            **options,
        )
        typer.echo(json.dumps(summary, indent=2))

    sft.__doc__ = SFT_HELP
    return sft
