"""The judge's commands as functions: judge a data set, evaluate (optionally from an
earlier run's judgments), build SPCT training data, train the meta RM. Each writes its run
directory and returns the summary that `selfteach report` renders; the CLI
(selfteach.judge.commands) only parses options."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from selfteach.judge.runner import JudgeRunConfig

if TYPE_CHECKING:  # meta.py imports torch
    from selfteach.judge.meta import MetaConfig


def read_records(path: Path) -> list[dict]:
    """Judgment records of an earlier `judge run/eval` (judgments.jsonl or its run dir)."""
    from selfteach.data.checks import as_id, check_unique_ids
    from selfteach.data.jsonl import iter_jsonl_at
    from selfteach.errors import SelfteachError

    f = path / "judgments.jsonl" if path.is_dir() else path
    at = list(iter_jsonl_at(f))
    for n, r in at:
        missing = [k for k in ("id", "prompt", "responses", "samples") if k not in r]
        if missing:
            raise SelfteachError(
                f"{f}:{n}: missing field {missing[0]!r} (expected judgments.jsonl from judge run)"
            )
        for k in ("responses", "samples"):
            if not isinstance(r[k], list) or not all(
                isinstance(x, str if k == "responses" else dict) for x in r[k]
            ):
                raise SelfteachError(
                    f"{f}:{n}: field {k!r}: expected a list of "
                    f"{'texts' if k == 'responses' else 'judgment objects'}"
                )
    check_unique_ids(((as_id(r["id"], f"{f}:{n}"), str(n)) for n, r in at), str(f))
    return [r for _, r in at]


def finish(run_dir: Path, summary: dict, title: str) -> dict:
    """Write summary.json (and the accuracy-vs-k plot when there are several k); return
    the summary."""
    from selfteach.judge.runner import plot_curve
    from selfteach.runs import RunDir

    RunDir(run_dir).write_json("summary.json", summary)
    if len(next(iter(summary.get("curve", {}).values()), {})) > 1:
        plot_curve(summary["curve"], run_dir / "accuracy_vs_k.png", title)
    return summary


def judge_run(cfg: JudgeRunConfig, out: Path, resume: bool = False) -> dict:
    """`judge run`: K sampled judgments per item, voted; judgments.jsonl + summary."""
    from selfteach.judge.runner import run_judge, summarize

    records = run_judge(cfg, out, resume=resume)
    k = max(cfg.ks)
    return finish(
        out,
        summarize(records, cfg, f"judge run: {cfg.model} on {cfg.data}, k={k}"),
        f"{cfg.model} on {cfg.data}",
    )


def judge_eval(
    cfg: JudgeRunConfig, out: Path, resume: bool = False, from_run: Path | None = None
) -> dict:
    """`judge eval`: pairwise accuracy per subset for every k. With `from_run`, the
    judgments of that run are reused (forced scores and meta-RM ratings added as asked)."""
    from selfteach.judge.runner import run_judge, summarize

    if from_run is None:
        records = run_judge(cfg, out, resume=resume, need_best=True)
    else:
        records = rejudge(cfg, from_run, out, resume)
    title = (
        f"judge eval: {cfg.model} on {cfg.data if from_run is None else f'judgments of {from_run}'}"
    )
    return finish(out, summarize(records, cfg, title), title)


def rejudge(cfg: JudgeRunConfig, from_run: Path, out: Path, resume: bool) -> list[dict]:
    """The records of `from_run` with forced scores (cfg.force_scores) and meta-RM ratings
    (cfg.meta_rm) added, written to OUT/judgments.jsonl."""
    from selfteach.data.jsonl import write_jsonl
    from selfteach.judge.runner import OUTPUTS, rate_records
    from selfteach.runs import RunDir

    records = read_records(from_run)
    RunDir.create(
        out, {**cfg.model_dump(), "from_run": str(from_run)}, resume=resume, seed=cfg.seed
    )
    if cfg.force_scores:
        from selfteach.backends import load_backend
        from selfteach.data.records import judged_item
        from selfteach.judge.prompts import JudgePrompt
        from selfteach.judge.voting import _force, vote

        judge = load_backend(cfg.model, backend=cfg.backend, serve=cfg.serve)
        prompt = JudgePrompt.from_file(cfg.prompts, cfg.prompt_style)
        for rec in records:
            _force(judge, judged_item(rec), rec["samples"], prompt)
            rec["vote"] = vote(rec["samples"], len(rec["responses"]))
    if cfg.meta_rm:
        from selfteach.judge.meta import MetaRM

        records = rate_records(records, MetaRM.load(cfg.meta_rm))
    write_jsonl(out / OUTPUTS, records)
    return records


def rft_data(
    cfg: JudgeRunConfig, out: Path, resume: bool = False, from_run: Path | None = None
) -> dict:
    """SPCT training data: rft.jsonl (judgments ranking the known best strictly first) and
    grpo.jsonl (judge prompts for `train grpo --reward judge-rule`)."""
    from selfteach.data.jsonl import write_jsonl
    from selfteach.judge.data import load_judge_items
    from selfteach.judge.prompts import JudgePrompt
    from selfteach.judge.rft import grpo_rows, rft_rows
    from selfteach.judge.runner import run_judge
    from selfteach.runs import RunDir

    if from_run is not None:
        records = read_records(from_run)
        RunDir.create(
            out, {**cfg.model_dump(), "from_run": str(from_run)}, resume=True, seed=cfg.seed
        )
    else:
        records = run_judge(cfg, out, resume=resume, need_best=True)
    prompt = JudgePrompt.from_file(cfg.prompts, cfg.prompt_style)
    rows, counts = rft_rows(records, prompt)
    write_jsonl(out / "rft.jsonl", rows)
    items = load_judge_items(cfg.data, cfg.limit, pairwise=True, need_best=True)
    write_jsonl(out / "grpo.jsonl", grpo_rows(items, prompt, seed=cfg.seed))
    summary: dict[str, Any] = {
        "title": f"judge rft-data: {cfg.model} on {cfg.data}",
        "tables": [
            {
                "name": "rejective fine-tuning data",
                "columns": list(counts),
                "rows": [list(counts.values())],
            }
        ],
        "notes": [
            f"rft.jsonl: {len(rows)} prompt-completion rows; "
            f"grpo.jsonl: {len(items)} judge prompts with judge_best/judge_n columns "
            "for selfteach.judge.rewards.judge_rule_reward"
        ],
    }
    return finish(out, summary, summary["title"])


def train_meta_run(cfg: MetaConfig, judgments: list[Path], out: Path) -> dict:
    """Train the meta RM on the judgments of earlier runs; save it to OUT (meta_rm.json)."""
    from selfteach.judge.meta import train_meta
    from selfteach.runs import RunDir

    records = [r for p in judgments for r in read_records(p)]
    run = RunDir.create(
        out,
        {**cfg.model_dump(), "judgments": [str(p) for p in judgments]},
        resume=True,
        seed=cfg.seed,
    )
    meta = train_meta(records, cfg)
    meta.save(out)
    m = meta.info["metrics"]
    run.log_metrics(m)
    summary: dict[str, Any] = {
        "title": f"meta RM on {cfg.backbone}",
        "tables": [
            {
                "name": "meta RM training",
                "columns": list(m),
                "rows": [[f"{v:.3f}" if isinstance(v, float) else v for v in m.values()]],
            }
        ],
        "notes": [
            "AUROC of the meta rating for 'judgment ranks the best strictly first'; val = held-out "
            "items, train = all (the saved head is fit on all)."
        ],
    }
    return finish(out, summary, summary["title"])
