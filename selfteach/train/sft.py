"""`selfteach train sft`: supervised fine-tuning with an entropic objective (arXiv 2602.11424).

A subclass of TRL's SFTTrainer whose `compute_loss` swaps NLL for one of
`selfteach.train.objectives.OBJECTIVES` (nll, deformed, prob, dft, cayley, deft). It keeps
TRL's fused LM head, which projects hidden states to the vocabulary in tiles and returns
per-token log p (with gradient), entropy and log sum_v pi_v^2 without ever building the
(tokens x vocab) logits, so every objective costs one forward and one backward, the same
as TRL's NLL (the deprecated `compute_loss_func` hook would add a second forward).

Data is prompt/completion (completion-only loss): JSONL rows with `prompt` + `completion`
(strings or chat messages), rows with `messages` (the last message, from the assistant,
is the completion), or problems (question + solution or answer; the completion is the
solution, else "The answer is N.").

Defaults follow the authors' recipe where it transfers (AdamW betas (0.9, 0.95), weight
decay 0.01, cosine schedule, warmup 10%, lr 5e-5, 1 epoch); batch sizes are CPU-sized.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from transformers import TrainerCallback
from trl import SFTConfig, SFTTrainer
from trl.trainer.utils import add_fused_lm_head

from selfteach.data.checks import as_text
from selfteach.errors import SelfteachError
from selfteach.runs import RunDir
from selfteach.train.common import (
    crash_points,
    is_main_process,
    last_complete_checkpoint,
    load_trainable,
    lora_config,
    mean_train_loss,
    pick_device,
    progress_callback,
    save_model,
    trainer_kwargs,
)
from selfteach.train.diagnostics import Diagnostics
from selfteach.train.objectives import OBJECTIVES, check_objective, entropic_loss, reduce_loss
from selfteach.validate import MAX_BATCH, MAX_EPOCHS, MAX_LR, MAX_STEPS, MAX_TOKENS, MaxSteps, Seed


class SFTRunConfig(BaseModel):
    """Everything `train sft` does, recorded as config.yaml in the run directory."""

    model_config = ConfigDict(allow_inf_nan=False)

    model: str = Field(
        "smollm2-135m", description="model alias, local directory, .gguf file or hub id"
    )
    data: str = Field(
        "",
        description="JSONL/parquet/dataset dir with prompt/completion, messages, or problems; "
        "or builtin:arithmetic",
    )
    objective: str = Field(
        "nll", description=f"one of {', '.join(OBJECTIVES)} (see selfteach.train.objectives)"
    )
    alpha: float | None = Field(
        None, description="alpha for objective=deformed (0 < alpha <= 1); others take none"
    )
    lora: bool = Field(False, description="train a LoRA adapter (peft) instead of all weights")
    lora_r: int = Field(16, ge=1, description="LoRA rank")
    lora_alpha: int = Field(
        32, ge=1, description="LoRA scaling numerator (scale = lora_alpha / lora_r)"
    )
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the LoRA branch")
    max_steps: MaxSteps = Field(
        -1, description="optimizer steps; -1 means `epochs` passes over the data"
    )
    epochs: float = Field(
        1.0,
        gt=0,
        le=MAX_EPOCHS,
        description="passes over the data when max_steps is -1 (authors: 1)",
    )
    learning_rate: float = Field(
        5e-5, gt=0, le=MAX_LR, description="peak learning rate (authors: 5e-5 for 1.5-7B models)"
    )
    batch_size: int = Field(4, ge=1, le=MAX_BATCH, description="examples per device step")
    grad_accum: int = Field(
        1,
        ge=1,
        le=MAX_BATCH,
        description="gradient accumulation steps (global batch = batch_size x this)",
    )
    warmup_ratio: float = Field(
        0.1, ge=0, lt=1, description="share of steps with linear warmup (authors: 0.1)"
    )
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (authors: 0.01)")
    adam_beta2: float = Field(0.95, gt=0, lt=1, description="AdamW beta2 (authors: 0.95)")
    max_length: int | None = Field(
        None,
        ge=8,
        le=MAX_TOKENS,
        description="longest allowed example in tokens; default the model "
        "context. Longer examples are an error, not truncated",
    )
    diag_every: int = Field(
        10, ge=1, le=MAX_STEPS, description="write token diagnostics to metrics.jsonl every N steps"
    )
    save_steps: int = Field(
        50, ge=1, le=MAX_STEPS, description="checkpoint every N steps (for --resume)"
    )
    seed: Seed = Field(0, description="seed for data order, LoRA init and dropout")
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="field mapping for problem data (question=..., answer=..., solution=...)",
    )
    limit: int | None = Field(None, ge=1, description="use only the first N examples")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto (cuda if available), cpu or cuda"
    )


# ---- data --------------------------------------------------------------------------------
def answer_completion(answer: str) -> str:
    """The completion built from a bare final answer."""
    return f"The answer is {answer}."


def plain_prompt(question: str) -> str:
    """Prompt for models without a chat template (base models such as Gemma-3-270M)."""
    return f"Question: {question}\nAnswer:"


def load_sft_rows(data: str | Path | list[dict], fields: dict[str, str] | None = None,
                  limit: int | None = None) -> list[dict[str, Any]]:
    """Rows {"prompt", "completion"} (strings or message lists) from any supported data.
    Problems become {"question", "completion"} and are formatted per model by `format_rows`."""
    from selfteach.data.loaders import load_problems, read_rows_at

    name = "data" if isinstance(data, list) else str(data)
    if isinstance(data, list):
        at = list(enumerate(data, 1))
    elif str(data).startswith("builtin:"):
        at = list(enumerate((p.model_dump() for p in load_problems(str(data))), 1))
    else:
        at = read_rows_at(data)
    if not at:
        raise SelfteachError(f"{name}: no examples")
    has_pc = isinstance(at[0][1], dict) and "prompt" in at[0][1] and "completion" in at[0][1]
    out: list[dict[str, Any]] = []
    for i, (n, row) in enumerate(at):
        where = f"{name}:{n}"
        if not isinstance(row, dict):
            raise SelfteachError(f"{where}: expected an object, got {type(row).__name__}")
        # a problem with its completion
        if "question" in row and "prompt" not in row and row.get("completion"):
            out.append({"question": as_text(row["question"], where, "question"),
                        "completion": _completion(row["completion"], where)})
        elif has_pc or "completion" in row:
            if "prompt" not in row:
                raise SelfteachError(f"{where}: missing field 'prompt'")
            out.append(
                {
                    "prompt": _prompt(row["prompt"], where),
                    "completion": _completion(row.get("completion"), where),
                }
            )
        elif "messages" in row:
            msgs = row["messages"]
            if not isinstance(msgs, list) or len(msgs) < 2 or not _is_messages(msgs) \
                    or msgs[-1].get("role") != "assistant":
                raise SelfteachError(
                    f"{where}: field 'messages' must end with an assistant message (the "
                    "completion), in a list of {role, content} messages"
                )
            out.append({"prompt": msgs[:-1], "completion": [msgs[-1]]})
        else:
            out.append(_problem_row(row, i, fields or {}, where))
        if limit is not None and len(out) >= limit:
            break
    return out


def _is_messages(v: Any) -> bool:
    return (
        isinstance(v, list)
        and bool(v)
        and all(
            isinstance(m, dict)
            and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str)
            for m in v
        )
    )


def _prompt(v: Any, where: str) -> str | list:
    """A prompt: text (may be empty: plain language modelling) or chat messages."""
    if isinstance(v, str) or _is_messages(v):
        return v
    raise SelfteachError(
        f"{where}: field 'prompt': expected text or a list of {{role, content}} messages, "
        f"got {'null' if v is None else type(v).__name__}"
    )


def _completion(v: Any, where: str) -> str | list:
    """A completion: non-blank text or assistant messages (never a number made text)."""
    if _is_messages(v):
        return v
    if v is None or v == "" or v == []:
        raise SelfteachError(f"{where}: missing or empty field 'completion'")
    return as_text(v, where, "completion")


def _problem_row(row: dict, i: int, fields: dict[str, str], where: str) -> dict[str, Any]:
    from selfteach.data.loaders import problem_from_row, validated

    # a Problem record (builtin)
    if "question" in row and "meta" in row and "id" in row and not fields:
        q, sol, ans = row["question"], row.get("solution"), row.get("answer")
    else:
        prob = validated(lambda: problem_from_row(row, i, fields, where), where)
        q, sol, ans = prob.question, prob.solution, prob.answer
    if sol:
        return {"question": q, "completion": str(sol).strip()}
    if ans not in (None, ""):
        return {"question": q, "completion": answer_completion(str(ans))}
    raise SelfteachError(
        f"{where}: no completion: need 'completion' (with 'prompt'), 'messages', or a problem "
        "with a solution or answer (map one with --field answer=FIELD)"
    )


def format_rows(rows: list[dict[str, Any]], chat: bool) -> list[dict[str, Any]]:
    """Problem rows -> chat messages when the tokenizer has a chat template, else plain text."""
    out = []
    for r in rows:
        if "question" in r:
            if chat:
                r = {"prompt": [{"role": "user", "content": r["question"]}],
                     "completion": [{"role": "assistant", "content": r["completion"]}]}
            else:
                r = {"prompt": plain_prompt(r["question"]), "completion": " " + r["completion"]}
        out.append(r)
    if len({isinstance(r["prompt"], list) for r in out}) > 1:
        raise SelfteachError("data mixes plain-text and chat-message prompts; use one format")
    return out


# ---- trainer -----------------------------------------------------------------------------
class EntropicSFTTrainer(SFTTrainer):
    """SFTTrainer with `compute_loss` replaced by an entropic objective.

    Same forward as TRL's NLL path (fused LM head), plus the per-token statistic
    log sum_v pi_v^2 that DEFT needs (computed in the same vocabulary tiles).
    """

    def __init__(self, *args, objective: str = "nll", alpha: float | None = None,
                 diagnostics: Diagnostics | None = None, **kwargs):
        self.objective: str = objective
        self.alpha = check_objective(objective, alpha)
        self.diagnostics = diagnostics
        super().__init__(*args, **kwargs)
        model: Any = self.model  # a PreTrainedModel, or a PeftModel around one
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        # Re-patch the head TRL installed, asking for log sum pi^2 too (one more fold per tile).
        add_fused_lm_head(base, outputs=("log_probs", "entropy", "log_sum_sq_probs", "is_top1"))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        inputs["use_cache"] = False
        out = model(**inputs, fused_lm_head=True)
        mask = out.label_mask
        tl = entropic_loss(out.log_probs, mask, self.objective, self.alpha, out.log_sum_sq_probs)
        loss = reduce_loss(tl.loss, mask, num_items_in_batch)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # as TRL: DDP averages the gradients

        n = mask.sum().clamp(min=1)
        m = self._metrics[mode]
        m["entropy"].append((out.entropy.detach().sum() / n).item())
        m["mean_token_accuracy"].append((out.is_top1.sum() / n).item())
        m["mean_gate"].append((tl.gate.sum() / n).item())
        m["mean_alpha"].append((tl.alpha.sum() / n).item())
        m["mean_p"].append((tl.p.sum() / n).item())
        if mode == "train":
            self._total_train_tokens += (
                int(inputs["attention_mask"].sum()) if "attention_mask" in inputs else 0
            )
            if self.diagnostics is not None:
                self.diagnostics.update(
                    tl.p, out.entropy.detach(), out.log_sum_sq_probs, tl.gate, tl.alpha, mask
                )
        m["num_tokens"] = [self._total_train_tokens]
        return (loss, out) if return_outputs else loss


class _RunCallback(TrainerCallback):
    """Trainer logs -> metrics.jsonl, and token diagnostics every `diag_every` steps."""

    def __init__(self, run: RunDir | None, diagnostics: Diagnostics):
        self.run, self.diag = run, diagnostics

    def on_step_end(self, args, state, control, **kw):
        if state.global_step % self.diag.every == 0:
            self.diag.flush(state.global_step)

    def on_log(self, args, state, control, logs=None, **kw):
        if self.run is not None and logs:
            self.run.log_metrics({"kind": "train", "step": state.global_step, **logs})

    def on_train_end(self, args, state, control, **kw):
        if self.diag._buf:
            self.diag.flush(state.global_step)


def _check_lengths(dataset, limit: int, context: int, max_length: int | None) -> None:
    """Every example fits and has trained tokens: fail before training, naming the row."""
    cols = dataset.column_names
    for i, ex in enumerate(dataset):
        n = len(ex["input_ids"])
        if n > limit:
            what = (
                f"--max-length {max_length}"
                if max_length and max_length < context
                else f"the model context {context}"
            )
            raise SelfteachError(
                f"example {i + 1}: {n} tokens, longer than {what}; shorten it or drop it "
                "(examples are not truncated: that would cut the completion)"
            )
        if "completion_mask" in cols and sum(ex["completion_mask"]) == 0:
            raise SelfteachError(f"example {i + 1}: completion has no tokens")


def build_trainer(
    cfg: SFTRunConfig,
    rows: list[dict] | None = None,
    run: RunDir | None = None,
    progress: bool = False,
    output_dir: str | Path | None = None,
) -> EntropicSFTTrainer:
    """A ready EntropicSFTTrainer for `cfg` (data checked, nothing trained yet)."""
    import datasets

    alpha = check_objective(cfg.objective, cfg.alpha)
    rows = rows if rows is not None else load_sft_rows(cfg.data, cfg.fields, cfg.limit)
    device = pick_device(cfg.device)
    # fp32 master weights, bf16 autocast on GPU
    model, tok = load_trainable(cfg.model, device, fp32=True)
    rows = format_rows(rows, chat=bool(getattr(tok, "chat_template", None)))
    context = int(getattr(model.config.get_text_config(), "max_position_embeddings", 0) or 2048)
    limit = min(context, cfg.max_length or context)
    checkpoints = Path(output_dir or (run.file("checkpoints") if run else "sft-out"))
    args = SFTConfig(
        **trainer_kwargs(cfg, checkpoints, device),
        lr_scheduler_type="cosine", adam_beta1=0.9, adam_beta2=cfg.adam_beta2, data_seed=cfg.seed,
        completion_only_loss=True, max_length=None,  # lengths are checked, never truncated
        activation_checkpointing=False, logging_steps=1, save_only_model=False,
        disable_tqdm=True, dataset_num_proc=None,  # progress_callback draws the bar
    )
    diag = Diagnostics(run, every=cfg.diag_every, objective=cfg.objective)
    trainer = EntropicSFTTrainer(
        model=model,
        args=args,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=tok,
        peft_config=lora_config(cfg),
        objective=cfg.objective,
        alpha=alpha,
        diagnostics=diag,
        callbacks=[_RunCallback(run, diag), progress_callback("sft", progress), crash_points()],
    )
    from transformers.trainer_callback import PrinterCallback

    # logs go to metrics.jsonl and the progress bar instead
    trainer.remove_callback(PrinterCallback)
    _check_lengths(trainer.train_dataset, limit, context, cfg.max_length)
    return trainer


def train_sft(model: str, data: str | Path | list[dict], out: str | Path, objective: str = "nll",
              alpha: float | None = None, resume: bool = False, progress: bool = False,
              **options: Any) -> dict[str, Any]:
    """Fine-tune `model` on prompt/completion `data` with `objective`; returns summary metrics.

    `options` are any `SFTRunConfig` field (lora, max_steps, learning_rate, batch_size, ...).
    Writes to `out`: config.yaml, env.json, metrics.jsonl (train logs and token
    diagnostics), diagnostics.png, summary.json, checkpoints/ and the final model/.

    >>> train_sft("tiny-random", "train.jsonl", "runs/deft", objective="deft", max_steps=20)
    """
    unknown = sorted(set(options) - set(SFTRunConfig.model_fields))
    if unknown:
        raise SelfteachError(f"train_sft: unknown option {unknown[0]!r}")
    check_objective(objective, alpha)
    cfg = SFTRunConfig(
        model=model,
        data="<list>" if isinstance(data, list) else str(data),
        objective=objective,
        alpha=alpha,
        **options,
    )
    rows = load_sft_rows(data, cfg.fields, cfg.limit)  # bad data fails before a run dir is made
    out = Path(out)
    if resume and (out / "result.json").exists():  # finished already: nothing to resume
        return json.loads((out / "result.json").read_text())
    # Build (load, tokenize, check lengths) before writing the run dir: bad data leaves no run.
    # Under `accelerate launch` only rank 0 creates and writes the run directory (metrics,
    # diagnostics, result); the other ranks train into the same checkpoints folder.
    main = is_main_process()
    trainer = build_trainer(cfg, rows, RunDir(out) if main else None, progress=progress and main,
                            output_dir=None if main else str(out / "checkpoints"))
    if main:
        RunDir.create(out, cfg, resume=resume, seed=cfg.seed, device=cfg.device)
    trainer.accelerator.wait_for_everyone()  # the directory exists before any rank reads it
    run = RunDir(out)
    ckpt = last_complete_checkpoint(run.file("checkpoints")) if resume else None
    if resume:
        _drop_logs_after(run, _checkpoint_step(ckpt))
    t0 = time.time()
    trainer.train(resume_from_checkpoint=ckpt)
    seconds = time.time() - t0
    save_model(trainer, run.file("model"))
    logs = [h for h in trainer.state.log_history if "loss" in h]
    summary = {
        "objective": objective,
        "alpha": alpha,
        "model": model,
        "examples": len(rows),
        "steps": trainer.state.global_step,
        "train_loss": round(float(mean_train_loss(trainer.state.log_history) or math.nan), 6),
        "final_loss": logs[-1]["loss"] if logs else math.nan,
        "mean_gate": _mean([h.get("mean_gate") for h in logs]),
        "mean_alpha": _mean([h.get("mean_alpha") for h in logs]),
        "mean_p_first": logs[0].get("mean_p") if logs else None,
        "mean_p_last": logs[-1].get("mean_p") if logs else None,
        "train_seconds": round(seconds, 2),
        "out": str(run.path),
        "model_dir": str(run.file("model")),
        "resumed_from": ckpt,
    }
    if not main:
        return summary
    assert trainer.diagnostics is not None  # build_trainer always attaches them
    trainer.diagnostics.finish(f"SFT {objective} on {model}", extra_notes=[
        f"{summary['steps']} steps on {len(rows)} examples, train loss {summary['train_loss']}, "
        f"{summary['train_seconds']} s."])
    run.write_json("result.json", summary)
    return summary


def _checkpoint_step(ckpt: str | None) -> int:
    if ckpt is None:
        return 0
    return int(json.loads((Path(ckpt) / "trainer_state.json").read_text())["global_step"])


def _drop_logs_after(run: RunDir, step: int) -> None:
    """Training rows of metrics.jsonl logged after the checkpoint a resume starts from: the
    resumed run logs those steps again (without this they would appear twice)."""
    from selfteach.data.jsonl import write_jsonl

    f = run.file("metrics.jsonl")
    lines = f.read_text(encoding="utf-8").splitlines() if f.exists() else []
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except ValueError:
            if i < len(lines) - 1:  # only the last line can be torn by an interruption
                raise SelfteachError(f"{f}:{i + 1}: not a JSON line") from None
    keep = [r for r in rows if not isinstance(r, dict)
            or r.get("kind") not in ("train", "diagnostics") or r.get("step", 0) <= step]
    if len(keep) < len(lines):
        write_jsonl(f, keep)


def _mean(xs: list[float | None]) -> float | None:
    v = [x for x in xs if x is not None]
    return round(sum(v) / len(v), 6) if v else None


# ---- CLI ---------------------------------------------------------------------------------
