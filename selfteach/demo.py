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

from pydantic import BaseModel, Field
from rich.console import Console
from rich.table import Table

from selfteach.cliconfig import config_command, out_option


class DemoConfig(BaseModel):
    """Settings of `selfteach demo`."""

    model: str = Field("smollm2-135m", description="model for the accuracy step")
    data: str = Field("builtin:arithmetic", description="problems for the accuracy step")
    limit: int = Field(50, ge=1, description="problems to evaluate")
    icm_model: str = Field("gemma3-270m", description="model for the ICM step")
    skip_icm: bool = Field(False, description="only run the accuracy step")


@config_command(DemoConfig, options=[out_option("runs/demo", "run directory root")], server=True)
def demo(config: DemoConfig, out: Path) -> None:
    """Run the end-to-end demo on the embedded models and print a results table."""
    run_demo(config.model, config.data, config.limit, config.icm_model, config.skip_icm, out)


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
    rows.append(
        [
            f"accuracy of {model}, {a['n']} problems",
            f"{a['mean']:.3f} [{a['lo']:.3f}, {a['hi']:.3f}]",
            f"{time.time() - t0:.0f} s",
        ]
    )
    dirs.append(acc_dir)
    if not skip_icm:
        from selfteach.elicit import demo_summary

        t1 = time.time()
        console.print(
            f"[bold]2/2 ICM[/bold]: {icm_model} labels built-in capital claims without labels"
        )
        icm_dir = out / f"{stamp}-icm"
        s = demo_summary(model=icm_model, out=icm_dir)
        for name in ("zero-shot", "zero-shot + rule", "random few-shot", "ICM", "golden context"):
            if name in s:
                rows.append(
                    [
                        f"{icm_model} label accuracy: {name}",
                        f"{s[name]:.3f} (n={s.get('claims', '?')})",
                        f"{time.time() - t1:.0f} s" if name == "ICM" else "",
                    ]
                )
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
