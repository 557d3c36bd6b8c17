"""Running the judge over a data set into a run directory, and summarising it.

`run_judge` samples K judgments per item (resumable: one JSON line per finished item in
`judgments.jsonl`); `summarize` turns the records into summary.json tables (accuracy per
subset for every k, with and without the meta RM; failure and tie rates) and a PNG
accuracy-vs-k curve, which `selfteach report` renders.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Annotated

from pydantic import Field

from selfteach.data.records import Judgment, judged_item
from selfteach.errors import SelfteachError
from selfteach.judge.prompts import DEFAULT_STYLE, PromptStyle
from selfteach.judge.voting import JudgeConfig, accuracy_at_k, judge_batch
from selfteach.report.plots import plot_curve  # noqa: F401  (judge commands import it from here)
from selfteach.runner import Outputs, run_items
from selfteach.runs import RunDir
from selfteach.stats import mean_ci
from selfteach.validate import MAX_BATCH, MAX_SAMPLES

OUTPUTS = "judgments.jsonl"


class JudgeRunConfig(JudgeConfig):
    """Settings of `selfteach judge run/eval/rft-data` (plus the sampling fields of JudgeConfig)."""

    model: str = Field(
        "smollm2-135m", description="judge model: alias, directory, .gguf, hub id or server URL"
    )
    backend: str = Field("auto", description="hf, openai, or auto (openai for http URLs)")
    serve: bool = Field(False, description="run on a llama.cpp server started on the model's GGUF")
    data: str = Field(
        "builtin:pairs", description="JSONL/parquet/save_to_disk dir, or builtin:pairs"
    )
    limit: int | None = Field(None, ge=1, description="judge the first N items only")
    ks: list[Annotated[int, Field(ge=1, le=MAX_SAMPLES)]] = Field(
        default_factory=lambda: [1, 8],
        min_length=1,
        description="vote sizes to report; K = max(ks) samples",
    )
    meta_rm: str | None = Field(
        None, description="meta RM (from `judge train-meta`) for guided voting"
    )
    k_meta: float = Field(
        0.5, gt=0, le=1, description="share of samples the meta RM lets vote (paper: k/2)"
    )
    prompt_style: PromptStyle = Field(
        DEFAULT_STYLE,
        description="paper: the plain instructions; example: plus an "
        "example of the output format (see docs/judge.md, Output format)",
    )
    prompts: str | None = Field(
        None, description="YAML/JSON file overriding the judge prompt templates"
    )
    batch_size: int = Field(
        16, ge=1, le=MAX_BATCH, description="sequences per forward pass of the hf backend"
    )


def parse_ks(text: str) -> list[int]:
    """"1,8,32" -> [1, 8, 32]."""
    try:
        ks = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise SelfteachError(
            f"--k {text!r}: expected comma-separated integers, e.g. 1,8,32"
        ) from None
    if not ks or ks[0] < 1:
        raise SelfteachError(f"--k {text!r}: every k must be >= 1")
    return ks


def run_judge(cfg: JudgeRunConfig, out: str | Path, resume: bool = False, progress: bool = True,
              need_best: bool = False, backend=None) -> list[dict]:
    """Judge every item of `cfg.data` with K = max(cfg.ks) samples; returns the records."""
    from selfteach.judge.data import load_judge_items
    from selfteach.judge.prompts import JudgePrompt

    items = load_judge_items(cfg.data, cfg.limit, pairwise=cfg.mode == "multi", need_best=need_best)
    prompt = JudgePrompt.from_file(cfg.prompts, cfg.prompt_style)
    if cfg.meta_rm and cfg.mode != "multi":
        raise SelfteachError("--meta-rm needs --mode multi (the meta RM rates whole judgments)")
    judge_cfg = JudgeConfig(
        **{**cfg.model_dump(include=set(JudgeConfig.model_fields)), "k": max(cfg.ks)}
    )
    outputs = Outputs(OUTPUTS, Judgment)
    done = outputs.load(RunDir(out))  # before the model: a finished run needs none
    todo = [it for it in items if it.id not in done]
    # loaded before the run dir: a model that fails leaves nothing behind
    if todo and backend is None:
        from selfteach.backends import load_backend

        kw = (
            {"batch_size": cfg.batch_size}
            if cfg.backend != "openai" and not cfg.model.startswith("http")
            else {}
        )
        backend = load_backend(cfg.model, backend=cfg.backend, serve=cfg.serve, **kw)
    run = RunDir.create(out, cfg, resume=resume, seed=cfg.seed)
    meta = None
    if todo and cfg.meta_rm:
        from selfteach.judge.meta import MetaRM

        meta = MetaRM.load(cfg.meta_rm, backend=backend)
    records = run_items(
        items,
        lambda batch: judge_batch(backend, batch, judge_cfg, prompt, meta),
        outputs,
        seed=cfg.seed,
        batch_size=cfg.items_per_call,
        run=run,
        label="judging",
        progress=progress,
        transient=False,
        crash="judge",
    )
    if todo:
        run.log_metrics({"event": "judged", "items": len(todo), **backend.usage.as_dict()})
    return [r.to_row() for r in records]


def rate_records(records: list[dict], meta) -> list[dict]:
    """Add a meta-RM rating to every multi-mode sample that has none (post-hoc guided
    voting on judgments sampled earlier)."""
    from selfteach.judge.voting import meta_text

    for rec in records:
        todo = [s for s in rec["samples"] if "meta" not in s]
        if todo and rec.get("mode", "multi") == "multi" and not rec.get("error"):
            item = judged_item(rec)
            for s, m in zip(todo, meta.score([meta_text(item, s) for s in todo]), strict=True):
                s["meta"] = m
    return records


def _fmt(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _accuracies(records: list[dict], k: int, meta_k: int | None = None) -> list[float]:
    """accuracy@k of each record; never None: every record of a run has the same K >= k samples."""
    accs = [accuracy_at_k(r, k, meta_k=meta_k) for r in records]
    known = [a for a in accs if a is not None]
    if len(known) != len(accs):  # cannot happen (see above); say so rather than average wrongly
        raise SelfteachError(f"voting@{k}: a judged item has fewer than {k} samples")
    return known


def summarize(records: list[dict], cfg: JudgeRunConfig, title: str) -> dict:
    """summary.json: accuracy per subset x k (voting, and meta-RM voting when rated),
    failure and tie rates. Accuracy needs a known best; otherwise only rates are shown."""
    if not records:
        raise SelfteachError("no items were judged")
    samples = [s for r in records for s in r["samples"]]
    n_fail = sum(1 for s in samples if s.get("scores") is None)
    reasons = Counter(
        e for s in samples for e in ([s.get("error")] if "error" in s else s.get("errors", [])) if e
    )
    has_meta = any("meta" in s for s in samples)
    tables, notes = [], []
    scored = [r for r in records if r.get("best") is not None]
    K = max(len(r["samples"]) for r in records)
    ks = [k for k in cfg.ks if k <= K]
    if scored:
        subsets = sorted({r["subset"] for r in scored})
        cols = ["subset", "n"] + [f"voting@{k}" for k in ks]
        if has_meta:
            cols += [f"meta@{k}" for k in ks if k > 1]
        rows: list[list] = []
        curve: dict[str, dict[int, float]] = {}
        for name in [*subsets, "overall"]:
            rs = scored if name == "overall" else [r for r in scored if r["subset"] == name]
            row: list = [name, len(rs)]
            for k in ks:
                acc = mean_ci(_accuracies(rs, k), seed=cfg.seed)
                row.append(f"{acc['mean']:.3f} [{acc['lo']:.2f}, {acc['hi']:.2f}]")
                curve.setdefault(name, {})[k] = acc["mean"]
            if has_meta:
                for k in ks:
                    if k > 1:
                        km = max(1, int(round(k * cfg.k_meta)))
                        acc = mean_ci(_accuracies(rs, k, meta_k=km), seed=cfg.seed)
                        row.append(f"{acc['mean']:.3f} [{acc['lo']:.2f}, {acc['hi']:.2f}]")
                        curve.setdefault(f"{name} (meta RM)", {})[k] = acc["mean"]
            rows.append(row)
        tables.append(
            {
                "name": "pairwise accuracy (strictly higher score wins; tie or failure = 1/n)",
                "columns": cols,
                "rows": rows,
            }
        )
        notes.append(
            "voting@k: scores summed over k sampled judgments, averaged over the K//k disjoint "
            "runs of k "
            f"samples (K = {K}); [lo, hi] is a bootstrap 95% interval over items."
        )
        if has_meta:
            notes.append(
                f"meta@k: only the top round(k*{cfg.k_meta}) valid samples by meta-RM rating vote."
            )
    else:
        curve = {}
    tie_rows = []
    for k in ks:
        ties = fails = runs = 0
        from selfteach.judge.voting import vote

        for r in records:
            n = len(r["responses"])
            for j in range(len(r["samples"]) // k):
                v = vote(r["samples"][j * k : (j + 1) * k], n)
                runs += 1
                ties += v["tie"]
                fails += not v["winners"]
        tie_rows.append([k, runs, _fmt(ties / runs), _fmt(fails / runs)])
    tables.append(
        {
            "name": "votes: ties and votes with no parsable sample",
            "columns": ["k", "votes", "tie rate", "no-parse rate"],
            "rows": tie_rows,
        }
    )
    forced = [s for s in samples if s.get("forced")]
    raw = Counter(s["raw_error"] for s in forced)
    tables.append(
        {
            "name": "sampled judgments",
            "columns": [
                "items",
                "samples",
                "failed samples",
                "failure rate",
                "reasons",
                "items too long",
                "forced score lines",
                "failure rate before forcing",
            ],
            "rows": [
                [
                    len(records),
                    len(samples),
                    n_fail,
                    _fmt(n_fail / max(1, len(samples))),
                    ", ".join(f"{k}: {v}" for k, v in reasons.most_common()) or "-",
                    sum(1 for r in records if r.get("error") == "too_long"),
                    len(forced),
                    _fmt(
                        (n_fail + len(forced) - sum(1 for s in forced if s.get("scores") is None))
                        / max(1, len(samples))
                    ),
                ]
            ],
        }
    )
    if forced:
        notes.append(
            "forced score lines (--force-scores): samples without a valid score line had their "
            "scores "
            "read from the judge's next-token distribution over 1-10; their original failures: "
            + ", ".join(f"{k}: {v}" for k, v in raw.most_common())
        )
    return {"title": title, "tables": tables, "notes": notes, "curve": curve,
            "failure_rate": n_fail / max(1, len(samples))}
