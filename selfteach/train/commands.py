"""`selfteach train dpo | grpo | sft`: options generated from DPOArgs / GRPOArgs / SFTRunConfig.

Each command is a thin wrapper over the Python API (`train_dpo`, `train_grpo`, `train_sft`)
and runs unchanged under `accelerate launch` (e.g. `accelerate launch --config_file
examples/accelerate/zero2.yaml -m selfteach train dpo --pairs pairs.jsonl`).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from selfteach.cliconfig import DATA, RESUME, Opt, config_command, deferred_group, out_option
from selfteach.train.dpo import DPOArgs
from selfteach.train.grpo import GRPOArgs
from selfteach.train.sft_command import SFT_HELP, sft_command

RESUME_CKPT = RESUME.but(help="continue from the last checkpoint in --out")
train_app = typer.Typer(
    no_args_is_help=True,
    help="Train: sft (DEFT family), dpo, grpo.",
    cls=deferred_group(("sft", SFT_HELP, sft_command)),
)


def _finish(res, out: str, settings: dict) -> None:
    """Record the settings as OUT/config.yaml (for `--config` replay; written once the run
    has finished, so a failed start leaves nothing) and print the result."""
    import yaml

    from selfteach.data.jsonl import atomic_write_text
    from selfteach.train.common import is_main_process

    if is_main_process():
        atomic_write_text(Path(out) / "config.yaml", yaml.safe_dump(settings, sort_keys=False))
        typer.echo(
            json.dumps(
                {
                    "model_dir": str(res.model_dir) if res.model_dir else None,
                    **{k: v for k, v in res.metrics.items() if not isinstance(v, dict | list)},
                },
                indent=2,
                default=str,
            )
        )


@train_app.command("dpo")
@config_command(
    DPOArgs,
    options=[
        Opt(
            "pairs",
            str,
            ...,
            "JSONL with prompt/chosen/rejected (TRL format)",
            panel=DATA,
            key="pairs",
        ),
        out_option("runs/dpo", "output directory (model/ and train logs)"),
        RESUME_CKPT,
    ],
)
def dpo(config: DPOArgs, pairs: str, out: str, resume: bool) -> None:
    """DPO on preference pairs (TRL DPOTrainer; arXiv 2305.18290)."""
    from selfteach.train.dpo import read_pairs, train_dpo

    data = read_pairs(pairs)  # line-numbered errors before any model is loaded
    _finish(
        train_dpo(data, config, out=out, resume=resume),
        out,
        {**config.model_dump(mode="json"), "pairs": pairs},
    )


@train_app.command("grpo")
@config_command(
    GRPOArgs,
    server=True,
    options=[
        Opt(
            "problems",
            str,
            ...,
            "problems: JSONL/parquet/dataset dir or builtin:arithmetic",
            panel=DATA,
            key="problems",
        ),
        Opt("limit", int | None, None, "first N problems only", panel=DATA, key="limit"),
        Opt(
            "field",
            list[str] | None,
            None,
            "field map, e.g. question=Body+Question",
            panel=DATA,
            key="fields",
            metavar="TARGET=SOURCE",
        ),
        out_option("runs/grpo", "output directory"),
        RESUME_CKPT,
    ],
)
def grpo(
    config: GRPOArgs,
    problems: str,
    limit: int | None,
    field: list[str] | None,
    out: str,
    resume: bool,
) -> None:
    """GRPO (TRL GRPOTrainer; arXiv 2402.03300) with Dr. GRPO / DAPO loss variants."""
    from selfteach.data.loaders import load_problems, parse_field_map
    from selfteach.train.grpo import train_grpo
    from selfteach.train.rewards import resolve_reward

    resolve_reward(config.reward)  # a bad --reward fails before loading data or models
    data = load_problems(problems, fields=parse_field_map(field), limit=limit, seed=config.seed)
    _finish(
        train_grpo(data, config, out=out, resume=resume),
        out,
        {
            **config.model_dump(mode="json"),
            "problems": problems,
            "limit": limit,
            "fields": field or [],
        },
    )
