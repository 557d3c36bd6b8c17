"""Step time and peak memory of each entropic SFT objective vs NLL (issue 5).

Each (model, objective) runs in a fresh subprocess (so peak memory is that run's own):
`EntropicSFTTrainer` on GSM8K question/solution pairs (real text, ~100-250 tokens per
example; the built-in arithmetic task if ../shared/data is absent), batch 4, AdamW,
`--steps` timed optimizer steps after one warm-up step. Also TRL's stock SFTTrainer
(`trl-nll`) as the reference our NLL must match.

Memory: `peak_train_gb` is the largest resident set sampled every 5 ms during the timed
steps minus the resident set just before them (activations, gradients, optimizer state,
logits tiles); `maxrss_gb` is the process's lifetime peak (getrusage), which includes
loading the model. On CPU, torch allocations are plain malloc, so RSS is the honest
measure (tracemalloc does not see tensor memory).

    python -m benchmarks.bench_objectives            # both models, all objectives
    python -m benchmarks.bench_objectives --models smollm2-135m --steps 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

# nll first and last: the spread between the two is the noise floor of the ratios.
# prob/deformed/cayley/deft share one code path (a different alpha), so deformed is left out
# by default, and on the 262k-vocabulary model only the ends are measured (CPU budget).
OBJECTIVES = ["nll", "trl-nll", "prob", "dft", "cayley", "deft", "nll"]
OBJECTIVES_BY_MODEL = {"gemma3-270m": ["nll", "trl-nll", "deft", "nll"]}
MODELS = ["smollm2-135m", "gemma3-270m"]
GSM8K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gsm8k" / "train.jsonl"


def _rows(n: int = 64) -> list[dict]:
    if GSM8K.exists():
        from selfteach.data.loaders import load_problems

        return [
            {"question": p.question, "completion": p.solution}
            for p in load_problems(str(GSM8K), limit=n)
        ]
    from selfteach.train.sft import load_sft_rows

    return load_sft_rows("builtin:arithmetic", limit=n)


def run_one(model: str, objective: str, steps: int, batch: int) -> dict:
    """One measurement, in this process (called in a subprocess by `main`)."""
    import resource
    import tempfile

    import psutil
    import torch
    from transformers import TrainerCallback

    from selfteach.train.sft import SFTRunConfig, build_trainer

    torch.manual_seed(0)
    rows = _rows()
    alpha = 0.5 if objective == "deformed" else None
    cfg = SFTRunConfig(
        model=model,
        objective="nll" if objective == "trl-nll" else objective,
        alpha=alpha,
        batch_size=batch,
        max_steps=steps + 1,
        warmup_ratio=0.0,
        learning_rate=1e-5,
    )
    tmp = tempfile.mkdtemp(prefix="bench-sft-")
    trainer = build_trainer(cfg, rows, output_dir=tmp)
    if objective == "trl-nll":  # TRL's own SFTTrainer.compute_loss, same model/data/args
        from trl import SFTTrainer
        from trl.trainer.utils import add_fused_lm_head

        # TRL's own head
        add_fused_lm_head(trainer.model, outputs=("log_probs", "entropy", "is_top1"))
        trainer.compute_loss = lambda *a, **k: SFTTrainer.compute_loss(trainer, *a, **k)
    trainer.args.save_strategy = "no"
    proc = psutil.Process()
    state = {"t0": 0.0, "c0": 0.0, "times": [], "cpu": [], "base": 0, "peak": 0, "on": False}

    def sample():
        while state["on"]:
            state["peak"] = max(state["peak"], proc.memory_info().rss)
            time.sleep(0.01)

    class Timer(TrainerCallback):
        def on_step_begin(self, args, st, control, **kw):
            if st.global_step == 1:  # after the warm-up step
                state["base"] = proc.memory_info().rss
                state["peak"] = state["base"]
                state["on"] = True
                threading.Thread(target=sample, daemon=True).start()
            state["t0"], state["c0"] = time.perf_counter(), time.process_time()

        def on_step_end(self, args, st, control, **kw):
            if st.global_step > 1:
                state["times"].append(time.perf_counter() - state["t0"])
                state["cpu"].append(time.process_time() - state["c0"])

    trainer.add_callback(Timer())
    ntok = sum(len(x) for x in trainer.train_dataset["input_ids"][: batch * (steps + 1)]) / (
        steps + 1
    )
    trainer.train()
    state["on"] = False
    times, cpu = sorted(state["times"]), sorted(state["cpu"])
    return {"model": model, "objective": objective, "steps": len(times),
            "tokens_per_step": round(ntok), "step_s_median": round(times[len(times) // 2], 3),
            "step_s_min": round(times[0], 3), "step_s_max": round(times[-1], 3),
            "cpu_s_median": round(cpu[len(cpu) // 2], 3),
            "peak_train_gb": round((state["peak"] - state["base"]) / 2**30, 3),
            "maxrss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)}


def main(models: list[str] | None = None, steps: int = 3, batch: int = 4, threads: int | None = 1,
         objectives: list[str] | None = None) -> list[dict]:
    rows = []
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    from selfteach.backends.models import resolve

    for model in models or MODELS:
        resolve(model)  # convert/cache the GGUF once, outside the measured processes
        for obj in objectives or OBJECTIVES_BY_MODEL.get(model, OBJECTIVES):
            cmd = [
                sys.executable,
                "-m",
                "benchmarks.bench_objectives",
                "--one",
                model,
                obj,
                "--steps",
                str(steps),
                "--batch",
                str(batch),
            ]
            p = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                env=env,
                cwd=Path(__file__).resolve().parents[1],
            )
            line = [x for x in p.stdout.splitlines() if x.startswith("{")]
            if p.returncode or not line:
                rows.append({"name": f"{model}/{obj}", "model": model, "objective": obj,
                             "note": "failed: " + (p.stderr.strip().splitlines() or ["?"])[-1]})
                continue
            r = json.loads(line[-1])
            rows.append({"name": f"{model}/{obj}", **r})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    for model in models or MODELS:
        base = [
            r
            for r in rows
            if r.get("model") == model and r.get("objective") == "nll" and "step_s_median" in r
        ]
        if not base:
            continue
        t = sum(r["step_s_median"] for r in base) / len(base)
        c = sum(r["cpu_s_median"] for r in base) / len(base)
        m = sum(r["peak_train_gb"] for r in base) / len(base)
        for r in rows:
            if r.get("model") == model and "step_s_median" in r:
                r["time_ratio"] = round(r["step_s_median"] / t, 3)
                r["cpu_ratio"] = round(r["cpu_s_median"] / c, 3)
                r["mem_ratio"] = round(r["peak_train_gb"] / m, 3) if m > 0 else None
                r["note"] = (f"median of {r['steps']} steps after 1 warm-up, batch {batch}, "
                             f"~{r['tokens_per_step']} tokens/step, OMP_NUM_THREADS={threads}; "
                             "ratios vs mean of the two nll runs")
    return rows


def _table(rows: list[dict]) -> str:
    cols = [
        "name",
        "tokens_per_step",
        "step_s_median",
        "step_s_min",
        "step_s_max",
        "time_ratio",
        "cpu_s_median",
        "cpu_ratio",
        "peak_train_gb",
        "mem_ratio",
        "maxrss_gb",
    ]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--one", nargs=2, metavar=("MODEL", "OBJECTIVE"))
    ap.add_argument("--models", nargs="*", default=None)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--objectives", nargs="*", default=None)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(run_one(a.one[0], a.one[1], a.steps, a.batch)))
    else:
        print(_table(main(a.models, a.steps, a.batch, a.threads, a.objectives)))
