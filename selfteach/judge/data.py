"""Judge data: RewardBench-format pairs, n-response items, and the built-in pairwise set.

Accepted rows (JSONL, parquet, or a `save_to_disk` directory, via `read_rows`):
- RewardBench: `{prompt, chosen, rejected, subset?, id?}` -> `JudgeItem(responses=[chosen,
  rejected], best=0)`. Conversational fields (lists of `{role, content}`) are reduced to
  the last user turn (prompt) and the last assistant turn (responses).
- n responses: `{prompt, responses: [...], best?: int, subset?, id?}`.

`builtin:pairs` is a small pairwise set generated offline by `make_builtin_pairs` from
GSM8K *train* and MAWPS: a stand-in for RewardBench (which a user loads from a local
copy), so that `selfteach judge eval` runs anywhere. Subsets:
- `gsm8k-slip`: a GSM8K gold worked solution vs the same solution with a final-step
  arithmetic slip (the last computed result and the final answer replaced by a wrong
  number; every other word identical);
- `mawps-answer`: a MAWPS one-step word problem, "The answer is N." with the gold N vs a
  wrong N (the gold answer plus a nonzero offset).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from selfteach.data.checks import as_label, check_unique_ids, row_id
from selfteach.data.loaders import read_rows, read_rows_at
from selfteach.data.records import JudgeItem
from selfteach.errors import SelfteachError

BUILTIN_PAIRS = Path(__file__).resolve().parents[1] / "data" / "builtin" / "judge_pairs.jsonl"


def _text(v: Any, where: str, name: str, role: str) -> str:
    """A string field, or the content of the last `role` message of a conversation."""
    if isinstance(v, list) and v and all(isinstance(m, dict) for m in v):
        msgs = [m for m in v if m.get("role") == role] or v
        v = msgs[-1].get("content")
    if not isinstance(v, str):
        raise SelfteachError(f"{where}: field {name!r}: expected text, got {type(v).__name__}")
    if not v.strip():
        raise SelfteachError(f"{where}: field {name!r} is empty")
    return v


def item_from_row(row: dict, idx: int, where: str) -> JudgeItem:
    """One `JudgeItem` from a RewardBench or n-response row (see the module docstring)."""
    if "prompt" not in row:
        raise SelfteachError(
            f"{where}: missing field 'prompt' (expected RewardBench {{prompt, chosen, rejected}} "
            "or {prompt, responses, best})"
        )
    prompt = _text(row["prompt"], where, "prompt", "user")
    rid = row_id(row, where, idx, names=("id",))
    subset = as_label(row.get("subset"), where, "subset") or "default"
    if "chosen" in row or "rejected" in row:
        for f in ("chosen", "rejected"):
            if f not in row:
                raise SelfteachError(f"{where}: missing field {f!r}")
        responses = [_text(row["chosen"], where, "chosen", "assistant"),
                     _text(row["rejected"], where, "rejected", "assistant")]
        best: Any = 0
    elif "responses" in row:
        if not isinstance(row["responses"], list) or not row["responses"]:
            raise SelfteachError(f"{where}: field 'responses': expected a non-empty list")
        responses = [
            _text(r, where, f"responses[{j}]", "assistant") for j, r in enumerate(row["responses"])
        ]
        best = row.get("best")
        if best is not None and (isinstance(best, bool) or not isinstance(best, int)
                                 or not 0 <= best < len(responses)):
            raise SelfteachError(
                f"{where}: field 'best': {best!r} is not an index into {len(responses)} responses"
            )
    else:
        raise SelfteachError(f"{where}: missing field 'chosen'/'rejected' or 'responses'")
    try:
        return JudgeItem(id=rid, prompt=prompt, responses=responses, best=best, subset=subset)
    except ValidationError as e:
        err = e.errors()[0]
        raise SelfteachError(
            f"{where}: field {'.'.join(map(str, err['loc']))!r}: {err['msg']}"
        ) from None


def load_judge_items(spec: str | Path, limit: int | None = None, pairwise: bool = False,
                     need_best: bool = False) -> list[JudgeItem]:
    """Judge items from a data spec (path or `builtin:pairs`). `pairwise` requires >= 2
    responses per item; `need_best` requires a known best response (evaluation)."""
    spec_s = str(spec)
    if spec_s.startswith("builtin:"):
        name = spec_s.removeprefix("builtin:")
        if name != "pairs":
            raise SelfteachError(f"{spec_s}: unknown built-in judge set (choose: builtin:pairs)")
        path: Path | str = BUILTIN_PAIRS
    else:
        path = spec_s
    at = read_rows_at(path)
    items = [item_from_row(r, i, f"{spec_s}:{n}") for i, (n, r) in enumerate(at)]
    check_unique_ids(((it.id, str(n)) for it, (n, _) in zip(items, at, strict=True)), spec_s)
    for it, (n, _) in zip(items, at, strict=True):
        if pairwise and len(it.responses) < 2:
            raise SelfteachError(f"{spec_s}:{n}: item {it.id!r} has {len(it.responses)} response; "
                                 "comparing needs at least 2 (or use --mode pointwise)")
        if need_best and it.best is None:
            raise SelfteachError(
                f"{spec_s}:{n}: item {it.id!r} has no field 'best' (needed for accuracy)"
            )
    if limit is not None:
        if limit < 1:
            raise SelfteachError(f"--limit {limit}: must be >= 1")
        items = items[:limit]
    return items


# ---- the built-in pairwise set --------------------------------------------------------
def _slip(solution: str, answer: str, rng: random.Random) -> str | None:
    """The gold solution with its last computed result (and the final answer) wrong."""
    body, _, _ = solution.rpartition("####")
    pos = [m.start() for m in re.finditer(rf"(?<![\d.]){re.escape(answer)}(?![\d.])", body)]
    if not pos or not answer.lstrip("-").isdigit():
        return None
    value = int(answer)
    wrong = value + rng.choice([-10, -2, -1, 1, 2, 10])
    if wrong < 0 or wrong == value:
        wrong = value + 3
    p = pos[-1]
    body = body[:p] + str(wrong) + body[p + len(answer):]
    return f"{body.rstrip()}\nFinal answer: {wrong}"


def make_builtin_pairs(
    gsm8k_train: str | Path,
    mawps: str | Path,
    n_per_subset: int = 32,
    seed: int = 0,
    max_chars: int = 320,
    skip: int = 0,
) -> list[dict]:
    """RewardBench-format rows (see the module docstring). Short GSM8K solutions only
    (<= `max_chars`) so that a CPU judge fits two of them in its context cheaply. `skip`
    drops the first candidates of each subset (use it to draw a disjoint training set)."""
    rng = random.Random(seed)
    rows: list[dict] = []
    gsm = read_rows(gsm8k_train)
    order = list(range(len(gsm)))
    rng.shuffle(order)
    taken = 0
    for i in order:
        q, raw = gsm[i]["question"], gsm[i]["answer"]
        sol = re.sub(r"<<[^>]*>>", "", raw)
        ans = sol.rpartition("####")[2].strip().replace(",", "")
        if len(sol) > max_chars:
            continue
        bad = _slip(sol, ans, rng)
        if bad is None:
            continue
        taken += 1
        if taken <= skip:
            continue
        good = f"{sol.rpartition('####')[0].rstrip()}\nFinal answer: {ans}"
        rows.append(
            {
                "id": f"gsm8k-train-{i}",
                "prompt": q,
                "chosen": good,
                "rejected": bad,
                "subset": "gsm8k-slip",
            }
        )
        if taken - skip >= n_per_subset:
            break
    maw = read_rows(mawps)
    order = list(range(len(maw)))
    rng.shuffle(order)
    for i in order[skip : skip + n_per_subset]:
        gold = float(maw[i]["target"])
        gold_s = str(int(gold)) if gold.is_integer() else str(gold)
        wrong = gold + rng.choice([-10, -2, -1, 1, 2, 10])
        if wrong < 0:
            wrong = gold + 3
        wrong_s = str(int(wrong)) if float(wrong).is_integer() else str(round(wrong, 4))
        rows.append(
            {
                "id": f"mawps-{i}",
                "prompt": maw[i]["input"],
                "chosen": f"The answer is {gold_s}.",
                "rejected": f"The answer is {wrong_s}.",
                "subset": "mawps-answer",
            }
        )
    return rows


def main() -> None:  # python -m selfteach.judge.data GSM8K_TRAIN MAWPS [OUT]
    import sys

    gsm, maw = sys.argv[1], sys.argv[2]
    out = Path(sys.argv[3]) if len(sys.argv) > 3 else BUILTIN_PAIRS
    rows = make_builtin_pairs(gsm, maw)
    out.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    print(f"wrote {len(rows)} pairs to {out}")


if __name__ == "__main__":
    main()
