"""`selfteach improve`: the ICM+DPO self-improvement loop, options generated from ImproveConfig."""

from __future__ import annotations

from selfteach.cliconfig import PROGRESS, RESUME, comma_list, config_command, key_values, out_option
from selfteach.improve.loop import ImproveConfig


def _baselines(text: str) -> list[str]:
    """ "grpo,sft-icm" -> ["grpo", "sft-icm"]; "none" or "" -> [] (checked by run_improve)."""
    return [] if text.strip() in ("", "none") else [b.strip() for b in text.split(",") if b.strip()]


@config_command(
    ImproveConfig,
    options=[out_option("runs/improve"), RESUME, PROGRESS],
    server=True,
    names={"sft_learning_rate": "--sft-lr"},
    nested={
        "dpo": {
            "beta": "--beta",
            "learning_rate": "--lr",
            "epochs": "--epochs",
            "batch_size": "--batch-size",
            "lora": "--lora",
        },
        "grpo": {"loss_type": "--grpo-loss-type", "learning_rate": "--grpo-lr"},
    },
    parse={
        "baselines": _baselines,
        "temperatures": comma_list(float, "--temperatures"),
        "icm": key_values("--icm"),
    },
    repeat=("icm",),
)
def improve(config: ImproveConfig, out: str, resume: bool, progress: bool) -> None:
    """Improve a model on its own: candidates -> ICM labels -> pairs -> DPO, plus baselines
    and a report."""
    from selfteach.elicit.search import ICMConfig
    from selfteach.improve.loop import run_improve
    from selfteach.report.console import render_summary
    from selfteach.validate import build

    build(
        ICMConfig, {k: f"--icm {k}" for k in config.icm}, **config.icm
    )  # checked now, not after sampling
    summary = run_improve(config, out, resume=resume, progress=progress)
    render_summary(summary)
    print(f"wrote {out}/summary.json; render with: selfteach report {out}")
