"""`selfteach train dpo|grpo` (and `train sft`, registered by selfteach.train.sft).

Each command is a thin wrapper over the Python API (`train_dpo`, `train_grpo`) and runs
unchanged under `accelerate launch` (e.g. `accelerate launch --config_file
examples/accelerate/zero2.yaml -m selfteach train dpo --pairs pairs.jsonl`).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from selfteach.backends.options import server_options


def _echo_result(res) -> None:
    from selfteach.train.common import is_main_process

    if is_main_process():
        typer.echo(json.dumps({"model_dir": str(res.model_dir) if res.model_dir else None,
                               **{k: v for k, v in res.metrics.items() if not isinstance(v, dict | list)}},
                              indent=2, default=str))


def register(app: typer.Typer) -> None:
    from selfteach.cli import train_app

    @train_app.command("dpo")
    def dpo(
        pairs: Annotated[str, typer.Option(help="JSONL with prompt/chosen/rejected (TRL format)")],
        model: Annotated[str, typer.Option(help="model to train (alias, directory, .gguf, hub id)")] = "smollm2-135m",
        out: Annotated[str, typer.Option(help="output directory (model/ and train logs)")] = "runs/dpo",
        beta: Annotated[float, typer.Option(help="DPO beta")] = 0.1,
        loss_type: Annotated[str, typer.Option(help="TRL DPO loss: sigmoid, ipo, hinge, robust, ...")] = "sigmoid",
        lr: Annotated[float, typer.Option(help="learning rate")] = 5e-6,
        epochs: Annotated[float, typer.Option(help="epochs over the pairs")] = 1.0,
        max_steps: Annotated[int, typer.Option(help="optimizer steps (-1: --epochs)")] = -1,
        batch_size: Annotated[int, typer.Option(help="pairs per device step")] = 4,
        grad_accum: Annotated[int, typer.Option(help="gradient accumulation steps")] = 1,
        max_length: Annotated[int, typer.Option(help="truncate prompt+completion to N tokens")] = 512,
        precompute_ref: Annotated[bool, typer.Option(help="precompute reference log-probs once (exact, faster)")]
        = True,
        lora: Annotated[bool, typer.Option("--lora", help="train a LoRA adapter (merged when saved)")] = False,
        lora_r: Annotated[int, typer.Option(help="LoRA rank")] = 16,
        device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
        seed: Annotated[int, typer.Option(help="seed")] = 0,
        save_steps: Annotated[int, typer.Option(help="checkpoint every N steps (for --resume)")] = 50,
        resume: Annotated[bool, typer.Option("--resume", help="continue from the last checkpoint in --out")] = False,
    ) -> None:
        """DPO on preference pairs (TRL DPOTrainer; arXiv 2305.18290)."""
        from selfteach.train.dpo import DPOArgs, read_pairs, train_dpo

        args = DPOArgs(model=model, beta=beta, loss_type=loss_type, learning_rate=lr, epochs=epochs,
                       max_steps=max_steps, batch_size=batch_size, grad_accum=grad_accum, max_length=max_length,
                       precompute_ref=precompute_ref, lora=lora, lora_r=lora_r, device=device, seed=seed,
                       save_steps=save_steps)
        data = read_pairs(pairs)  # line-numbered errors before any model is loaded
        _echo_result(train_dpo(data, args, out=out, resume=resume))

    @train_app.command("grpo")
    @server_options
    def grpo(
        problems: Annotated[str, typer.Option(help="problems: JSONL/parquet/dataset dir or builtin:arithmetic")],
        model: Annotated[str, typer.Option(help="model to train")] = "smollm2-135m",
        out: Annotated[str, typer.Option(help="output directory")] = "runs/grpo",
        reward: Annotated[str, typer.Option(help="gold-answer | judge:MODEL | judge-rule")] = "gold-answer",
        loss_type: Annotated[str, typer.Option(help="grpo | dr_grpo | dapo")] = "grpo",
        num_generations: Annotated[int, typer.Option(help="group size G (completions per prompt)")] = 8,
        max_completion_length: Annotated[int, typer.Option(help="max generated tokens")] = 128,
        temperature: Annotated[float, typer.Option(help="sampling temperature")] = 1.0,
        beta: Annotated[float, typer.Option(help="KL coefficient (0 = no reference model)")] = 0.0,
        lr: Annotated[float, typer.Option(help="learning rate")] = 1e-6,
        epochs: Annotated[float, typer.Option(help="epochs over the problems")] = 1.0,
        max_steps: Annotated[int, typer.Option(help="optimizer steps (-1: --epochs)")] = -1,
        batch_size: Annotated[int, typer.Option(help="completions per device step (multiple of G)")] = 8,
        grad_accum: Annotated[int, typer.Option(help="gradient accumulation steps")] = 1,
        limit: Annotated[int | None, typer.Option(help="first N problems only")] = None,
        field: Annotated[list[str] | None, typer.Option(help="field map, e.g. question=Body+Question")] = None,
        lora: Annotated[bool, typer.Option("--lora", help="train a LoRA adapter (merged when saved)")] = False,
        device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
        seed: Annotated[int, typer.Option(help="seed")] = 0,
        save_steps: Annotated[int, typer.Option(help="checkpoint every N steps (for --resume)")] = 50,
        resume: Annotated[bool, typer.Option("--resume", help="continue from the last checkpoint in --out")] = False,
    ) -> None:
        """GRPO (TRL GRPOTrainer; arXiv 2402.03300) with Dr. GRPO / DAPO loss variants."""
        from selfteach.data.loaders import load_problems, parse_field_map
        from selfteach.train.grpo import GRPOArgs, train_grpo

        args = GRPOArgs(model=model, reward=reward, loss_type=loss_type, num_generations=num_generations,
                        max_completion_length=max_completion_length, temperature=temperature, beta=beta,
                        learning_rate=lr, epochs=epochs, max_steps=max_steps, batch_size=batch_size,
                        grad_accum=grad_accum, lora=lora, device=device, seed=seed, save_steps=save_steps)
        from selfteach.train.rewards import resolve_reward

        resolve_reward(reward)  # a bad --reward fails before loading data or models
        data = load_problems(problems, fields=parse_field_map(field), limit=limit, seed=seed)
        _echo_result(train_grpo(data, args, out=out, resume=resume))

    try:
        from selfteach.train.sft_command import register_sft
    except ModuleNotFoundError as e:
        if e.name != "selfteach.train.sft_command":
            raise
    else:
        register_sft(train_app)
