"""`selfteach demo`: the end-to-end tour on the embedded model, on CPU in minutes.

1. Accuracy of SmolLM2-135M-Instruct on a small slice of math word problems (greedy,
   with a bootstrap interval).
2. ICM label elicitation on a built-in fact task, with zero-shot and golden-context
   accuracies side by side (when the ICM module provides `demo_summary`).
Everything lands in a run directory; the closing table says where.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from selfteach.backends.options import server_options


def register(app: typer.Typer) -> None:
    @app.command()
    @server_options
    def demo(
        model: str = typer.Option("smollm2-135m", help="model for the accuracy step"),
        data: str = typer.Option("builtin:arithmetic", help="problems for the accuracy step"),
        limit: int = typer.Option(50, min=1, help="problems to evaluate"),
        icm_model: str = typer.Option("gemma3-270m", help="model for the ICM step"),
        skip_icm: bool = typer.Option(False, help="only run the accuracy step"),
        out: Path = typer.Option(Path("runs/demo"), help="run directory root"),
    ) -> None:
        """Run the end-to-end demo on the embedded models and print a results table."""
        run_demo(model, data, limit, icm_model, skip_icm, out)


def run_demo(model: str, data: str, limit: int, icm_model: str, skip_icm: bool, out: Path) -> None:
    from selfteach.evaluate.accuracy import AccuracyConfig, run_accuracy

    console = Console()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rows: list[list[str]] = []
    dirs: list[Path] = []
    t0 = time.time()
    console.print(f"[bold]1/2 accuracy[/bold]: {model} on {data} (first {limit}, greedy)")
    acc_dir = out / f"{stamp}-accuracy"
    cfg = AccuracyConfig(model=model, data=data, limit=limit, max_new_tokens=160, batch_size=10)
    res = run_accuracy(cfg, acc_dir)
    a = res["accuracy"]
    rows.append([f"accuracy of {model}, {a['n']} problems", f"{a['mean']:.3f} [{a['lo']:.3f}, {a['hi']:.3f}]",
                 f"{time.time() - t0:.0f} s"])
    dirs.append(acc_dir)
    if not skip_icm:
        from selfteach.elicit import demo_summary

        t1 = time.time()
        console.print(f"[bold]2/2 ICM[/bold]: {icm_model} labels built-in capital claims without labels")
        icm_dir = out / f"{stamp}-icm"
        s = demo_summary(model=icm_model, out=icm_dir)
        for name in ("zero-shot", "zero-shot + rule", "random few-shot", "ICM", "golden context"):
            if name in s:
                rows.append([f"{icm_model} label accuracy: {name}", f"{s[name]:.3f} (n={s.get('claims', '?')})",
                             f"{time.time() - t1:.0f} s" if name == "ICM" else ""])
        dirs.append(icm_dir)
    table = Table(title="selfteach demo")
    for c in ("step", "result [95% CI]", "time"):
        table.add_column(c)
    for r in rows:
        table.add_row(*r)
    console.print(table)
    console.print(f"data: {data}; ICM claims: builtin:capitals")
    for d in dirs:
        console.print(f"run directory: {d}  (selfteach report {d})")
