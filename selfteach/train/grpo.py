"""GRPO on problems through TRL's GRPOTrainer: the supervised RL baseline of ICM+DPO.

Group Relative Policy Optimization (Shao et al. 2024, DeepSeekMath, arXiv 2402.03300,
eq. 3): for each prompt, sample a group of G completions, reward each, use the advantage
A_i = (r_i - mean(r)) / std(r), and maximise the clipped importance-ratio objective, with
an optional KL penalty (k3 estimator) to the reference. Loss types (TRL `loss_type`):

- `grpo`: per-sequence length normalisation (the original; length-biased),
- `dr_grpo`: Dr. GRPO (Liu et al. 2025, arXiv 2503.20783) drops the std scaling and the
  per-length normalisation (divides by a constant, max_completion_length); selfteach sets
  `scale_rewards="none"` for it, as the paper prescribes,
- `dapo`: DAPO (Yu et al. 2025, arXiv 2503.14476) token-level normalisation over the
  batch; asymmetric clipping via `epsilon_high` (paper: 0.28).

The prompt is the same solve prompt the evaluation uses (`selfteach.evaluate.prompts`),
so GRPO trains on exactly the distribution it is measured on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from selfteach.data.records import Problem
from selfteach.errors import SelfteachError
from selfteach.train.common import (
    TrainConfig,
    TrainResult,
    crash_points,
    finish,
    finished_result,
    load_trainable,
    lora_config,
    pick_device,
    resume_checkpoint,
    trl_common_kwargs,
)
from selfteach.train.rewards import resolve_reward

LOSS_TYPES = ("grpo", "dr_grpo", "dapo")


class GRPOArgs(TrainConfig):
    """GRPO options (TRL GRPOConfig names in brackets)."""

    reward: str = Field("gold-answer", description="reward: gold-answer | judge:MODEL | judge-rule")
    loss_type: Literal["grpo", "dr_grpo", "dapo"] = Field(
        "grpo", description="grpo | dr_grpo | dapo [loss_type]"
    )
    num_generations: int = Field(
        8, ge=2, le=1024, description="group size G: completions per prompt [num_generations]"
    )
    max_completion_length: int = Field(
        128, ge=1, le=131072, description="cap on generated tokens [max_completion_length]"
    )
    temperature: float = Field(
        1.0, gt=0, le=10.0, description="sampling temperature of the group [temperature]"
    )
    beta: float = Field(
        0.0,
        ge=0,
        le=100,
        description="KL coefficient to the reference (0 = no reference model) [beta]",
    )
    epsilon: float = Field(0.2, gt=0, description="lower clip range [epsilon]")
    epsilon_high: float | None = Field(
        None, description="upper clip range; None = epsilon, DAPO uses 0.28 [epsilon_high]"
    )
    num_iterations: int = Field(
        1, ge=1, description="policy updates per generated batch (mu) [num_iterations]"
    )
    learning_rate: float = Field(1e-6, gt=0, le=1.0, description="AdamW peak learning rate")
    batch_size: int = Field(
        8, ge=1, description="completions per device per step (must be divisible into groups)"
    )


class _ChatShim:
    """Just enough of a Backend for `solve_prompt`: the tokenizer's chat template."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def chat_prompt(self, user: str, system: str | None = None) -> str:
        if not getattr(self.tokenizer, "chat_template", None):
            return user
        msgs = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": user}
        ]
        return self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)


def prompts_dataset(problems: list[Problem], tokenizer):
    """TRL dataset: the evaluation's solve prompt as text, plus the gold `answer` column."""
    from datasets import Dataset

    from selfteach.evaluate.prompts import solve_prompt

    shim: Any = _ChatShim(tokenizer)  # stands in for the Backend solve_prompt takes
    return Dataset.from_list(
        [{"prompt": solve_prompt(shim, p), "answer": p.answer} for p in problems]
    )


def grpo_config(args: GRPOArgs, out: Path, device: str):
    from trl import GRPOConfig

    if args.loss_type not in LOSS_TYPES:
        raise SelfteachError(f"--loss-type {args.loss_type!r}: choose {', '.join(LOSS_TYPES)}")
    extra: dict[str, Any] = {"scale_rewards": "none"} if args.loss_type == "dr_grpo" else {}
    if args.loss_type == "dapo" and args.epsilon_high is None:
        extra["epsilon_high"] = 0.28
    elif args.epsilon_high is not None:
        extra["epsilon_high"] = args.epsilon_high
    return GRPOConfig(
        **trl_common_kwargs(args, out, device),
        loss_type=args.loss_type,
        num_generations=args.num_generations,
        max_completion_length=args.max_completion_length,
        temperature=args.temperature,
        beta=args.beta,
        epsilon=args.epsilon,
        num_iterations=args.num_iterations,
        **extra,
    )


def train_grpo(problems: list[Problem], args: GRPOArgs | None = None, out: str | Path = "runs/grpo",
               model=None, tokenizer=None, resume: bool = False) -> TrainResult:
    """Train with GRPO on `problems` using the reward `args.reward`; save to OUT/model.
    With `resume`, a finished run in `out` is returned as it is, and an interrupted one
    continues from its last complete checkpoint (every `args.save_steps` steps)."""
    from trl import GRPOTrainer

    args = args or GRPOArgs()
    out = Path(out)
    if not problems:
        raise SelfteachError("no problems to train on")
    if args.reward == "gold-answer":
        missing = [p.id for p in problems if p.answer is None]
        if missing:
            raise SelfteachError(
                f"--reward gold-answer needs gold answers: {len(missing)} problems have none "
                f"(first id {missing[0]!r})"
            )
    if (args.batch_size * args.grad_accum) % args.num_generations:
        raise SelfteachError(
            f"--batch-size x --grad-accum ({args.batch_size * args.grad_accum}) must be a multiple "
            f"of --num-generations ({args.num_generations})"
        )
    reward = resolve_reward(args.reward)
    if resume and (done := finished_result(out)):
        return done
    ckpt = resume_checkpoint(out / "trainer", resume)  # before the model loads
    device = pick_device(args.device)
    if model is None:
        model, tokenizer = load_trainable(args.model, device)
    # TRL types reward functions as returning list[float | None]; ours return list[float]
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward,  # type: ignore[arg-type]
        args=grpo_config(args, out, device),
        train_dataset=prompts_dataset(problems, tokenizer),
        processing_class=tokenizer,
        peft_config=lora_config(args),
        callbacks=[crash_points()],
    )
    trainer.train(resume_from_checkpoint=ckpt)
    return finish(
        trainer, args, out, f"GRPO {args.loss_type} ({args.reward}, G={args.num_generations})"
    )
