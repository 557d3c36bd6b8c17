"""Glue shared by the TRL trainers (DPO, GRPO, and the SFT baselines).

- `load_trainable(spec)`: a model spec (alias, directory, .gguf, hub id) -> a plain fp32/bf16
  transformers model + tokenizer, through `selfteach.backends.models.resolve` (GGUF files
  are dequantised once and cached, so TRL gets an ordinary model it may fine-tune).
- `precision_kwargs()`: fp32 + `use_cpu=True` on CPU (bf16 autocast is slower on these CPUs
  and TRL turns bf16 and gradient checkpointing on by default), bf16 on GPU.
- `trl_common_kwargs(cfg, out)`: the TrainingArguments fields every trainer shares.
- `lora_config(cfg)`: a peft `LoraConfig` when `cfg.lora` is set.
- `finish(trainer, cfg, out)`: merge LoRA, save a full model directory any backend can load,
  write the training log (train_log.jsonl) and curves (train_curves.png).
- `resume_checkpoint(folder, resume)`: --resume from the newest *complete* checkpoint
  (`checkpoint_problem` says why one is not: a kill -9 during its write), and
  `mean_train_loss(history)`: the training loss over all steps, across resumes.

Everything here works unchanged under `accelerate launch` (DDP, DeepSpeed ZeRO-2): the
trainers read the distributed state from the environment accelerate sets up.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from selfteach.backends.devices import pick_device as pick_device  # re-exported: dpo, grpo
from selfteach.data.jsonl import atomic_write_text
from selfteach.errors import SelfteachError
from selfteach.runs import crash_point
from selfteach.validate import MAX_BATCH, MAX_EPOCHS, MAX_LR, MAX_TOKENS, MaxSteps, Seed


class TrainConfig(BaseModel):
    """Options every selfteach trainer shares (TRL-style: each field has a default)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: str = Field(
        "smollm2-135m", description="model spec to train: alias, directory, .gguf file or hub id"
    )
    learning_rate: float = Field(5e-6, gt=0, le=MAX_LR, description="AdamW peak learning rate")
    epochs: float = Field(
        1.0,
        gt=0,
        le=MAX_EPOCHS,
        description="passes over the training data (ignored when max_steps > 0)",
    )
    max_steps: MaxSteps = Field(-1, description="optimizer steps; -1 = run `epochs` epochs")
    batch_size: int = Field(
        4, ge=1, le=MAX_BATCH, description="examples per device per forward pass"
    )
    grad_accum: int = Field(
        1,
        ge=1,
        le=MAX_BATCH,
        description="gradient accumulation steps "
        "(global batch = batch_size x grad_accum x processes)",
    )
    max_length: int = Field(
        512, ge=16, le=MAX_TOKENS, description="truncate prompt+completion to this many tokens"
    )
    warmup_ratio: float = Field(
        0.0, ge=0, lt=1, description="share of steps with linear learning-rate warm-up"
    )
    lr_scheduler: str = Field(
        "linear", description="transformers scheduler name: linear, cosine, constant, ..."
    )
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    lora: bool = Field(
        False, description="train a LoRA adapter (peft) instead of all weights; merged when saved"
    )
    lora_r: int = Field(16, ge=1, le=4096, description="LoRA rank")
    lora_alpha: int = Field(32, ge=1, description="LoRA scaling alpha")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto (cuda if available, else cpu), cpu or cuda"
    )
    seed: Seed = Field(0, description="seed for data order, LoRA init and sampling")
    logging_steps: int = Field(
        1, ge=1, description="log loss/metrics every this many optimizer steps"
    )
    gradient_checkpointing: bool = Field(
        False, description="trade compute for memory (useful on GPU for long sequences)"
    )
    save_model: bool = Field(True, description="save the trained (merged) model to OUT/model")
    save_steps: int = Field(
        50, ge=1, description="checkpoint every N optimizer steps (and at the end), for --resume"
    )


@dataclass
class TrainResult:
    """What a training run produced."""

    model_dir: Path | None  # full merged model, loadable by HFBackend / resolve()
    log_history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)  # train_runtime, steps, final loss, ...


