"""SPCT training data for the judge itself (arXiv 2504.02495, section 3.2).

(a) Rejective fine-tuning: from k sampled judgments per item with a known best response,
keep the judgments whose scores rank the best strictly above every other response; drop
items where every sample was right (too easy, nothing to learn) -- items where none was
right contribute nothing either. Rows are TRL conversational prompt-completion pairs
(`selfteach train sft` / TRL SFTTrainer read them directly).

(b) Rule-based online RL: `grpo_rows` gives one judge prompt per item (responses in a
random order) with the shown index of the best response, for GRPO with
`selfteach.judge.rewards.judge_rule_reward` (+1 if ranked strictly first, else -1).
"""

from __future__ import annotations

import random

from selfteach.data.records import JudgeItem
from selfteach.judge.parse import ranks_best_first
from selfteach.judge.prompts import JudgePrompt, build_prompt


def _messages(user: str, prompt: JudgePrompt) -> list[dict]:
    return ([{"role": "system", "content": prompt.system}] if prompt.system else []) + [
        {"role": "user", "content": user}]


def rft_rows(records: list[dict], prompt: JudgePrompt | None = None) -> tuple[list[dict], dict]:
    """(rows, counts) from judged records (see module docstring)."""
    prompt = prompt or JudgePrompt()
    rows: list[dict] = []
    counts = {"items": 0, "kept_items": 0, "dropped_all_right": 0, "dropped_none_right": 0,
              "skipped_no_best": 0, "judgments_kept": 0}
    for rec in records:
        counts["items"] += 1
        if (
            rec.get("best") is None
            or rec.get("mode", "multi") != "multi"
            or len(rec["responses"]) < 2
        ):
            counts["skipped_no_best"] += 1
            continue
        right = [s for s in rec["samples"] if ranks_best_first(s.get("scores"), rec["best"])]
        if len(right) == len(rec["samples"]):
            counts["dropped_all_right"] += 1
            continue
        if not right:
            counts["dropped_none_right"] += 1
            continue
        counts["kept_items"] += 1
        for s in right:
            user = build_prompt(rec["prompt"], [rec["responses"][i] for i in s["order"]], prompt)
            rows.append({"id": f"{rec['id']}-{len(rows)}", "prompt": _messages(user, prompt),
                         "completion": [{"role": "assistant", "content": s["text"]}]})
            counts["judgments_kept"] += 1
    return rows, counts


def grpo_rows(
    items: list[JudgeItem], prompt: JudgePrompt | None = None, seed: int = 0
) -> list[dict]:
    """Judge prompts for rule-reward GRPO: {"prompt", "judge_best", "judge_n"}; TRL passes
    the extra columns to the reward function as keyword lists."""
    prompt = prompt or JudgePrompt()
    rng = random.Random(seed)
    rows = []
    for it in items:
        if it.best is None or len(it.responses) < 2:
            continue
        order = rng.sample(range(len(it.responses)), len(it.responses))
        user = build_prompt(it.prompt, [it.responses[i] for i in order], prompt)
        rows.append(
            {
                "id": it.id,
                "prompt": _messages(user, prompt),
                "judge_best": order.index(it.best),
                "judge_n": len(it.responses),
            }
        )
    return rows
