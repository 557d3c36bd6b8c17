"""DPO on preference pairs through TRL's DPOTrainer.

Direct Preference Optimization (Rafailov et al. 2023, arXiv 2305.18290, eq. 7):

    L = -log sigmoid(beta * ([log pi(y_w|x) - log ref(y_w|x)] - [log pi(y_l|x) - log ref(y_l|x)]))

selfteach only configures TRL: it reads a pairs file (TRL's prompt/chosen/rejected format,
`selfteach.data.records.PreferencePair`), loads the model, picks precision for the device,
and wires the reference model, which is

- the adapter-disabled base model with `--lora` (no second copy in memory),
- precomputed reference log-probs with `--precompute-ref` (the default: the reference is
  frozen, so one pass over the pairs gives the same numbers as a reference forward at
  every step, and training is ~2x faster on CPU),
- otherwise a second frozen copy of the model.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError

from selfteach.data.jsonl import iter_jsonl_at
from selfteach.data.records import PreferencePair
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

# TRL's DPO loss names (DPOConfig.loss_type), checked before anything is loaded.
DPOLoss = Literal[
    "sigmoid",
    "hinge",
    "ipo",
    "exo_pair",
    "nca_pair",
    "robust",
    "bco_pair",
    "sppo_hard",
    "aot",
    "aot_unpaired",
    "apo_zero",
    "apo_down",
    "discopop",
    "sft",
    "sigmoid_norm",
]


class DPOArgs(TrainConfig):
    """DPO options (TRL DPOConfig names in brackets)."""

    beta: float = Field(0.1, gt=0, le=100, description="KL strength of the implicit reward [beta]")
    loss_type: DPOLoss = Field(
        "sigmoid", description="TRL DPO loss: sigmoid (DPO), ipo, hinge, robust, ... [loss_type]"
    )
    precompute_ref: bool = Field(
        True,
        description="compute reference log-probs once before training "
        "[precompute_ref_log_probs]; exact, and faster",
    )
    learning_rate: float = Field(5e-6, gt=0, le=1.0, description="AdamW peak learning rate")


def read_pairs(path: str | Path) -> list[PreferencePair]:
    """Pairs from a JSONL file; a malformed line raises an error naming file, line and field.
    Columns other than prompt/chosen/rejected (TRL datasets carry ids, scores, ...) are ignored."""
    pairs = []
    for i, row in iter_jsonl_at(path):
        try:
            pairs.append(
                PreferencePair(**{k: row[k] for k in ("prompt", "chosen", "rejected") if k in row})
            )
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(x) for x in err["loc"]) or "row"
            raise SelfteachError(f"{path}:{i}: field {loc!r}: {err['msg']}") from None
        if pairs[-1].chosen == pairs[-1].rejected:
            raise SelfteachError(f"{path}:{i}: chosen and rejected are identical")
    return pairs


def pairs_dataset(pairs: list[PreferencePair]):
    from datasets import Dataset

    return Dataset.from_list(
        [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs]
    )


def dpo_config(args: DPOArgs, out: Path, device: str):
    from trl import DPOConfig

    return DPOConfig(
        **trl_common_kwargs(args, out, device),
        beta=args.beta,
        loss_type=[args.loss_type],
        max_length=args.max_length,
        precompute_ref_log_probs=args.precompute_ref,
    )


def train_dpo(
    pairs: list[PreferencePair] | str | Path,
    args: DPOArgs | None = None,
    out: str | Path = "runs/dpo",
    model=None,
    tokenizer=None,
    resume: bool = False,
) -> TrainResult:
    """Train `args.model` (or the given model object) with DPO on `pairs`; save to OUT/model.

    Returns a `TrainResult` (model directory, TRL log history with loss and reward margins).
    With `resume`, a finished run in `out` is returned as it is, and an interrupted one
    continues from its last complete checkpoint (every `args.save_steps` steps).
    """
    from trl import DPOTrainer

    args = args or DPOArgs()
    out = Path(out)
    if not isinstance(pairs, list):
        pairs = read_pairs(pairs)
    if not pairs:
        raise SelfteachError("no preference pairs to train on")
    if resume and (done := finished_result(out)):
        return done
    ckpt = resume_checkpoint(out / "trainer", resume)  # before the model loads
    device = pick_device(args.device)
    if model is None:
        model, tokenizer = load_trainable(args.model, device)
    peft = lora_config(args)
    # TRL reloads a reference by the model's name when none is given; a model object has no
    # usable name (platform notes), so give a frozen copy unless LoRA/precompute make it moot.
    ref = None if (peft is not None or args.precompute_ref) else copy.deepcopy(model).eval()
    trainer = DPOTrainer(
        model=model,
        ref_model=ref,
        args=dpo_config(args, out, device),
        train_dataset=pairs_dataset(pairs),
        processing_class=tokenizer,
        peft_config=peft,
        callbacks=[crash_points()],
    )
    trainer.train(resume_from_checkpoint=ckpt)
    return finish(trainer, args, out, f"DPO ({len(pairs)} pairs, beta={args.beta})")
