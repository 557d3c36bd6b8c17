"""`selfteach train sft`: the command only; the trainer (and TRL) is imported when it runs,
so `selfteach --help` stays fast."""

from __future__ import annotations

from typing import Annotated

import typer

from selfteach.errors import SelfteachError


def register_sft(train_app) -> None:
    """Add `train sft` to the `train` Typer sub-app."""
    @train_app.command("sft")
    def sft_command(
        model: Annotated[str, typer.Option(help="model alias, directory, .gguf or hub id")] = "smollm2-135m",
        data: Annotated[str, typer.Option(help="JSONL with prompt/completion, messages, or problems "
                                               "(question + solution/answer); or builtin:arithmetic")] = "",
        objective: Annotated[str, typer.Option(help="nll | deformed | prob | dft | cayley | deft")] = "nll",
        alpha: Annotated[float | None, typer.Option(help="alpha for --objective deformed (0 < A <= 1)")] = None,
        out: Annotated[str, typer.Option(help="run directory")] = "runs/sft",
        lora: Annotated[bool, typer.Option("--lora", help="train a LoRA adapter")] = False,
        max_steps: Annotated[int, typer.Option(help="optimizer steps (-1: --epochs passes)")] = -1,
        epochs: Annotated[float, typer.Option(help="passes over the data")] = 1.0,
        learning_rate: Annotated[float, typer.Option("--lr", help="peak learning rate")] = 5e-5,
        batch_size: Annotated[int, typer.Option(help="examples per step")] = 4,
        grad_accum: Annotated[int, typer.Option(help="gradient accumulation steps")] = 1,
        max_length: Annotated[int | None, typer.Option(help="longest allowed example (tokens)")] = None,
        diag_every: Annotated[int, typer.Option(help="diagnostics every N steps")] = 10,
        save_steps: Annotated[int, typer.Option(help="checkpoint every N steps")] = 50,
        field: Annotated[list[str] | None, typer.Option(help="problem field map, e.g. question=Body+Question")] = None,
        limit: Annotated[int | None, typer.Option(help="first N examples only")] = None,
        seed: Annotated[int, typer.Option(help="seed")] = 0,
        resume: Annotated[bool, typer.Option("--resume", help="continue from the last checkpoint in --out")] = False,
    ) -> None:
        """Fine-tune with an entropic objective (DEFT family, arXiv 2602.11424); completion-only loss."""
        import json

        from selfteach.data.loaders import parse_field_map

        if not data:
            raise SelfteachError("--data is required (a JSONL file or builtin:arithmetic)")
        from selfteach.train.sft import train_sft

        summary = train_sft(model, data, out, objective=objective, alpha=alpha, resume=resume, progress=True,
                            lora=lora, max_steps=max_steps, epochs=epochs, learning_rate=learning_rate,
                            batch_size=batch_size, grad_accum=grad_accum, max_length=max_length,
                            diag_every=diag_every, save_steps=save_steps, fields=parse_field_map(field),
                            limit=limit, seed=seed)
        typer.echo(json.dumps(summary, indent=2))
