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

# the demo's ICM step (docs/results.md, "ICM on Qwen2.5-Coder-0.5B fact families")
DEMO_ICM: dict = {"model": "gemma3-270m", "family": "capitals", "n_countries": 16, "task": "comparison",
                  "max_context_tokens": 512, "init": "random"}


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        model: str = typer.Option("smollm2-135m", help="model for the accuracy step"),
        data: str = typer.Option("builtin:arithmetic", help="problems for the accuracy step"),
        limit: int = typer.Option(50, min=1, help="problems to evaluate"),
        icm_model: str = typer.Option(DEMO_ICM["model"], help="model for the ICM step"),
        icm_family: str = typer.Option(DEMO_ICM["family"], help="built-in fact family for the ICM step"),
        skip_icm: bool = typer.Option(False, help="only run the accuracy step"),
        out: Path = typer.Option(Path("runs/demo"), help="run directory root"),
    ) -> None:
        """Run the end-to-end demo on the embedded models and print a results table."""
        run_demo(model, data, limit, icm_model, skip_icm, out, icm_family)


def run_demo(model: str, data: str, limit: int, icm_model: str, skip_icm: bool, out: Path,
             icm_family: str = DEMO_ICM["family"]) -> None:
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
        try:
            from selfteach.elicit import demo_summary
        except ImportError:
            console.print("[dim]ICM step not available in this build[/dim]")
        else:
            t1 = time.time()
            console.print(f"[bold]2/2 ICM[/bold]: {icm_model} labels built-in {icm_family} claims without labels")
            icm_dir = out / f"{stamp}-icm"
            kw = {k: v for k, v in DEMO_ICM.items() if k not in ("model", "family")}
            s = demo_summary(model=icm_model, out=icm_dir, family=icm_family, **kw)
            for name in ("zero-shot", "zero-shot + rule", "random few-shot", "ICM", "golden context",
                         "golden context + rule"):
                if name in s:
                    au = s.get(f"{name} AUROC")
                    rows.append([f"{icm_model} label accuracy: {name}",
                                 f"{s[name]:.3f} (n={s.get('claims', '?')}"
                                 + (f", AUROC {au:.2f})" if au is not None else ")"),
                                 f"{time.time() - t1:.0f} s" if name == "ICM" else ""])
            dirs.append(icm_dir)
    table = Table(title="selfteach demo")
    for c in ("step", "result [95% CI]", "time"):
        table.add_column(c)
    for r in rows:
        table.add_row(*r)
    console.print(table)
    console.print(f"data: {data}; ICM claims: builtin:{icm_family}")
    for d in dirs:
        console.print(f"run directory: {d}  (selfteach report {d})")
    console.print("full results (every fact family, intervals, the logs' explanation): docs/results.md")
