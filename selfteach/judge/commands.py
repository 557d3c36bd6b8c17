"""`selfteach judge run | eval | rft-data | train-meta` (SPCT, arXiv 2504.02495)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer
from rich.console import Console

from selfteach.backends.options import server_options
from selfteach.backends.served import SERVE_HELP
from selfteach.report.console import render_summary

MODEL_HELP = "judge model: alias, directory, .gguf, hub id, or http URL of an OpenAI-compatible server"
STYLE_HELP = "paper (the plain instructions) or example (plus an example of the output format; default)"
DATA_HELP = "RewardBench-format pairs {prompt, chosen, rejected, subset} or {prompt, responses, best} as " \
            "JSONL/parquet/save_to_disk dir, or builtin:pairs"


def _finish(run_dir: Path, summary: dict, title: str) -> None:
    from selfteach.judge.runner import plot_curve
    from selfteach.runs import RunDir

    run = RunDir(run_dir)
    run.write_json("summary.json", summary)
    if len(next(iter(summary.get("curve", {}).values()), {})) > 1:
        plot_curve(summary["curve"], run_dir / "accuracy_vs_k.png", title)
    render_summary(summary)
    Console().print(f"run directory: {run_dir}")


def register(app: typer.Typer) -> None:
    from selfteach.cli import judge_app
    from selfteach.judge.runner import JudgeRunConfig, parse_ks, run_judge, summarize

    def common(model, data, limit, mode, orders, temperature, top_p, max_new_tokens, prompts, batch_size, seed,
               backend, force_scores=False, prompt_style="example", **extra) -> JudgeRunConfig:
        from selfteach.judge.prompts import STYLES

        style = _choice(prompt_style, tuple(STYLES), "--prompt-style")
        return JudgeRunConfig(model=model, prompt_style=style, data=data, limit=limit, mode=mode, orders=orders, temperature=temperature,
                              force_scores=force_scores,
                              top_p=top_p, max_new_tokens=max_new_tokens, prompts=prompts, batch_size=batch_size,
                              seed=seed, backend=backend, **extra)

    @judge_app.command("run")
    @server_options
    def run_cmd(
        model: str = typer.Option("smollm2-135m", help=MODEL_HELP),
        data: str = typer.Option(..., help=DATA_HELP),
        k: int = typer.Option(8, min=1, help="sampled judgments per item (voting)"),
        mode: str = typer.Option("multi", help="multi (all responses in one prompt) or pointwise"),
        orders: str = typer.Option("balanced", help="balanced or random response orders over the k samples"),
        temperature: float = typer.Option(0.5, min=0.0),
        top_p: float = typer.Option(1.0, min=0.0, max=1.0),
        max_new_tokens: int = typer.Option(384, min=8),
        force_scores: bool = typer.Option(False, help="read missing scores from the judge's next-token "
                                          "distribution over 1-10 (small judges; not in the paper; counted)"),
        limit: int | None = typer.Option(None, min=1, help="first N items"),
        meta_rm: str | None = typer.Option(None, help="meta RM dir (judge train-meta) for guided voting"),
        k_meta: float = typer.Option(0.5, help="share of samples the meta RM lets vote"),
        prompts: str | None = typer.Option(None, help="YAML/JSON file overriding the prompt templates"),
        prompt_style: str = typer.Option("example", help=STYLE_HELP),
        batch_size: int = typer.Option(16, min=1),
        seed: int = typer.Option(0),
        backend: str = typer.Option("auto", help="hf, openai or auto"),
        serve: bool = typer.Option(False, "--serve", help=SERVE_HELP),
        out: Path = typer.Option(Path("runs/judge"), help="run directory"),
        resume: bool = typer.Option(False, help="continue an interrupted run in --out"),
    ) -> None:
        """Judge items: k sampled judgments each (principles, critiques, scores), voted.
        Writes judgments.jsonl (every sample, its scores in the original order, the vote)."""
        cfg = common(model, data, limit, _choice(mode, ("multi", "pointwise"), "--mode"),
                     _choice(orders, ("balanced", "random"), "--orders"), temperature, top_p, max_new_tokens, prompts,
                     batch_size, seed, backend, force_scores=force_scores, ks=[k], meta_rm=meta_rm, k_meta=k_meta,
                     serve=serve, prompt_style=prompt_style)
        records = run_judge(cfg, out, resume=resume)
        _finish(out, summarize(records, cfg, f"judge run: {model} on {data}, k={k}"), f"{model} on {data}")

    @judge_app.command("eval")
    @server_options
    def eval_cmd(
        model: str = typer.Option("smollm2-135m", help=MODEL_HELP),
        data: str = typer.Option("builtin:pairs", help=DATA_HELP),
        k: str = typer.Option("1,8,32", help="vote sizes, comma-separated; max(k) judgments are sampled per item"),
        meta_rm: str | None = typer.Option(None, help="meta RM dir (judge train-meta): adds meta@k columns"),
        k_meta: float = typer.Option(0.5, help="share of samples the meta RM lets vote (paper: k/2)"),
        mode: str = typer.Option("multi", help="multi or pointwise"),
        orders: str = typer.Option("balanced", help="balanced or random"),
        temperature: float = typer.Option(0.5, min=0.0),
        top_p: float = typer.Option(1.0, min=0.0, max=1.0),
        max_new_tokens: int = typer.Option(384, min=8),
        force_scores: bool = typer.Option(False, help="read missing scores from the judge's next-token "
                                          "distribution over 1-10 (small judges; not in the paper; counted)"),
        limit: int | None = typer.Option(None, min=1, help="first N items"),
        prompts: str | None = typer.Option(None, help="YAML/JSON file overriding the prompt templates"),
        prompt_style: str = typer.Option("example", help=STYLE_HELP),
        batch_size: int = typer.Option(16, min=1),
        seed: int = typer.Option(0),
        backend: str = typer.Option("auto", help="hf, openai or auto"),
        serve: bool = typer.Option(False, "--serve", help=SERVE_HELP),
        out: Path = typer.Option(Path("runs/judge-eval"), help="run directory"),
        resume: bool = typer.Option(False, help="continue an interrupted run in --out"),
        from_run: Path | None = typer.Option(None, help="reuse the judgments of an earlier judge run/eval directory "
                                             "(e.g. to add --meta-rm ratings without sampling again)"),
    ) -> None:
        """Pairwise accuracy (RewardBench rule: strictly higher wins, tie/failure = 0.5) per
        subset and overall for every k, with and without the meta RM; summary.json + PNG curve."""
        cfg = common(model, data, limit, _choice(mode, ("multi", "pointwise"), "--mode"),
                     _choice(orders, ("balanced", "random"), "--orders"), temperature, top_p, max_new_tokens, prompts,
                     batch_size, seed, backend, force_scores=force_scores, ks=parse_ks(k), meta_rm=meta_rm,
                     k_meta=k_meta, serve=serve, prompt_style=prompt_style)
        if from_run is not None:
            from selfteach.data.jsonl import write_jsonl
            from selfteach.judge.runner import OUTPUTS, rate_records
            from selfteach.runs import RunDir

            records = _read_records(from_run)
            RunDir.create(out, {**cfg.model_dump(), "from_run": str(from_run)}, resume=resume, seed=seed)
            if force_scores:
                from selfteach.backends import load_backend
                from selfteach.judge.prompts import JudgePrompt
                from selfteach.judge.voting import _force, vote

                judge = load_backend(model, backend=backend, serve=serve)
                from selfteach.data.records import judged_item

                for rec in records:
                    _force(judge, judged_item(rec), rec["samples"],
                           JudgePrompt.from_file(prompts, cfg.prompt_style))
                    rec["vote"] = vote(rec["samples"], len(rec["responses"]))
            if meta_rm:
                from selfteach.judge.meta import MetaRM

                records = rate_records(records, MetaRM.load(meta_rm))
            write_jsonl(out / OUTPUTS, records)
        else:
            records = run_judge(cfg, out, resume=resume, need_best=True)
        title = f"judge eval: {model} on {data if from_run is None else f'judgments of {from_run}'}"
        _finish(out, summarize(records, cfg, title), title)

    @judge_app.command("rft-data")
    @server_options
    def rft_cmd(
        model: str = typer.Option("smollm2-135m", help=MODEL_HELP),
        data: str = typer.Option("builtin:pairs", help=DATA_HELP + " (items need a known best)"),
        k: int = typer.Option(8, min=1, help="sampled judgments per item"),
        from_run: Path | None = typer.Option(None, help="reuse the judgments of a `judge run/eval` directory"),
        temperature: float = typer.Option(0.5, min=0.0),
        max_new_tokens: int = typer.Option(384, min=8),
        limit: int | None = typer.Option(None, min=1),
        prompts: str | None = typer.Option(None, help="YAML/JSON file overriding the prompt templates"),
        prompt_style: str = typer.Option("example", help=STYLE_HELP),
        batch_size: int = typer.Option(16, min=1),
        seed: int = typer.Option(0),
        backend: str = typer.Option("auto", help="hf, openai or auto"),
        out: Path = typer.Option(Path("runs/judge-rft"), help="run directory"),
        resume: bool = typer.Option(False),
    ) -> None:
        """SPCT training data: rft.jsonl (judgments ranking the known best strictly first; items
        where all samples were right are dropped) and grpo.jsonl (judge prompts for
        `train grpo --reward judge-rule`)."""
        from selfteach.data.jsonl import write_jsonl
        from selfteach.judge.data import load_judge_items
        from selfteach.judge.prompts import JudgePrompt
        from selfteach.judge.rft import grpo_rows, rft_rows
        from selfteach.runs import RunDir

        cfg = common(model, data, limit, "multi", "balanced", temperature, 1.0, max_new_tokens, prompts, batch_size,
                     seed, backend, ks=[k], prompt_style=prompt_style)
        if from_run is not None:
            records = _read_records(from_run)
            RunDir.create(out, {**cfg.model_dump(), "from_run": str(from_run)}, resume=True, seed=seed)
        else:
            records = run_judge(cfg, out, resume=resume, need_best=True)
        prompt = JudgePrompt.from_file(prompts, cfg.prompt_style)
        rows, counts = rft_rows(records, prompt)
        write_jsonl(out / "rft.jsonl", rows)
        items = load_judge_items(cfg.data, cfg.limit, pairwise=True, need_best=True)
        write_jsonl(out / "grpo.jsonl", grpo_rows(items, prompt, seed=seed))
        summary = {"title": f"judge rft-data: {model} on {data}", "tables": [
            {"name": "rejective fine-tuning data", "columns": list(counts), "rows": [list(counts.values())]}],
            "notes": [f"rft.jsonl: {len(rows)} prompt-completion rows; grpo.jsonl: {len(items)} judge prompts "
                      "with judge_best/judge_n columns for selfteach.judge.rewards.judge_rule_reward"]}
        _finish(out, summary, summary["title"])

    @judge_app.command("train-meta")
    def train_meta_cmd(
        judgments: list[Path] = typer.Option(..., help="judgments.jsonl or run directories of judge run/eval "
                                             "(repeatable); items need a known best"),
        backbone: str = typer.Option("smollm2-135m", help="model whose hidden states the head reads"),
        max_tokens: int = typer.Option(768, min=16, help="keep the last N tokens of query + judgment"),
        epochs: int = typer.Option(300, min=1),
        val_frac: float = typer.Option(0.2, min=0.0, max=0.9),
        seed: int = typer.Option(0),
        out: Path = typer.Option(Path("runs/meta-rm"), help="output directory (meta_rm.json)"),
    ) -> None:
        """Train the meta RM (a linear head on the backbone's frozen features) on judgments
        labeled right (best ranked strictly first) or wrong."""
        from selfteach.judge.meta import MetaConfig, train_meta
        from selfteach.runs import RunDir

        cfg = MetaConfig(backbone=backbone, max_tokens=max_tokens, epochs=epochs, val_frac=val_frac, seed=seed)
        records = [r for p in judgments for r in _read_records(p)]
        run = RunDir.create(out, {**cfg.model_dump(), "judgments": [str(p) for p in judgments]}, resume=True,
                            seed=seed)
        meta = train_meta(records, cfg)
        meta.save(out)
        m = meta.info["metrics"]
        run.log_metrics(m)
        summary = {"title": f"meta RM on {backbone}", "tables": [{"name": "meta RM training", "columns": list(m),
                                                                   "rows": [[_short(v) for v in m.values()]]}],
                   "notes": ["AUROC of the meta rating for 'judgment ranks the best strictly first'; val = held-out "
                             "items, train = all (the saved head is fit on all)."]}
        _finish(out, summary, summary["title"])


def _short(v):
    return f"{v:.3f}" if isinstance(v, float) else v


def _choice(value: str, options: tuple[str, ...], flag: str) -> Literal["multi", "pointwise", "balanced", "random",
                                                                        "paper", "example"]:
    from selfteach.errors import SelfteachError

    if value not in options:
        raise SelfteachError(f"{flag} {value!r}: choose {' or '.join(options)}")
    return value  # type: ignore[return-value]


def _read_records(path: Path) -> list[dict]:
    """Judgment records of an earlier `judge run/eval` (judgments.jsonl or its run dir)."""
    from selfteach.data.checks import as_id, check_unique_ids
    from selfteach.data.jsonl import iter_jsonl_at
    from selfteach.errors import SelfteachError

    f = path / "judgments.jsonl" if path.is_dir() else path
    at = list(iter_jsonl_at(f))
    for n, r in at:
        missing = [k for k in ("id", "prompt", "responses", "samples") if k not in r]
        if missing:
            raise SelfteachError(f"{f}:{n}: missing field {missing[0]!r} (expected judgments.jsonl from judge run)")
        for k in ("responses", "samples"):
            if not isinstance(r[k], list) or not all(isinstance(x, str if k == "responses" else dict) for x in r[k]):
                raise SelfteachError(f"{f}:{n}: field {k!r}: expected a list of "
                                     f"{'texts' if k == 'responses' else 'judgment objects'}")
    check_unique_ids(((as_id(r["id"], f"{f}:{n}"), str(n)) for n, r in at), str(f))
    return [r for _, r in at]
