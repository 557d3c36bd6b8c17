"""Anytime reasoning under a token budget: quality curves and the Anytime Index.

Protocol of AnytimeReasoner (arXiv 2505.13438) as used by "Budget-Aware Anytime Reasoning
with LLM-Synthesized Preference Data" (arXiv 2601.11038), see docs/methods.md section 5:

1. generate each reasoning trace once, up to the largest budget b_T;
2. for every budget b_t, keep exactly the first b_t trace tokens, append a forced-answer
   suffix ("\\nTherefore, the final answer is", or "\\n\\n</think>\\n\\n**Final Answer**\\n"
   for thinking models) and let the model write a short answer; a trace that ended on its
   own within b_t tokens is scored as it is;
3. Q_t = mean quality at b_t (accuracy, or constraint satisfaction rate for planning), and
   the Anytime Index is the normalised area under the best-so-far curve Q*_t = max_{i<=t} Q_i:

       AI = sum_{t=1}^{T-1} (Q*_t + Q*_{t+1})/2 * (b_{t+1} - b_t) / ((b_T - b_1) * Q_max)

Cost: the forced answers continue from the trace's KV cache when the backend offers
`generate_from_shared_prefix` (HF backend), so T budgets cost one trace plus T short
answers rather than T traces; over a server the token-id prompts share a prefix, which
vLLM / llama.cpp prefix caching reuses.
"""

from __future__ import annotations

import math
import string
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from selfteach.backends.base import Backend, OnDevice, SamplingParams, TokenContinuation, require
from selfteach.data.answers import verify_timeouts
from selfteach.data.records import AnytimeRow, AnytimeSample, BudgetPoint, Problem
from selfteach.errors import SelfteachError
from selfteach.evaluate.forced_answers import (  # noqa: F401  (PLAIN_SUFFIX, ...: importable from here too)
    DEFAULT_TEMPLATE,
    PLAIN_SUFFIX,
    THINK_SUFFIX,
    build_prompt_ids,
    default_suffix,
    force_answers,
    forced_answer_plan,
    stop_strings,
)
from selfteach.evaluate.scorers import check_scorable, format_question, get_scorer, predicted
from selfteach.report.plots import plot_curves
from selfteach.runner import Batch, Outputs, run_items
from selfteach.validate import MAX_BATCH, MAX_SAMPLES, MAX_TEMPERATURE, MAX_TOKENS, Seed

OUTPUTS = "outputs.jsonl"


