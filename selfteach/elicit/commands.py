"""`selfteach elicit`: ICM label elicitation from the command line."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from selfteach.backends.options import server_options
from selfteach.backends.served import SERVE_HELP

# the ICMConfig defaults (kept literal so `selfteach --help` does not import the search)
_DEFAULT = {"schedule": "paper", "fix": "paper", "init": "random", "leave_out": "claim"}


def register(app: typer.Typer) -> None:
    @app.command()
    @server_options
    def elicit(
        model: str = typer.Option(..., "--model", help="model alias, directory, .gguf, hub id or server URL"),
        claims: str = typer.Option(..., "--claims", help="claims JSONL/parquet/dataset dir, or builtin:NAME: "
                                   "capitals, currencies, state-capitals, authors, inventors, elements, "
                                   "planets, sums"),
        task: str = typer.Option("binary", "--task", help="binary | math | comparison | exclusive"),
        out: Path = typer.Option(..., "--out", help="run directory"),
        baselines: bool = typer.Option(False, "--baselines", help="also zero-shot, zero-shot + rule, "
                                       "random few-shot, golden context"),
        resume: bool = typer.Option(False, "--resume", help="continue an interrupted run in --out"),
        scoring: str = typer.Option("fast", "--scoring", help="fast (default) | exact (naive full rescoring)"),
        alpha: float = typer.Option(50.0, "--alpha", help="weight of mutual predictability"),
        iters: int | None = typer.Option(None, "--iters", help="annealing steps (default 2 x claims)"),
        seed: int = typer.Option(0, "--seed"),
        limit: int | None = typer.Option(None, "--limit", help="use the first N claims"),
        field: list[str] | None = typer.Option(None, "--field", help="field map TARGET=SOURCE, e.g. claim=text"),
        backend: str = typer.Option("auto", "--backend", help="hf | openai | auto"),
        blocks: int = typer.Option(2, "--blocks", help="fast scoring: context blocks"),
        refresh_every: int = typer.Option(64, "--refresh-every", help="fast scoring: full rescoring period"),
        refresh_frac: float = typer.Option(0.25, "--refresh-frac", help="fast scoring: rescore after this share "
                                           "of labels changed"),
        max_context_tokens: int = typer.Option(3072, "--max-context-tokens", help="few-shot context budget"),
        context_claims: int | None = typer.Option(None, "--context-claims", help="bounded context: each scored "
                                                  "claim sees at most K sampled labeled claims (for claim sets "
                                                  "larger than a context; a departure)"),
        context_share: int = typer.Option(8, "--context-share", help="bounded context: claims per sampled context"),
        context_select: str = typer.Option("random", "--context-select", help="bounded context: random | related "
                                           "(same-group labeled claims first)"),
        checkpoint_every: int | None = typer.Option(None, "--checkpoint-every", help="checkpoint every N steps "
                                                    "(default: every step; claims/20 with --context-claims)"),
        schedule: str = typer.Option(_DEFAULT["schedule"], "--schedule",
                                     help="temperature: paper (over steps) | reference (over accepted flips, "
                                          "the authors' code)"),
        fix: str = typer.Option(_DEFAULT["fix"], "--fix", help="ConsistencyFix: paper (keep if U rises) | "
                                "reference (always apply the best assignment, the authors' code)"),
        init: str = typer.Option(_DEFAULT["init"], "--init", help="starting labels: random (K=8 random "
                                 "claims, the paper) | zero_shot_rule (every claim from the zero-shot + rule "
                                 "baseline; a departure)"),
        leave_out: str = typer.Option(_DEFAULT["leave_out"], "--leave-out", help="a scored claim's context "
                                      "leaves out: claim (itself, the paper) | group (its whole group; a "
                                      "departure against same-question label copying)"),
        keep_best: bool = typer.Option(False, "--keep-best/--no-keep-best", help="return the labeling with "
                                       "the highest freshly scored U, not the last (a departure)"),
        label_words: str = typer.Option("True,False", "--label-words", help="the template's label words "
                                        "TRUE,FALSE, e.g. correct,incorrect"),
        progress: bool = typer.Option(True, "--progress/--no-progress"),
        serve: bool = typer.Option(False, "--serve", help=SERVE_HELP),
    ) -> None:
        """Label claims True/False with ICM (no labels needed); writes labels.jsonl."""
        from selfteach.backends import load_backend
        from selfteach.data.loaders import load_claims, parse_field_map
        from selfteach.elicit.rules import TASKS, make_rule
        from selfteach.elicit.search import ICMConfig, icm
        from selfteach.elicit.templates import Template
        from selfteach.errors import SelfteachError
        from selfteach.runs import RunDir

        if task not in TASKS:
            raise SelfteachError(f"--task {task!r}: choose {', '.join(TASKS)}")
        words = [w.strip() for w in label_words.split(",")]
        if len(words) != 2 or not all(words) or words[0] == words[1]:
            raise SelfteachError(f"--label-words {label_words!r}: give two different words, e.g. True,False")
        if limit is not None and limit < 1:
            raise SelfteachError(f"--limit {limit}: must be >= 1")
        cfg = ICMConfig(alpha=alpha, iters=iters, seed=seed, scoring=scoring, blocks=blocks,
                        refresh_every=refresh_every, refresh_frac=refresh_frac, max_context_tokens=max_context_tokens,
                        baselines=baselines, schedule=schedule, fix=fix, init=init, leave_out=leave_out,
                        keep_best=keep_best, template=Template(true_word=words[0], false_word=words[1]),
                        context_claims=context_claims, context_share=context_share, context_select=context_select,
                        checkpoint_every=checkpoint_every,
                        )  # a bad choice or value (Literal/bounds on ICMConfig): one line (selfteach.cli)
        data = load_claims(claims, fields=parse_field_map(field), limit=limit, seed=seed)
        make_rule(task, data)  # check the claims fit the task before loading a model
        be = load_backend(model, backend=backend, serve=serve)  # before the run dir: a model that fails leaves nothing
        run = RunDir.create(out, {"model": model, "claims": claims, "task": task, "limit": limit,
                                  "fields": field or [], "backend": backend, "serve": serve, **cfg.model_dump(mode="json")},
                            resume=resume, seed=seed)
        res = icm(data, be, task=task, config=cfg, run=run, progress=progress)
        print_summary(res, model, claims)
        Console().print(f"labels: {run.file('labels.jsonl')}  trajectory: {run.file('metrics.jsonl')}")


def print_summary(res, model: str, claims: str) -> None:
    m, b = res.metrics, res.baselines
    table = Table(title=f"ICM labels: {model} on {claims} ({m['claims']} claims, task {m['task']}, "
                        f"scoring {m['scoring']})")
    for col in ("labels from", "accuracy", "AUROC", "share True"):
        table.add_column(col)

    def fmt(x):
        return "-" if x is None else f"{x:.3f}"

    rows = [("zero-shot", b.get("zero_shot", {"accuracy": m["zero_shot_accuracy"], "auroc": m["zero_shot_auroc"],
                                               "balance": None}))]
    if "zero_shot_rule" in b:
        rows.append(("zero-shot + rule (one pass)", b["zero_shot_rule"]))
    if "random_fewshot" in b:
        rows.append(("random-label few-shot", b["random_fewshot"]))
    rows.append(("ICM (no labels)", {"accuracy": m["accuracy"], "auroc": m["auroc"], "balance": m["balance"]}))
    if "golden" in b:
        rows.append(("golden-label context (ceiling)", b["golden"]))
    if "golden_rule" in b:
        rows.append(("golden-label context + rule", b["golden_rule"]))
    for name, r in rows:
        table.add_row(name, fmt(r.get("accuracy")), fmt(r.get("auroc")), fmt(r.get("balance")))
    con = Console()
    con.print(table)
    con.print(f"U={m['U']:.2f}  I={m['I']}  steps={m['steps']}  acceptance={m['acceptance']}  "
              f"agreement with zero-shot={m['agree_zero_shot']:.3f}  model calls/claim={m['calls_per_claim']}  "
              f"tokens/claim={m['tokens_per_claim']}  time={m['seconds']:.0f}s")
    for w in m["warnings"]:
        con.print(f"[yellow]warning:[/yellow] {w}")
