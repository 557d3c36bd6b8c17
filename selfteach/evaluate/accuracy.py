"""Accuracy of a model on problems: greedy or sampled, with pass@k and maj@k.

Per item: k samples (k=1 greedy by default), each answer extracted and compared with the
gold answer (math-verify for math, the letter for multiple choice). Reported with
bootstrap 95% intervals over items (`selfteach.stats`). pass@k is the unbiased estimator
of Chen et al. 2021 (arXiv 2107.03374, eq. 1); maj@k is the accuracy of the most common
extracted answer (self-consistency, Wang et al. 2022, arXiv 2203.11171).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from selfteach.backends.base import Backend, OnDevice, SamplingParams
from selfteach.data.answers import answers_match, extract_answer, extract_choice, verify_timeouts
from selfteach.data.records import AccuracyRow, Problem
from selfteach.errors import SelfteachError
from selfteach.evaluate.prompts import solve_prompt
from selfteach.runner import Batch, Outputs, run_items
from selfteach.runs import RunDir
from selfteach.stats import majority, mean_ci, pass_at_k
from selfteach.validate import MAX_BATCH, MAX_SAMPLES, MAX_TEMPERATURE, MAX_TOKENS, Seed


class AccuracyConfig(BaseModel):
    """Settings of `selfteach eval accuracy`."""

    model_config = ConfigDict(allow_inf_nan=False)

    model: str = Field(
        "smollm2-135m", description="model alias, directory, .gguf, hub id or server URL"
    )
    data: str = Field(
        "builtin:arithmetic", description="data spec: JSONL/parquet/dataset dir or builtin:NAME"
    )
    limit: int | None = Field(None, ge=1, description="evaluate the first N problems only")
    samples: int = Field(
        1, ge=1, le=MAX_SAMPLES, description="k samples per problem (pass@k, maj@k)"
    )
    temperature: float = Field(
        0.0,
        ge=0.0,
        le=MAX_TEMPERATURE,
        description="0 = greedy (with samples > 1, 0 means 0.7; config.yaml records what ran)",
    )
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="nucleus sampling mass")
    max_new_tokens: int = Field(
        256, ge=1, le=MAX_TOKENS, description="cap on generated tokens per sample"
    )
    batch_size: int = Field(8, ge=1, le=MAX_BATCH, description="problems per generation batch")
    seed: Seed = Field(0, description="sampling seed")
    fields: dict[str, str] = Field(default_factory=dict, description="field mapping for JSONL data")
    serve: bool = Field(
        False, description="generate on a llama.cpp server started on the model's GGUF"
    )


def score_item(problem: Problem, texts: list[str], tokens: list[int]) -> AccuracyRow:
    """Per-item record: answers, correctness, and the item's pass@k / maj@k."""
    kind = "choice" if problem.choices else "math"
    timeouts0 = verify_timeouts()
    if kind == "choice":
        answers = [extract_choice(t) for t in texts]
        correct = [a is not None and a == str(problem.answer).upper() for a in answers]
    else:
        answers = [extract_answer(t) for t in texts]
        correct = [answers_match(a, problem.answer) for a in answers]
    timed_out = verify_timeouts() - timeouts0  # before maj@k re-checks one of the same answers
    maj = majority(answers)
    maj_ok = maj is not None and (
        maj == str(problem.answer).upper()
        if kind == "choice"
        else answers_match(maj, problem.answer)
    )
    k = len(texts)
    return AccuracyRow(
        id=problem.id,
        gold=problem.answer,
        answers=answers,
        correct=correct,
        accuracy=sum(correct) / k,
        pass_at_k=pass_at_k(k, sum(correct), k),
        maj_at_k=float(maj_ok),
        outputs=texts,
        verify_timeouts=timed_out,
        tokens=tokens,
    )


def summarize(items: list[dict]) -> dict:
    """Mean and 95% bootstrap interval of accuracy, pass@k and maj@k over items."""
    if not items:
        raise SelfteachError("no items were evaluated")
    return {
        name: mean_ci([it[name] for it in items]) for name in ("accuracy", "pass_at_k", "maj_at_k")
    } | {
        "n": len(items),
        "k": len(items[0]["correct"]),
        "verify_timeouts": sum(it.get("verify_timeouts", 0) for it in items),
    }  # counted as wrong