class AnytimeConfig(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)

    """Everything `selfteach eval anytime` does, recorded in the run's config.yaml."""

    model: str = Field(
        "smollm2-135m", description="model alias, directory, GGUF file, hub id or server URL"
    )
    backend: str = Field("auto", description="hf, openai or auto (openai for http URLs)")
    serve: bool = Field(False, description="run on a llama.cpp server started on the model's GGUF")
    data: str = Field(
        "builtin:arithmetic",
        description="JSONL/parquet/HF-dir path or builtin:NAME; needs gold answers",
    )
    fields: dict[str, str] = Field(
        default_factory=dict, description="field mapping, e.g. question=prompt_0shot"
    )
    limit: int | None = Field(None, ge=1, description="evaluate only the first N items")
    budgets: list[int] = Field(
        [32, 64, 128, 256, 512], description="token budgets b_1 < ... < b_T for the trace"
    )
    samples: int = Field(
        1, ge=1, le=MAX_SAMPLES, description="traces per item; quality averages over them"
    )
    method: Literal["plain", "pdp", "pdp+"] = Field(
        "plain",
        description="plain prompt, or preference-data prompting "
        "(pdp: better/worse pairs, pdp+: better only)",
    )
    scorer: Literal["auto", "math", "choice", "trip"] = Field(
        "auto",
        description="math answers, multiple-choice letter, or NaturalPlan trip CSR; "
        "auto picks per item",
    )
    prompt_template: str = Field(
        DEFAULT_TEMPLATE, description="reasoning prompt; must contain {question}"
    )
    system: str | None = Field(None, description="system message for chat models")
    suffix: str | None = Field(
        None,
        description="forced-answer suffix; None picks by model family "
        "(</think> suffix for thinking chat templates, else plain)",
    )
    answer_tokens: int = Field(100, ge=1, le=1024, description="max tokens of each forced answer")
    answer_stop: list[str] | None = Field(
        None,
        description="stop strings ending a forced answer; None: a blank "
        "line, except for trip plans (which contain blank lines)",
    )
    temperature: float | None = Field(
        None,
        ge=0.0,
        le=MAX_TEMPERATURE,
        description="trace sampling temperature; None: 0 (greedy) for 1 sample, 0.7 for more",
    )
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="nucleus mass when sampling")
    seed: Seed = Field(0, description="sampling seed (each batch: this seed and the ids it holds)")
    batch_size: int = Field(8, ge=1, le=MAX_BATCH, description="items per trace-generation batch")
    shared_prefix: bool = Field(
        True,
        description="reuse the trace's KV cache for the forced answers when the "
        "backend supports it (HF); False re-reads each prefix",
    )
    pdp_k: int = Field(
        4,
        ge=2,
        le=MAX_SAMPLES,
        description="PDP: attempts sampled per item for the in-context examples",
    )
    pdp_budget: int | None = Field(
        None,
        ge=1,
        le=MAX_TOKENS,
        description="PDP: token budget of each attempt; None: the median budget",
    )
    pdp_pairs: int = Field(
        1,
        ge=1,
        le=MAX_SAMPLES,
        description="PDP: (better, worse) pairs shown (pdp+: better attempts shown)",
    )
    pdp_judge: Literal["pointwise", "pairwise", "vote"] = Field(
        "pointwise",
        description="PDP self-ranking: the model's P(correct) per attempt, its pairwise preference "
        "(both orders), or agreement with the majority answer (math/choice only)",
    )
    pdp_temperature: float = Field(
        0.8, gt=0.0, le=MAX_TEMPERATURE, description="PDP: sampling temperature of the attempts"
    )

    @field_validator("budgets")
    @classmethod
    def _budgets(cls, v: list[int]) -> list[int]:
        check_budgets(v)
        return v

    @field_validator("prompt_template")
    @classmethod
    def _template(cls, v: str) -> str:
        check_template(v, required={"question"}, name="--prompt-template")
        return v

    @field_validator("suffix")
    @classmethod
    def _suffix(cls, v: str | None) -> str | None:
        if v is not None:
            check_template(v, required=set(), name="--suffix")
            if not v.strip():
                raise SelfteachError(
                    "--suffix: empty; give the text that asks for the final answer"
                )
        return v

    @property
    def trace_temperature(self) -> float:
        if self.temperature is not None:
            return self.temperature
        return 0.0 if self.samples == 1 else 0.7


# ---- validation ------------------------------------------------------------------------

def parse_budgets(text: str) -> list[int]:
    """"32,64,128" -> [32, 64, 128], checked (see `check_budgets`)."""
    try:
        budgets = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise SelfteachError(
            f"--budgets {text!r}: expected comma-separated integers, e.g. 32,64,128"
        ) from None
    check_budgets(budgets, text)
    return budgets


def check_budgets(budgets: list[int], shown: str | None = None) -> None:
    shown = shown or ",".join(map(str, budgets))
    if not budgets:
        raise SelfteachError("--budgets: empty; give e.g. 32,64,128")
    bad = [b for b in budgets if b <= 0]
    if bad:
        raise SelfteachError(f"--budgets {shown}: budget {bad[0]} is not positive")
    for a, b in zip(budgets, budgets[1:], strict=False):
        if b <= a:
            raise SelfteachError(f"--budgets {shown}: not strictly increasing ({a} then {b})")


def check_template(template: str, required: set[str], name: str) -> None:
    """A template's `{slots}` must be exactly known ones and include `required`."""
    try:
        slots = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as e:
        raise SelfteachError(
            f"{name} {template!r}: bad braces ({e}); write {{{{ and }}}} for literal braces"
        ) from None
    missing = required - slots
    if missing:
        raise SelfteachError(f"{name} {template!r}: no {{{sorted(missing)[0]}}} slot")
    unknown = slots - required
    if unknown:
        raise SelfteachError(
            f"{name} {template!r}: unknown slot {{{sorted(unknown)[0]}}}"
            + (f" (only {{{', '.join(sorted(required))}}})" if required else " (takes no slots)")
        )


