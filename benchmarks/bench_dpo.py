"""DPO step throughput: `selfteach train dpo` vs a plain TRL DPOTrainer script (issue 4).

Both arms train the same model on the same pairs with the same settings (batch 4, AdamW,
lr 5e-6, max_length 512, fp32 on CPU, `--steps` optimizer steps, logging every step, no
checkpoints), each in a fresh subprocess, alternating arms `--repeats` times; the median
of each arm is reported. Throughput = optimizer steps / TRL's `train_runtime` (the train
loop only, which includes the reference pass when reference log-probs are precomputed:
that cost is part of the step budget). Measured with and without `--precompute-ref`.

The pairs are 32 arithmetic word problems (the built-in task) in the model's chat format,
with a right and a wrong worked solution each (~30-60 tokens): shaped like the pairs the
improve loop produces.

    python -m benchmarks.bench_dpo                          # smollm2-135m, 8 steps, 2 repeats
    python -m benchmarks.bench_dpo --model tiny-random --steps 4 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PLAIN_TRL = r"""
import json, sys
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer
path, pairs, out = sys.argv[1], sys.argv[2], sys.argv[3]
steps, precompute = int(sys.argv[4]), sys.argv[5] == "1"
rows = [json.loads(l) for l in open(pairs)]
ds = Dataset.from_list(
    [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in rows]
)
tok = AutoTokenizer.from_pretrained(path)
model = AutoModelForCausalLM.from_pretrained(path, dtype="float32")
args = DPOConfig(output_dir=out, max_steps=steps, per_device_train_batch_size=4,
                 learning_rate=5e-6, beta=0.1, max_length=512, use_cpu=True, bf16=False,
                 report_to="none", save_strategy="no", logging_steps=1,
                 precompute_ref_log_probs=precompute, gradient_checkpointing=False, seed=0)
trainer = DPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
res = trainer.train()
print("RESULT" + json.dumps(
    {"train_runtime": res.metrics["train_runtime"], "global_step": trainer.state.global_step}
))
"""


def make_pairs(model: str, path: Path, n: int = 32) -> None:
    from transformers import AutoTokenizer

    from selfteach.backends.models import resolve
    from selfteach.data.builtin import builtin_problems
    from selfteach.data.records import PreferencePair

    tok = AutoTokenizer.from_pretrained(str(resolve(model)))
    rows = []
    for p in builtin_problems("arithmetic", n=n):
        user = (
            f"{p.question}\n\nSolve the problem. "
            "End with 'The answer is N.' where N is the final number."
        )
        prompt = (
            tok.apply_chat_template(
                [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
            )
            if getattr(tok, "chat_template", None)
            else f"Question: {user}\nAnswer:"
        )
        a = int(p.answer)
        rows.append(
            PreferencePair(
                prompt=prompt,
                chosen=(
                    f"Let's work it out step by step. From the question, the result is {a}. "
                    f"The answer is {a}."
                ),
                rejected=(
                    f"I think we should combine the numbers differently, which gives {a + 3}. "
                    f"The answer is {a + 3}."
                ),
            )
        )
    path.write_text("".join(r.model_dump_json() + "\n" for r in rows))


def run_arm(arm: str, model: str, pairs: Path, steps: int, precompute: bool) -> dict:
    from selfteach.backends.models import resolve

    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    with tempfile.TemporaryDirectory() as tmp:
        if arm == "selfteach":
            cmd = [
                str(Path(sys.executable).parent / "selfteach"),
                "train",
                "dpo",
                "--pairs",
                str(pairs),
                "--model",
                model,
                "--out",
                tmp,
                "--max-steps",
                str(steps),
                "--batch-size",
                "4",
                "--lr",
                "5e-6",
                "--max-length",
                "512",
                "--precompute-ref" if precompute else "--no-precompute-ref",
            ]
        else:
            cmd = [
                sys.executable,
                "-c",
                PLAIN_TRL,
                str(resolve(model)),
                str(pairs),
                tmp,
                str(steps),
                "1" if precompute else "0",
            ]
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        wall = time.time() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{arm} failed:\n{proc.stderr[-3000:]}")
        if arm == "selfteach":
            res = json.loads(proc.stdout[proc.stdout.rindex('{\n  "model_dir"'):])
        else:
            res = json.loads(proc.stdout[proc.stdout.rindex("RESULT") + 6:].splitlines()[0])
    return {
        "train_runtime": float(res["train_runtime"]),
        "steps": int(res["global_step"]),
        "wall": wall,
    }


def main(model: str = "smollm2-135m", steps: int = 8, repeats: int = 2) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        pairs = Path(tmp) / "pairs.jsonl"
        make_pairs(model, pairs)
        for precompute in (True, False):
            runs: dict[str, list[dict]] = {"trl": [], "selfteach": []}
            for _ in range(repeats):
                for arm in ("trl", "selfteach"):  # alternate, so load drift hits both arms alike
                    runs[arm].append(run_arm(arm, model, pairs, steps, precompute))
            sps = {
                arm: statistics.median(r["steps"] / r["train_runtime"] for r in rs)
                for arm, rs in runs.items()
            }
            for arm in ("trl", "selfteach"):
                rows.append(
                    {
                        "name": f"{arm} precompute_ref={precompute}",
                        "model": model,
                        "steps": steps,
                        "steps_per_s": round(sps[arm], 4),
                        "s_per_step": round(1 / sps[arm], 3),
                        "process_wall_s": round(statistics.median(r["wall"] for r in runs[arm]), 1),
                        "ratio_vs_trl": round(sps[arm] / sps["trl"], 3),
                        "note": f"median of {repeats}; batch 4, 32 pairs, fp32 CPU",
                    }
                )
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    out = main(a.model, a.steps, a.repeats)
    cols = list(out[0])
    print(" | ".join(cols))
    for r in out:
        print(" | ".join(str(r[c]) for c in cols))