def accuracy(
    model: str | Backend,
    problems: list[Problem] | str,
    samples: int = 1,
    temperature: float | None = None,
    max_new_tokens: int = 256,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 8,
    run: RunDir | None = None,
    progress: bool = True,
) -> dict:
    """Evaluate `model` on `problems` (records, or a data spec like "builtin:arithmetic").
    Returns `summarize(...)` plus `items` and the backend's `usage`.

    >>> r = accuracy("smollm2-135m", load_problems("data.jsonl", limit=50))
    >>> r["accuracy"]["mean"], r["maj_at_k"]

    `temperature` defaults to 0 (greedy) for one sample and 0.7 for several. With `run`,
    per-item outputs go to `outputs.jsonl` as they finish and items already there are
    skipped (resume).
    """
    from selfteach.backends import load_backend
    from selfteach.data.loaders import load_problems

    if isinstance(problems, str):
        problems = load_problems(problems)
    backend = load_backend(model) if isinstance(model, str) else model
    missing = [p.id for p in problems if p.answer is None]
    if missing:
        raise SelfteachError(
            f"{len(missing)} problems have no gold answer (first id {missing[0]!r}); "
            "accuracy needs answers"
        )
    if temperature is None:
        temperature = 0.0 if samples == 1 else 0.7
    params = SamplingParams(
        n=samples, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed
    )

    def solve(batch: Batch[Problem]) -> list[AccuracyRow]:
        gens = backend.generate([solve_prompt(backend, p) for p in batch.items],
                                params.model_copy(update={"seed": batch.seed()}))
        return [score_item(p, [x.text for x in g], [x.num_tokens for x in g])
                for p, g in zip(batch.items, gens, strict=True)]

    rows = run_items(problems, solve, Outputs("outputs.jsonl", AccuracyRow), seed=seed,
                     batch_size=batch_size, run=run, label="evaluating", progress=progress,
                     crash="accuracy")
    items = [r.to_row() for r in rows]
    return summarize(items) | {"items": items, "usage": backend.usage.as_dict()}


def effective_config(config: AccuracyConfig) -> AccuracyConfig:
    """`config` with the temperature that actually runs: temperature 0 with several samples
    means 0.7 (k identical greedy samples would make pass@k and maj@k meaningless)."""
    if config.samples > 1 and config.temperature == 0:
        return config.model_copy(update={"temperature": 0.7})
    return config


def run_accuracy(
    config: AccuracyConfig, out: str | Path, resume: bool = False, progress: bool = True
) -> dict:
    """`selfteach eval accuracy`: load data and model, evaluate, write the run directory."""
    from selfteach.backends import load_backend
    from selfteach.data.loaders import load_problems

    problems = load_problems(
        config.data,
        fields=config.fields,
        limit=config.limit,
        require_answers=True,
        seed=config.seed,
    )
    # before the run dir: a bad model leaves nothing behind
    backend = load_backend(config.model, serve=config.serve)
    config = effective_config(config)  # config.yaml and the summary record the temperature that ran
    device = backend.device if isinstance(backend, OnDevice) else None
    run = RunDir.create(out, config, resume=resume, seed=config.seed, device=device)
    result = accuracy(backend, problems, samples=config.samples, temperature=config.temperature,
                      max_new_tokens=config.max_new_tokens, top_p=config.top_p, seed=config.seed,
                      batch_size=config.batch_size, run=run, progress=progress)
    result["temperature"] = config.temperature
    summary = {k: v for k, v in result.items() if k != "items"}
    run.write_json("metrics.json", summary)
    run.log_metrics(
        {
            "event": "accuracy",
            **{k: v["mean"] for k, v in summary.items() if isinstance(v, dict) and "mean" in v},
        }
    )
    run.write_json("summary.json", summary_tables(config, summary))
    return result


def summary_tables(config: AccuracyConfig, s: dict) -> dict:
    rows = [
        [name, f"{s[key]['mean']:.3f}", f"[{s[key]['lo']:.3f}, {s[key]['hi']:.3f}]"]
        for name, key in (
            ("accuracy (mean over samples)", "accuracy"),
            (f"pass@{s['k']}", "pass_at_k"),
            (f"maj@{s['k']}", "maj_at_k"),
        )
    ]
    return {
        "title": f"Accuracy of {config.model} on {config.data}",
        "tables": [
            {
                "name": f"{s['n']} problems, k={s['k']}",
                "columns": ["metric", "value", "95% CI (bootstrap)"],
                "rows": rows,
            }
        ],
        "notes": [
            f"temperature {s.get('temperature', config.temperature)}, "  # what ran
            f"max_new_tokens {config.max_new_tokens}, seed {config.seed}",
            f"answer checks that timed out (counted wrong): {s['verify_timeouts']}",
        ],
    }