# ---- metrics ---------------------------------------------------------------------------

def check_quality(
    quality: list[float], budgets: list[int] | None = None, where: str = "quality"
) -> None:
    """A quality that is not a finite number (NaN, inf, None) is refused, naming the point:
    max() skips a NaN silently, so a curve with one would be summarised as if the point did
    not exist (a leading NaN even gave a best-so-far of -inf)."""
    for t, q in enumerate(quality):
        if isinstance(q, bool) or not isinstance(q, int | float) or not math.isfinite(q):
            at = f" (budget {budgets[t]})" if budgets is not None and t < len(budgets) else ""
            raise SelfteachError(
                f"{where}[{t}]{at} is {q!r}: every quality must be a finite number"
            )


def best_so_far(quality: list[float]) -> list[float]:
    """Q*_t = max_{i<=t} Q_i (finite qualities only: a NaN is refused, not skipped)."""
    check_quality(quality)
    out, best = [], -math.inf
    for q in quality:
        best = max(best, q)
        out.append(best)
    return out


def anytime_index(budgets: list[int], quality: list[float], q_max: float = 1.0) -> float:
    """Normalised area under the best-so-far curve (arXiv 2601.11038; docs/methods.md s.5).

    AI = sum_{t=1}^{T-1} (Q*_t + Q*_{t+1})/2 * (b_{t+1} - b_t) / ((b_T - b_1) * Q_max).
    With a single budget the area is degenerate; its limit Q*_1 / Q_max is returned.
    """
    check_budgets(list(budgets))
    if len(quality) != len(budgets):
        raise SelfteachError(
            f"anytime_index: {len(quality)} quality values for {len(budgets)} budgets"
        )
    if not q_max > 0 or not math.isfinite(q_max):
        raise SelfteachError(f"anytime_index: q_max {q_max} must be positive")
    check_quality(quality, list(budgets), "anytime_index: quality")
    qs = best_so_far(quality)
    if len(budgets) == 1:
        return qs[0] / q_max
    area = sum(
        (qs[t] + qs[t + 1]) / 2 * (budgets[t + 1] - budgets[t]) for t in range(len(budgets) - 1)
    )
    return area / ((budgets[-1] - budgets[0]) * q_max)


# ---- the protocol ----------------------------------------------------------------------

def answer_stop(cfg: AnytimeConfig, kinds: list[str]) -> list[str]:
    return stop_strings(cfg.answer_stop, kinds)


def anytime_items(
    backend: Backend,
    problems: list[Problem],
    prompts: list[list[int]],
    kinds: list[str],
    cfg: AnytimeConfig,
    suffix: str,
    seed: int,
) -> list[AnytimeRow]:
    """Run the protocol on a batch of items; one output row per item."""
    budgets = cfg.budgets
    trace_params = SamplingParams(
        n=cfg.samples,
        max_new_tokens=budgets[-1],
        temperature=cfg.trace_temperature,
        top_p=cfg.top_p,
        seed=seed,
    )
    traces = backend.generate(prompts, trace_params)
    flat_prompts = [prompts[i] for i, ts in enumerate(traces) for _ in ts]
    flat_traces = [t for ts in traces for t in ts]
    answer_params = SamplingParams(
        max_new_tokens=cfg.answer_tokens, stop=answer_stop(cfg, kinds), seed=seed
    )
    answers = force_answers(
        backend,
        flat_prompts,
        flat_traces,
        budgets,
        backend.tokenize(suffix),
        answer_params,
        cfg.shared_prefix,
    )
    rows, k = [], 0
    for p, kind, ts in zip(problems, kinds, traces, strict=True):
        scorer = get_scorer(kind)
        samples, timeouts0 = [], verify_timeouts()
        for t in ts:
            per_budget = []
            for b, a in zip(budgets, answers[k], strict=True):
                text = t.text if a is None else suffix + a.text
                per_budget.append(BudgetPoint(budget=b, forced=a is not None,
                                              answer=None if a is None else text,
                                              pred=predicted(text, kind), score=scorer(text, p)))
            samples.append(AnytimeSample(trace=t.text, trace_tokens=t.num_tokens,
                                         finished=t.finish_reason == "stop", budgets=per_budget))
            k += 1
        quality = [sum(s.budgets[j].score for s in samples) / len(samples)
                   for j in range(len(budgets))]
        rows.append(
            AnytimeRow(
                id=p.id,
                gold=p.answer,
                scorer=kind,
                quality=quality,
                samples=samples,
                verify_timeouts=verify_timeouts() - timeouts0,
            )
        )
    return rows


