"""Real-model evidence for issue 5: NLL vs prob vs DEFT, clean vs 25%-corrupted answers.

SmolLM2-135M-Instruct fine-tuned (full weights, same steps, data order and seed for every
objective) on MAWPS single-operation problems with completions "The answer is N."; in
the corrupted condition 25% of the training answers are replaced by a wrong number (the
true answer plus a random nonzero offset), the "confident conflict" case DEFT damps
(arXiv 2602.11424). Held-out accuracy by greedy generation, with 95% bootstrap
intervals and paired bootstrap intervals of the difference vs NLL (selfteach.stats).

    OMP_NUM_THREADS=1 python -m benchmarks.evidence_deft --out runs/evidence-deft
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

MAWPS = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "math" / "mawps_singleop.jsonl"
)


def split(n_train: int, n_eval: int, seed: int = 0):
    from selfteach.data.loaders import load_problems

    probs = load_problems(str(MAWPS)) if MAWPS.exists() else load_problems("builtin:arithmetic")
    rng = random.Random(seed)
    rng.shuffle(probs)
    return probs[:n_train], probs[n_train:n_train + n_eval]


def corrupt(train, share: float, seed: int = 0) -> list[dict]:
    from selfteach.data.answers import _clean_number

    rng = random.Random(seed + 1)
    bad = set(rng.sample(range(len(train)), round(share * len(train))))
    rows = []
    for i, p in enumerate(train):
        ans = _clean_number(str(p.answer))
        if i in bad:
            try:
                ans = _clean_number(str(float(ans) + rng.choice([-3, -2, -1, 1, 2, 3, 10])))
            except ValueError:
                ans = ans + "0"
        rows.append({"question": p.question, "completion": f"The answer is {ans}."})
    return rows


def evaluate(model_dir: str, problems, max_new_tokens: int = 16) -> list[int]:
    from selfteach.backends.base import SamplingParams
    from selfteach.backends.hf import HFBackend
    from selfteach.data.answers import is_correct

    be = HFBackend(model_dir, batch_size=16)
    prompts = [be.chat_prompt(p.question) for p in problems]
    gens = be.generate(prompts, SamplingParams(max_new_tokens=max_new_tokens))
    return [int(is_correct(g[0].text, p.answer)) for g, p in zip(gens, problems, strict=True)]


def main(
    out: str = "runs/evidence-deft",
    n_train: int = 128,
    n_eval: int = 100,
    steps: int = 16,
    batch: int = 8,
    lr: float = 1e-4,
    objectives=("nll", "deft", "prob"),
    model: str = "smollm2-135m",
) -> list[dict]:
    from selfteach.backends.models import resolve
    from selfteach.stats import bootstrap_ci, mean_ci
    from selfteach.train.sft import train_sft

    out_p = Path(out)
    out_p.mkdir(parents=True, exist_ok=True)
    train, held = split(n_train, n_eval)
    per_item: dict[str, list[int]] = {}
    cache = out_p / "per_item.json"
    if cache.exists():
        per_item = json.loads(cache.read_text())
    t0 = time.time()
    if "base" not in per_item:
        # room for verbose answers
        per_item["base"] = evaluate(str(resolve(model)), held, max_new_tokens=48)
        cache.write_text(json.dumps(per_item))
    rows = []
    conditions = {"clean": corrupt(train, 0.0), "corrupt25": corrupt(train, 0.25)}
    # objective-major: a stopped run still has both conditions for nll and deft
    for obj in objectives:
        for cond, data in conditions.items():
            key = f"{cond}/{obj}"
            if key not in per_item:
                s = train_sft(
                    model,
                    data,
                    out_p / cond / obj,
                    objective=obj,
                    max_steps=steps,
                    batch_size=batch,
                    learning_rate=lr,
                    seed=0,
                    diag_every=5,
                    resume=True,
                )
                per_item[key] = evaluate(s["model_dir"], held)
                cache.write_text(json.dumps(per_item))
    for key, vals in per_item.items():
        r = {
            "name": key,
            **{k: round(v, 4) if isinstance(v, float) else v for k, v in mean_ci(vals).items()},
        }
        cond = key.split("/")[0]
        ref = per_item.get(f"{cond}/nll")
        if ref is not None and key != f"{cond}/nll" and cond != "base":
            diff = [a - b for a, b in zip(vals, ref, strict=True)]
            lo, hi = bootstrap_ci(diff)
            r.update(
                diff_vs_nll=round(sum(diff) / len(diff), 4),
                diff_lo=round(lo, 4),
                diff_hi=round(hi, 4),
            )
        rsum = out_p / key / "result.json"
        if rsum.exists():
            res = json.loads(rsum.read_text())
            r.update(
                train_loss=res["train_loss"],
                mean_gate=res["mean_gate"],
                mean_alpha=res["mean_alpha"],
            )
        r["note"] = (
            f"{model}, {n_train} MAWPS single-op train problems, "
            f"{steps} steps x batch {batch}, lr {lr}; "
            f"{n_eval} held-out, greedy"
        )
        rows.append(r)
    (out_p / "results.json").write_text(json.dumps(rows, indent=2))
    print(f"total {time.time() - t0:.0f} s")
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/evidence-deft")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--n-train", type=int, default=128)
    ap.add_argument("--n-eval", type=int, default=100)
    a = ap.parse_args()
    res = main(a.out, a.n_train, a.n_eval, a.steps)
    cols = [
        "name",
        "mean",
        "lo",
        "hi",
        "n",
        "diff_vs_nll",
        "diff_lo",
        "diff_hi",
        "train_loss",
        "mean_gate",
        "mean_alpha",
    ]
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in res:
        print("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")
