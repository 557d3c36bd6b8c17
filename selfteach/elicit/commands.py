"""`selfteach elicit`: ICM label elicitation from the command line."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from selfteach.backends.served import SERVE_HELP
from selfteach.cliconfig import DATA, MODEL, PROGRESS, RESUME, Opt, config_command, out_option
from selfteach.elicit.search import ICMConfig

# Options of the command that are not ICM settings; config.yaml records them next to ICMConfig.
ELICIT_OPTIONS = [
    Opt(
        "model",
        str,
        ...,
        "model alias, directory, .gguf, hub id or server URL",
        panel=MODEL,
        key="model",
    ),
    Opt("backend", str, "auto", "hf | openai | auto", panel=MODEL, key="backend"),
    Opt("serve", bool, False, SERVE_HELP, ("--serve",), MODEL, key="serve"),
    Opt(
        "claims",
        str,
        ...,
        "claims JSONL/parquet/dataset dir, or builtin:NAME: capitals, currencies, "
        "state-capitals, authors, inventors, elements, planets, sums",
        panel=DATA,
        key="claims",
    ),
    Opt("task", str, "binary", "binary | math | comparison | exclusive", panel=DATA, key="task"),
    Opt("limit", int | None, None, "use the first N claims", panel=DATA, key="limit"),
    Opt(
        "field",
        list[str] | None,
        None,
        "field map TARGET=SOURCE, e.g. claim=text",
        panel=DATA,
        key="fields",
        metavar="TARGET=SOURCE",
    ),
    Opt(
        "label_words",
        str | None,
        None,
        "the template's label words TRUE,FALSE, e.g. correct,incorrect [default: True,False]",
    ),
    out_option(None),
    RESUME,
    PROGRESS,
]


@config_command(ICMConfig, options=ELICIT_OPTIONS, server=True)
def elicit(
    config: ICMConfig,
    model: str,
    backend: str,
    serve: bool,
    claims: str,
    task: str,
    limit: int | None,
    field: list[str] | None,
    label_words: str | None,
    out: Path,
    resume: bool,
    progress: bool,
) -> None:
    """Label claims True/False with ICM (no labels needed); writes labels.jsonl."""
    from selfteach.backends import load_backend
    from selfteach.data.loaders import load_claims, parse_field_map
    from selfteach.elicit.rules import TASKS, make_rule
    from selfteach.elicit.search import icm
    from selfteach.errors import SelfteachError
    from selfteach.runs import RunDir

    if task not in TASKS:
        raise SelfteachError(f"--task {task!r}: choose {', '.join(TASKS)}")
    if label_words is not None:
        words = [w.strip() for w in label_words.split(",")]
        if len(words) != 2 or not all(words) or words[0] == words[1]:
            raise SelfteachError(
                f"--label-words {label_words!r}: give two different words, e.g. True,False"
            )
        config = config.model_copy(
            update={
                "template": config.template.model_copy(
                    update={"true_word": words[0], "false_word": words[1]}
                )
            }
        )
    if limit is not None and limit < 1:
        raise SelfteachError(f"--limit {limit}: must be >= 1")
    data = load_claims(claims, fields=parse_field_map(field), limit=limit, seed=config.seed)
    make_rule(task, data)  # check the claims fit the task before loading a model
    be = load_backend(
        model, backend=backend, serve=serve
    )  # before the run dir: a model that fails leaves nothing
    run = RunDir.create(
        out,
        {
            "model": model,
            "claims": claims,
            "task": task,
            "limit": limit,
            "fields": field or [],
            "backend": backend,
            "serve": serve,
            **config.model_dump(mode="json"),
        },
        resume=resume,
        seed=config.seed,
    )
    res = icm(data, be, task=task, config=config, run=run, progress=progress)
    print_summary(res, model, claims)
    Console().print(f"labels: {run.file('labels.jsonl')}  trajectory: {run.file('metrics.jsonl')}")


def print_summary(res, model: str, claims: str) -> None:
    m, b = res.metrics, res.baselines
    table = Table(
        title=f"ICM labels: {model} on {claims} ({m['claims']} claims, task {m['task']}, "
        f"scoring {m['scoring']})"
    )
    for col in ("labels from", "accuracy", "AUROC", "share True"):
        table.add_column(col)

    def fmt(x):
        return "-" if x is None else f"{x:.3f}"

    rows = [
        (
            "zero-shot",
            b.get(
                "zero_shot",
                {
                    "accuracy": m["zero_shot_accuracy"],
                    "auroc": m["zero_shot_auroc"],
                    "balance": None,
                },
            ),
        )
    ]
    if "zero_shot_rule" in b:
        rows.append(("zero-shot + rule (one pass)", b["zero_shot_rule"]))
    if "random_fewshot" in b:
        rows.append(("random-label few-shot", b["random_fewshot"]))
    rows.append(
        (
            "ICM (no labels)",
            {"accuracy": m["accuracy"], "auroc": m["auroc"], "balance": m["balance"]},
        )
    )
    if "golden" in b:
        rows.append(("golden-label context (ceiling)", b["golden"]))
    if "golden_rule" in b:
        rows.append(("golden-label context + rule", b["golden_rule"]))
    for name, r in rows:
        table.add_row(name, fmt(r.get("accuracy")), fmt(r.get("auroc")), fmt(r.get("balance")))
    con = Console()
    con.print(table)
    con.print(
        f"U={m['U']:.2f}  I={m['I']}  steps={m['steps']}  acceptance={m['acceptance']}  "
        f"agreement with zero-shot={m['agree_zero_shot']:.3f}  "
        f"model calls/claim={m['calls_per_claim']}  "
        f"tokens/claim={m['tokens_per_claim']}  time={m['seconds']:.0f}s"
    )
    for w in m["warnings"]:
        con.print(f"[yellow]warning:[/yellow] {w}")