# ---- the run ---------------------------------------------------------------------------

def summarize(
    rows: list[dict[str, Any]], cfg: AnytimeConfig, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Quality per budget (with bootstrap CI over items), best-so-far, mean, Anytime Index."""
    from selfteach.stats import mean_ci

    budgets = cfg.budgets
    if not rows:
        raise SelfteachError("no evaluated items to summarise")
    for r in rows:  # a NaN would make the mean NaN and the index silently skip the point
        check_quality(r["quality"], budgets, f"item {r.get('id')!r}: quality")
    cis = [mean_ci([r["quality"][j] for r in rows]) for j in range(len(budgets))]
    quality = [c["mean"] for c in cis]
    best = best_so_far(quality)
    forced = [sum(s["budgets"][j]["forced"] for r in rows for s in r["samples"])
              / sum(len(r["samples"]) for r in rows) for j in range(len(budgets))]
    ai = anytime_index(budgets, quality)
    curve = {
        "model": cfg.model,
        "method": cfg.method,
        "data": cfg.data,
        "budgets": budgets,
        "quality": quality,
        "ci": [[c["lo"], c["hi"]] for c in cis],
        "best_so_far": best,
        "anytime_index": ai,
        "mean_quality": sum(quality) / len(quality),
        "items": len(rows),
        "samples": cfg.samples,
        "label": f"{cfg.model} {cfg.method}",
        **(extra or {}),
        # counted as quality 0
        "verify_timeouts": sum(r.get("verify_timeouts", 0) for r in rows),
    }
    trace_tokens = [s["trace_tokens"] for r in rows for s in r["samples"]]
    summary = {
        "title": f"Anytime evaluation: {cfg.model} ({cfg.method}) on {cfg.data}",
        "tables": [
            {
                "name": "quality by budget",
                "columns": ["budget", "quality", "ci_lo", "ci_hi", "best_so_far", "forced_share"],
                "rows": [
                    [b, round(q, 4), round(c["lo"], 4), round(c["hi"], 4), round(s, 4), round(f, 4)]
                    for b, q, c, s, f in zip(budgets, quality, cis, best, forced, strict=True)
                ],
            },
            {
                "name": "anytime summary",
                "columns": [
                    "model",
                    "method",
                    "items",
                    "samples",
                    "anytime_index",
                    "mean_quality",
                    "final_quality",
                    "mean_trace_tokens",
                ],
                "rows": [
                    [
                        cfg.model,
                        cfg.method,
                        len(rows),
                        cfg.samples,
                        round(ai, 4),
                        round(curve["mean_quality"], 4),
                        round(quality[-1], 4),
                        round(sum(trace_tokens) / len(trace_tokens), 1),
                    ]
                ],
            },
        ],
        "notes": [
            "Anytime Index = sum_t (Q*_t + Q*_{t+1})/2 (b_{t+1}-b_t) / ((b_T-b_1) Q_max), Q*_t "
            "best-so-far, "
            "Q_max = 1 (arXiv 2601.11038).",
            "forced_share: fraction of traces still running at the budget (answered through the "
            "suffix); "
            "the rest ended on their own and were scored as written.",
            f"quality CI: 95% bootstrap over items; trace temperature {cfg.trace_temperature}.",
            f"answer checks that timed out (scored 0): {curve['verify_timeouts']}.",
        ],
    }
    return {"summary": summary, "curve": curve}


def compare_plot(
    run_dirs: list[str | Path], out_png: str | Path, labels: list[str] | None = None
) -> Path:
    """One plot of several `eval anytime` runs (for `selfteach report --compare`). Each run
    dir must hold the anytime.json an anytime run writes; `labels` overrides the legend."""
    import json

    curves = []
    for i, d in enumerate(run_dirs):
        f = Path(d) / "anytime.json"
        if not f.exists():
            raise SelfteachError(
                f"{d}: no anytime.json (not a finished `selfteach eval anytime` run)"
            )
        c = json.loads(f.read_text())
        if not isinstance(c, dict) or not isinstance(c.get("quality"), list):
            raise SelfteachError(f"{f}: no 'quality' list (not an anytime.json)")
        check_quality(c["quality"], c.get("budgets"), f"{f}: quality")
        if labels:
            c["label"] = labels[i]
        curves.append(c)
    if labels and len(labels) != len(curves):
        raise SelfteachError(f"compare_plot: {len(labels)} labels for {len(curves)} runs")
    return plot_curves(curves, out_png, title="anytime quality by run (dashed: best so far)")


def evaluate_anytime(
    cfg: AnytimeConfig,
    out: str | Path,
    resume: bool = False,
    backend: Backend | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run `selfteach eval anytime`: outputs.jsonl, summary.json, anytime.json, anytime.png in
    `out`. Checks everything it can (budgets, templates, answers, scorers) before generating."""
    from selfteach.data.loaders import load_problems
    from selfteach.runs import RunDir

    problems = load_problems(
        cfg.data, fields=cfg.fields or None, limit=cfg.limit, require_answers=True, seed=cfg.seed
    )
    if not problems:
        raise SelfteachError(f"{cfg.data}: no items")
    kinds = check_scorable(problems, cfg.scorer, cfg.data)
    if cfg.method != "plain":
        from selfteach.evaluate.pdp import check_pdp

        check_pdp(cfg, kinds)
    if backend is None:
        from selfteach.backends import load_backend

        backend = load_backend(cfg.model, cfg.backend, serve=cfg.serve)
    require(backend, TokenContinuation, "eval anytime")  # traces are cut at exact token counts
    suffix = cfg.suffix if cfg.suffix is not None else default_suffix(backend)
    device = backend.device if isinstance(backend, OnDevice) else None
    run = RunDir.create(out, cfg, resume=resume, seed=cfg.seed, device=device)
    usage0 = backend.usage.as_dict()
    t0 = time.time()

    def evaluate(batch: Batch[tuple[Problem, str]]) -> list[AnytimeRow]:
        probs, ks = [p for p, _ in batch.items], [k for _, k in batch.items]
        pdp_info: list[dict] = [{} for _ in probs]
        if cfg.method == "plain":
            prompts = [
                build_prompt_ids(backend, format_question(p), cfg.prompt_template, cfg.system)
                for p in probs
            ]
        else:
            from selfteach.evaluate.pdp import pdp_prompts

            prompts, pdp_info = pdp_prompts(backend, probs, ks, cfg, suffix, batch.seed())
        rows = anytime_items(backend, probs, prompts, ks, cfg, suffix, batch.seed())
        return [row.model_copy(update={"prompt_tokens": len(prompt), "pdp": info or None})
                for row, info, prompt in zip(rows, pdp_info, prompts, strict=True)]

    done = run_items(
        list(zip(problems, kinds, strict=True)),
        evaluate,
        Outputs(OUTPUTS, AnytimeRow),
        seed=cfg.seed,
        batch_size=cfg.batch_size,
        run=run,
        item_id=lambda pk: pk[0].id,
        label=f"anytime {cfg.method}",
        progress=progress,
        transient=False,
        crash="anytime",
    )
    rows = [r.to_row() for r in done]
    usage1 = backend.usage.as_dict()
    cost = {
        k: usage1.get(k, 0) - usage0.get(k, 0)
        for k in usage1
        if isinstance(usage1.get(k), int | float)
    }
    result = summarize(
        rows,
        cfg,
        extra={
            "suffix": suffix,
            "seconds_this_session": round(time.time() - t0, 2),
            "usage_this_session": cost,
        },
    )
    run.write_json("summary.json", result["summary"])
    run.write_json("anytime.json", result["curve"])
    plot_curves([result["curve"]], run.file("anytime.png"),
                title=f"{cfg.model} ({cfg.method}) on {Path(cfg.data).name}; dashed: best so far")
    run.log_metrics({"anytime_index": result["curve"]["anytime_index"],
                     "mean_quality": result["curve"]["mean_quality"], "items": len(rows)})
    return result
