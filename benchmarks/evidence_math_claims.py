"""Math verification claims from a model's own solutions (issue 12, item 2).

    python -m benchmarks.evidence_math_claims --model qwen2.5-coder-0.5b --data ../shared/data/math/svamp.jsonl \
        --problems 100 --samples 4 --out runs/ev/svamp-claims

Samples `--samples` solutions per problem on the served path (`--serve`), with a prompt that
asks for a short, code-free solution (Qwen2.5-Coder otherwise writes plans and code and runs
out of tokens: 84% cut off at 128 tokens on SVAMP, issue 12), grades each extracted answer
against the gold answer with `answers_match` (math-verify), and writes:

- `candidates.jsonl`: the improve pipeline's candidate rows (id, problem_id, text, answer,
  finish_reason, tokens, correct);
- `claims.jsonl`: one ICM claim per solution (`claims_from_candidates`: group = problem, key =
  extracted answer, gold = graded correct; gold is for reporting only), for
  `selfteach elicit --claims FILE --task math`;
- `judge_pairs.jsonl`: for every problem with a right and a wrong solution, one pair
  {prompt, chosen: a right solution, rejected: a wrong one, subset} (the first of each in
  sample order; graded by math-verify, never hand-written), for `selfteach judge eval --data`;
- `stats.json`: accuracy, cut-off share (finish_reason == "length"), no-answer share, the share
  of problems with both a right and a wrong solution, tokens, wall time.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from selfteach.backends import load_backend
from selfteach.backends.base import SamplingParams
from selfteach.data.answers import answers_match, extract_answer
from selfteach.data.jsonl import write_jsonl
from selfteach.data.loaders import load_problems
from selfteach.improve.pairs import claims_from_candidates

BRIEF = ("Solve the problem in at most three short sentences of plain text (no code, no plan). "
         "End with 'The answer is N.' where N is the final number.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--data", default="../shared/data/math/svamp.jsonl")
    ap.add_argument("--problems", type=int, default=100)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--max-new-tokens", type=int, default=192)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--instruction", default=BRIEF)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    problems = load_problems(a.data, require_answers=True)
    random.Random(a.seed).shuffle(problems)
    problems = problems[:a.problems]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    backend = load_backend(a.model, serve=True)
    t0 = time.time()
    prompts = [backend.chat_prompt(f"{p.question}\n\n{a.instruction}") for p in problems]
    params = SamplingParams(n=a.samples, temperature=a.temperature, max_new_tokens=a.max_new_tokens, seed=a.seed)
    rows = []
    for start in range(0, len(problems), 8):
        batch = problems[start:start + 8]
        for p, prompt, gens in zip(batch, prompts[start:start + 8], backend.generate(prompts[start:start + 8], params),
                                   strict=True):
            for j, g in enumerate(gens):
                ans = extract_answer(g.text)
                rows.append({"id": f"{p.id}#{j}", "problem_id": p.id, "prompt": prompt, "text": g.text, "answer": ans,
                             "temperature": a.temperature, "finish_reason": g.finish_reason, "tokens": g.num_tokens,
                             "correct": answers_match(ans, p.answer)})
        print(f"{start + len(batch)}/{len(problems)} problems, {time.time() - t0:.0f} s", flush=True)
    wall = time.time() - t0
    backend.close()
    write_jsonl(out / "candidates.jsonl", rows)
    claims = claims_from_candidates(rows, {p.id: p.question for p in problems})
    write_jsonl(out / "claims.jsonl", [c.model_dump() for c in claims])
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["problem_id"], []).append(r)
    stats = {"model": a.model, "data": a.data, "problems": len(problems), "samples": a.samples,
             "temperature": a.temperature, "max_new_tokens": a.max_new_tokens, "instruction": a.instruction,
             "claims": len(rows), "accuracy": sum(r["correct"] for r in rows) / len(rows),
             "cut_off_share": sum(r["finish_reason"] == "length" for r in rows) / len(rows),
             "no_answer_share": sum(r["answer"] is None for r in rows) / len(rows),
             "problems_right_and_wrong": sum(any(r["correct"] for r in v) and not all(r["correct"] for r in v)
                                             for v in by.values()) / len(by),
             "problems_all_right": sum(all(r["correct"] for r in v) for v in by.values()) / len(by),
             "mean_tokens": sum(r["tokens"] for r in rows) / len(rows), "wall_s": round(wall, 1),
             "tokens_per_s": round(sum(r["tokens"] for r in rows) / wall, 2)}
    pairs = []
    for p in problems:
        right = [r for r in by.get(p.id, []) if r["correct"] and r["finish_reason"] != "length"]
        wrong = [r for r in by.get(p.id, []) if not r["correct"] and r["answer"] is not None]
        if right and wrong:
            pairs.append({"id": p.id, "prompt": p.question, "chosen": right[0]["text"].strip(),
                          "rejected": wrong[0]["text"].strip(), "subset": f"{Path(a.data).stem}-own"})
    write_jsonl(out / "judge_pairs.jsonl", pairs)
    stats["judge_pairs"] = len(pairs)
    (out / "stats.json").write_text(json.dumps(stats, indent=1))
    print(json.dumps(stats, indent=1))


if __name__ == "__main__":
    main()
