"""Claims from candidates, and preference pairs from ICM labels (ICM+DPO, steps 2 and 4).

Claims (methods.md section 2, step 2): each (problem, candidate solution) is a
verification claim for ICM (Wen et al. 2025, arXiv 2506.10139); its consistency group is
the problem and its key the extracted final answer, so ICM's math rule forces solutions
with the same answer to share a label and solutions with different answers not to be both
True. `gold` (is the answer right?) is attached only when the problem has a gold answer,
and ICM uses it for reporting only.

Pairs (step 4): within each problem, every (True, False) pair of distinct, non-degenerate
solutions becomes {prompt, chosen, rejected}; at most `cap` per problem (chosen at random
with a seed, spread over distinct chosen/rejected texts).
"""

from __future__ import annotations

import random
from collections import defaultdict
from itertools import product

from selfteach.data.records import Claim, PreferencePair
from selfteach.errors import SelfteachError


def claims_from_candidates(candidates: list[dict], questions: dict[str, str]) -> list[Claim]:
    """One ICM claim per candidate: claim = solution text, group = problem, key = final answer."""
    return [
        Claim(
            id=c["id"],
            question=questions[c["problem_id"]],
            claim=c["text"].strip() or "(empty)",
            group=c["problem_id"],
            key=c["answer"],
            gold=c.get("correct"),
        )
        for c in candidates
    ]


def is_degenerate(text: str, min_chars: int = 3) -> bool:
    """Empty or near-empty text, or text that is one character/token repeated: nothing a
    preference can be learned from."""
    t = text.strip()
    if len(t) < min_chars:
        return True
    words = t.split()
    return len(set(t)) <= 2 or (len(words) >= 8 and len(set(words)) <= 2)


def build_pairs(candidates: list[dict], labels: dict[str, bool], cap: int = 5,
                seed: int = 0) -> tuple[list[PreferencePair], dict]:
    """(pairs, stats). `labels` maps candidate id -> ICM label (unlabeled ids are skipped)."""
    rng = random.Random(seed)
    by_problem: dict[str, list[dict]] = defaultdict(list)
    for c in candidates:
        by_problem[c["problem_id"]].append(c)
    stats = {
        "problems": len(by_problem),
        "candidates": len(candidates),
        "labeled": 0,
        "labeled_true": 0,
        "labeled_false": 0,
        "dropped_degenerate": 0,
        "dropped_duplicate": 0,
        "problems_with_both": 0,
        "pairs_possible": 0,
        "pairs": 0,
        "pairs_correct_order": 0,
        "pairs_with_gold": 0,
    }
    pairs: list[PreferencePair] = []
    for pid, cands in by_problem.items():
        good: dict[str, dict] = {}
        bad: dict[str, dict] = {}
        for c in cands:
            if c["id"] not in labels:
                continue
            stats["labeled"] += 1
            stats["labeled_true" if labels[c["id"]] else "labeled_false"] += 1
            text = c["text"].strip()
            if is_degenerate(text):
                stats["dropped_degenerate"] += 1
                continue
            side = good if labels[c["id"]] else bad
            if text in side:
                stats["dropped_duplicate"] += 1
                continue
            side[text] = c
        # the same text labelled both ways (possible when ICM splits identical answers)
        # is no preference
        for text in set(good) & set(bad):
            del good[text], bad[text]
            stats["dropped_duplicate"] += 2
        if not good or not bad:
            continue
        stats["problems_with_both"] += 1
        combos = list(product(good.values(), bad.values()))
        stats["pairs_possible"] += len(combos)
        rng.shuffle(combos)
        for w, lo in _spread(combos, cap):
            meta = {"problem_id": pid, "chosen_id": w["id"], "rejected_id": lo["id"],
                    "chosen_answer": w["answer"], "rejected_answer": lo["answer"]}
            if w.get("correct") is not None and lo.get("correct") is not None:
                stats["pairs_with_gold"] += 1
                stats["pairs_correct_order"] += int(bool(w["correct"]) and not lo["correct"])
                meta |= {"chosen_correct": w["correct"], "rejected_correct": lo["correct"]}
            pairs.append(
                PreferencePair(
                    prompt=w["prompt"],
                    chosen=w["text"].strip(),
                    rejected=lo["text"].strip(),
                    meta=meta,
                )
            )
    stats["pairs"] = len(pairs)
    return pairs, stats


def _spread(combos: list[tuple[dict, dict]], cap: int) -> list[tuple[dict, dict]]:
    """Up to `cap` combos, preferring ones whose chosen and rejected texts were not used yet,
    so a few pairs cover as many distinct solutions as possible."""
    picked: list = []
    used_w: set = set()
    used_l: set = set()
    rest = []
    for w, lo in combos:
        if len(picked) < cap and w["id"] not in used_w and lo["id"] not in used_l:
            picked.append((w, lo))
            used_w.add(w["id"])
            used_l.add(lo["id"])
        else:
            rest.append((w, lo))
    return picked + rest[: cap - len(picked)]


def no_pairs_message(stats: dict) -> str:
    """Why no pairs came out, with the counts."""
    if stats["labeled"] == 0:
        why = "no candidate was labeled"
    elif stats["labeled_true"] == 0 or stats["labeled_false"] == 0:
        why = (
            "ICM put every candidate in one class "
            f"(True {stats['labeled_true']}, False {stats['labeled_false']})"
        )
    else:
        why = (
            "no problem has both a True and a False candidate "
            "(candidates within a problem all agree)"
        )
    return (
        f"no preference pairs: {why}; {stats['problems']} problems, "
        f"{stats['candidates']} candidates, "
        f"{stats['labeled_true']} labeled True, {stats['labeled_false']} False, "
        f"{stats['dropped_degenerate']} degenerate and "
        f"{stats['dropped_duplicate']} duplicate texts dropped. "
        "Try more samples per problem (--samples), a wider temperature spread (--temperatures), "
        "or more problems"
    )


def require_pairs(pairs: list[PreferencePair], stats: dict) -> None:
    if not pairs:
        raise SelfteachError(no_pairs_message(stats))
