"""`selfteach improve`: the ICM+DPO self-improvement loop from the command line."""

from __future__ import annotations

from typing import Annotated

import typer

from selfteach.backends.served import SERVE_HELP
from selfteach.errors import SelfteachError


def _floats(text: str, name: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SelfteachError(f"{name} {text!r}: expected comma-separated numbers, e.g. 0.3,0.6,0.9") from None


def _kv(items: list[str] | None, name: str) -> dict:
    import yaml

    out = {}
    for item in items or []:
        if "=" not in item:
            raise SelfteachError(f"{name} {item!r}: expected KEY=VALUE, e.g. alpha=30")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def register(app: typer.Typer) -> None:
    @app.command("improve")
    def improve(
        model: Annotated[str, typer.Option(help="model to improve (alias, directory, .gguf, hub id)")] = "smollm2-135m",
        problems: Annotated[str, typer.Option(help="problems: JSONL/parquet/dataset dir or builtin:arithmetic")] =
        "builtin:arithmetic",
        out: Annotated[str, typer.Option(help="run directory")] = "runs/improve",
        rounds: Annotated[int, typer.Option(help="ICM+DPO rounds (each round's model generates and labels the next)")] = 1,
        label_model: Annotated[str | None, typer.Option(help="label with this (stronger) model, train --model "
                                                             "(transfer)")] = None,
        eval_problems: Annotated[str | None, typer.Option(help="separate eval data (needs answers); default: "
                                                               "hold out --eval-size problems")] = None,
        eval_size: Annotated[int, typer.Option(help="held-out eval problems")] = 50,
        train_size: Annotated[int | None, typer.Option(help="use at most N training problems")] = None,
        samples: Annotated[int, typer.Option(help="candidates per problem")] = 8,
        temperatures: Annotated[str, typer.Option(help="comma-separated sampling temperatures")] = "0.3,0.6,0.9",
        max_new_tokens: Annotated[int, typer.Option(help="tokens per candidate / eval answer")] = 128,
        pairs_per_problem: Annotated[int, typer.Option(help="cap on pairs per problem")] = 5,
        on_one_class: Annotated[str, typer.Option(help="if ICM labels all one class: stop | margin-median")] = "stop",
        icm: Annotated[list[str] | None, typer.Option(help="ICMConfig field, KEY=VALUE (repeatable)")] = None,
        beta: Annotated[float, typer.Option(help="DPO beta")] = 0.1,
        lr: Annotated[float, typer.Option(help="DPO learning rate")] = 5e-6,
        epochs: Annotated[float, typer.Option(help="DPO epochs over the pairs")] = 2.0,
        batch_size: Annotated[int, typer.Option(help="training batch size (DPO and SFT)")] = 4,
        lora: Annotated[bool, typer.Option("--lora", help="DPO with a LoRA adapter (merged when saved)")] = False,
        baselines: Annotated[str, typer.Option(help="comma-separated: grpo,sft-icm,sft-gold, or none")] =
        "grpo,sft-icm,sft-gold",
        grpo_loss_type: Annotated[str, typer.Option(help="GRPO baseline loss: grpo | dr_grpo | dapo")] = "grpo",
        grpo_lr: Annotated[float, typer.Option(help="GRPO baseline learning rate")] = 1e-6,
        grpo_prompts_per_step: Annotated[int, typer.Option(help="GRPO prompts per step (batch = this x samples)")] = 2,
        sft_lr: Annotated[float, typer.Option(help="SFT baselines learning rate")] = 1e-5,
        eval_samples: Annotated[int, typer.Option(help="k for maj@k (1 = greedy only)")] = 4,
        field: Annotated[list[str] | None, typer.Option(help="field map, e.g. question=Body+Question")] = None,
        seed: Annotated[int, typer.Option(help="seed")] = 0,
        resume: Annotated[bool, typer.Option("--resume", help="continue an interrupted run in --out")] = False,
        progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
        serve: Annotated[bool, typer.Option("--serve", help=SERVE_HELP)] = False,
    ) -> None:
        """Improve a model on its own: candidates -> ICM labels -> pairs -> DPO, plus baselines and a report."""
        from pydantic import ValidationError

        from selfteach.improve.loop import ImproveConfig, run_improve
        from selfteach.train.dpo import DPOArgs
        from selfteach.train.grpo import GRPOArgs

        try:
            cfg = _config(ImproveConfig, DPOArgs, GRPOArgs, locals())
        except ValidationError as e:
            err = e.errors()[0]
            raise SelfteachError(f"--{'-'.join(str(x) for x in err['loc']).replace('_', '-')}: {err['msg']} "
                                 f"(got {err.get('input')!r})") from None
        summary = run_improve(cfg, out, resume=resume, progress=progress)
        _print(summary, out)


def _config(ImproveConfig, DPOArgs, GRPOArgs, a: dict):
    from selfteach.data.loaders import parse_field_map

    names = [] if a["baselines"].strip() in ("", "none") else [b.strip() for b in a["baselines"].split(",") if b.strip()]
    return ImproveConfig(
        model=a["model"], label_model=a["label_model"], problems=a["problems"], eval_problems=a["eval_problems"],
        fields=parse_field_map(a["field"]), train_size=a["train_size"], eval_size=a["eval_size"], rounds=a["rounds"],
        samples=a["samples"], temperatures=_floats(a["temperatures"], "--temperatures"),
        max_new_tokens=a["max_new_tokens"], pairs_per_problem=a["pairs_per_problem"], on_one_class=a["on_one_class"],
        icm=_kv(a["icm"], "--icm"),
        dpo=DPOArgs(beta=a["beta"], learning_rate=a["lr"], epochs=a["epochs"], batch_size=a["batch_size"],
                    lora=a["lora"]),
        baselines=names, grpo=GRPOArgs(loss_type=a["grpo_loss_type"], learning_rate=a["grpo_lr"]),
        grpo_prompts_per_step=a["grpo_prompts_per_step"], sft_learning_rate=a["sft_lr"],
        eval_samples=a["eval_samples"], seed=a["seed"], serve=a["serve"])


def _print(summary: dict, out: str) -> None:
    from selfteach.report.console import render_summary

    render_summary(summary)
    print(f"wrote {out}/summary.json; render with: selfteach report {out}")