def precision_kwargs(device: str) -> dict[str, Any]:
    """fp32 on CPU with `use_cpu=True`, bf16 autocast on GPU (see platform notes) unless the
    GPU has no bf16 (pre-Ampere: fp32 there, as transformers would refuse bf16)."""
    import torch

    if device == "cpu":
        return {"use_cpu": True, "bf16": False, "fp16": False}
    return {"bf16": not torch.cuda.is_available() or torch.cuda.is_bf16_supported(), "fp16": False}


def load_trainable(spec: str, device: str = "cpu", fp32: bool = False) -> tuple[Any, Any]:
    """(model, tokenizer) from a model spec; fp32 on CPU, bf16 on GPU unless `fp32` (then fp32
    master weights under bf16 autocast, as `train sft` does). The model stays in CPU memory:
    the Trainer/accelerate places it (and shards it under DeepSpeed)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from selfteach.backends.models import resolve

    path = resolve(spec)
    dtype = torch.float32 if device == "cpu" or fp32 else torch.bfloat16
    try:
        tok = AutoTokenizer.from_pretrained(str(path))
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
    except OSError as e:
        raise SelfteachError(f"model {spec!r}: cannot load ({str(e).splitlines()[0]})") from None
    quantizer: Any = getattr(model, "hf_quantizer", None)
    if quantizer is not None:  # GGUF marker blocks fine-tuning
        quantizer.remove_quantization_config(model)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok


class LoraOptions(Protocol):
    """The LoRA fields of TrainConfig and SFTRunConfig."""

    lora: bool
    lora_r: int
    lora_alpha: int
    lora_dropout: float


class TrainerOptions(Protocol):
    """The optimisation fields every selfteach trainer config has (TrainConfig, SFTRunConfig)."""

    learning_rate: float
    epochs: float
    max_steps: int
    batch_size: int
    grad_accum: int
    warmup_ratio: float
    weight_decay: float
    seed: int
    save_steps: int


def lora_config(cfg: LoraOptions) -> Any:
    """A peft LoRA config over all linear layers except the LM head, or None."""
    if not cfg.lora:
        return None
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules="all-linear", task_type="CAUSAL_LM")


def trainer_kwargs(cfg: TrainerOptions, checkpoints: Path, device: str) -> dict[str, Any]:
    """TrainingArguments fields every selfteach trainer sets the same way (checkpoints go to
    `checkpoints`, two kept, for --resume)."""
    return dict(
        output_dir=str(checkpoints), learning_rate=cfg.learning_rate, num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps, per_device_train_batch_size=cfg.batch_size,
        # <1 means a ratio
        gradient_accumulation_steps=cfg.grad_accum, warmup_steps=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay, seed=cfg.seed, report_to="none",
        save_strategy="steps", save_steps=cfg.save_steps, save_total_limit=2,
        dataloader_num_workers=0, **precision_kwargs(device),
    )


def trl_common_kwargs(cfg: TrainConfig, out: Path, device: str) -> dict[str, Any]:
    """TrainingArguments fields shared by DPOConfig / GRPOConfig (checkpoints in OUT/trainer)."""
    return trainer_kwargs(cfg, out / "trainer", device) | dict(
        lr_scheduler_type=cfg.lr_scheduler, logging_steps=cfg.logging_steps,
        activation_checkpointing=cfg.gradient_checkpointing, disable_tqdm=False)


def is_main_process() -> bool:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0) == 0


def finish(trainer, cfg: TrainConfig, out: Path, title: str) -> TrainResult:
    """Save the merged model, the log history and training curves; return a TrainResult."""
    history = [dict(h) for h in trainer.state.log_history]
    metrics = next((h for h in reversed(history) if "train_runtime" in h), {})
    losses = [h["loss"] for h in history if "loss" in h]
    metrics = {
        **metrics,
        "train_loss": mean_train_loss(history),  # over all steps, across resumes
        "global_step": trainer.state.global_step,
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
    }
    model_dir = save_model(trainer, out / "model") if cfg.save_model else None
    if is_main_process():
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_log.jsonl").write_text(
            "".join(json.dumps(h, default=str) + "\n" for h in history)
        )
        plot_curves(history, out / "train_curves.png", title)
        # written last and atomically: its presence marks a finished run (see finished_result)
        atomic_write_text(out / "train_metrics.json", json.dumps(metrics, indent=2, default=str))
        for ckpt in (out / "trainer").glob("checkpoint-*"):  # large, and only --resume needs them
            shutil.rmtree(ckpt, ignore_errors=True)
    return TrainResult(model_dir=model_dir, log_history=history, metrics=metrics)


def save_model(trainer: Any, model_dir: Path) -> Path:
    """The trained model (LoRA merged in: one plain directory any backend loads) and its
    tokenizer, saved to `model_dir` by the main process."""
    trainer.accelerator.wait_for_everyone()
    model = trainer.accelerator.unwrap_model(trainer.model)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    if is_main_process():
        model.save_pretrained(str(model_dir), safe_serialization=True)
        trainer.processing_class.save_pretrained(str(model_dir))
    return model_dir


def finished_result(out: Path) -> TrainResult | None:
    """The result of a run in `out` that already finished (for --resume), else None."""
    f = out / "train_metrics.json"
    if not f.exists():
        return None
    lines = (out / "train_log.jsonl").read_text().splitlines()
    history = [json.loads(x) for x in lines if x.strip()]
    model_dir = out / "model"
    return TrainResult(model_dir=model_dir if model_dir.exists() else None, log_history=history,
                       metrics=json.loads(f.read_text()))


def mean_train_loss(history: list[dict[str, Any]]) -> float | None:
    """Mean training loss over every step trained, across resumes.

    The Trainer's `training_loss` averages only the steps of the last session; the log
    history (restored from the checkpoint on resume) holds every logged loss, each the mean
    over the steps since the previous log, so weighting by interval length gives the mean
    over all steps (exact with logging every step, as selfteach does)."""
    prev, total, steps = 0, 0.0, 0
    for h in history:
        if "loss" in h and "step" in h and h["step"] > prev:
            total += float(h["loss"]) * (h["step"] - prev)
            steps += h["step"] - prev
            prev = h["step"]
    return total / steps if steps else None


# ---- checkpoints and --resume --------------------------------------------------------------
_WEIGHTS = ("model.safetensors", "adapter_model.safetensors", "pytorch_model.bin",
            "adapter_model.bin")


def _safetensors_problem(path: Path) -> str | None:
    """Is the header readable and the file as long as the header says (a torn write is shorter)?"""
    try:
        with path.open("rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"),
                  default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return f"{path.name} is unreadable"
    return None if path.stat().st_size >= 8 + n + end else f"{path.name} is truncated"


def _torch_file_problem(path: Path) -> str | None:
    """torch.save files are zip archives whose directory is written last: a torn one has none."""
    if not path.exists():
        return f"no {path.name}"
    try:
        with zipfile.ZipFile(path):
            return None
    except (OSError, zipfile.BadZipFile):
        return f"{path.name} is truncated"


def checkpoint_problem(path: Path) -> str | None:
    """Why the Trainer checkpoint `path` cannot be resumed from (None: it is complete).

    transformers writes weights, optimizer, scheduler and RNG state, then trainer_state.json
    last; a kill -9 in between leaves a folder that `resume_from_checkpoint` fails on."""
    try:
        state = json.loads((path / "trainer_state.json").read_text())
    except FileNotFoundError:
        return "no trainer_state.json"
    except (OSError, ValueError):
        return "trainer_state.json is torn"
    if not isinstance(state, dict) or not isinstance(state.get("global_step"), int):
        return "trainer_state.json is torn"
    index = path / "model.safetensors.index.json"
    try:
        shards = (
            sorted(set(json.loads(index.read_text())["weight_map"].values()))
            if index.exists()
            else []
        )
    except (OSError, ValueError, KeyError, AttributeError):
        return f"{index.name} is torn"
    weights = [path / f for f in shards] or [path / w for w in _WEIGHTS if (path / w).exists()]
    if not weights:
        return "no model weights"
    deepspeed = any(path.glob("global_step*"))  # DeepSpeed keeps its own optimizer state there
    state = [] if deepspeed else [path / "optimizer.pt", path / "scheduler.pt"]
    files = weights + state + sorted(path.glob("rng_state*.pth"))
    for f in files:
        why = _safetensors_problem(f) if f.suffix == ".safetensors" else _torch_file_problem(f)
        if why:
            return why
    return None


def _step(path: Path) -> int:
    tail = path.name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def last_complete_checkpoint(folder: str | Path) -> str | None:
    """The newest complete `checkpoint-N` in `folder` (for `resume_from_checkpoint`), or None.

    Newer incomplete ones (a kill -9 during a checkpoint write) are renamed to
    `incomplete-checkpoint-N`, so neither this nor the Trainer's checkpoint rotation picks
    them up again, and each is reported in one line on stderr."""
    for ckpt in sorted(Path(folder).glob("checkpoint-*"), key=_step, reverse=True):
        why = checkpoint_problem(ckpt)
        if why is None:
            return str(ckpt)
        if not is_main_process():  # every rank reaches the same answer; only rank 0 renames
            continue
        dest = ckpt.with_name(f"incomplete-{ckpt.name}")
        shutil.rmtree(dest, ignore_errors=True)
        ckpt.rename(dest)
        print(f"{ckpt}: incomplete ({why}), set aside as {dest.name}; "
              "resuming from an earlier checkpoint", file=sys.stderr)
    return None


def resume_checkpoint(folder: Path, resume: bool) -> str | None:
    """The checkpoint to continue from with --resume; without it, leftover checkpoints of an
    interrupted run are an error (checked before any model loads) rather than silently mixed in."""
    if resume:
        return last_complete_checkpoint(folder)
    if any(Path(folder).glob("checkpoint-*")):
        raise SelfteachError(f"{folder}: checkpoints of an interrupted run; pass --resume to "
                             "continue it or choose another --out")
    return None


def crash_points():
    """A TrainerCallback for the test hook `selfteach.runs.crash_point`: die after optimizer
    step N (`train:step:N`, before that step's log and checkpoint) or right after checkpoint
    N is written (`train:save:N`). Built on call: transformers loads only when training."""
    from transformers import TrainerCallback

    class CrashPoints(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            crash_point(f"train:step:{state.global_step}")

        def on_save(self, args, state, control, **kwargs):
            crash_point(f"train:save:{state.global_step}")

    return CrashPoints()


def progress_callback(label: str, enabled: bool = True) -> Any:
    """A TrainerCallback drawing selfteach's progress bar (steps done / total, time left and the
    latest loss) in place of the Trainer's tqdm bar and per-step log lines."""
    from transformers import TrainerCallback

    from selfteach.progress import ProgressBar

    class Progress(TrainerCallback):
        bar: ProgressBar | None = None
        step = 0

        def on_train_begin(self, args, state, control, **kwargs):
            self.step = state.global_step
            self.bar = ProgressBar(enabled, state.max_steps, state.global_step, label).__enter__()

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.advance(state.global_step - self.step)
                self.step = state.global_step

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.bar is not None and logs and "loss" in logs:
                self.bar.describe(f"{label} loss {float(logs['loss']):.4f}")

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.__exit__(None, None, None)
                self.bar = None

    return Progress()


CURVE_KEYS = ["loss", "rewards/margins", "rewards/accuracies", "reward", "kl", "learning_rate"]


def plot_curves(history: list[dict[str, Any]], path: Path, title: str) -> Path | None:
    """One small panel per logged quantity that exists (loss, DPO margins, GRPO reward ...)."""
    keys = [k for k in CURVE_KEYS if any(k in h for h in history)]
    if not keys:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8), squeeze=False)
    for ax, k in zip(axes[0], keys, strict=True):
        pts = [(h.get("step", i), h[k]) for i, h in enumerate(history) if k in h]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".")
        ax.set_title(k, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

