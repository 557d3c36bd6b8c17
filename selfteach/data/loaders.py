"""Loading problems and claims from JSONL, local HF datasets, parquet, or built-in tasks.

A data spec is one of:
- a path to a `.jsonl` file, a `.parquet` file, or a directory saved with
  `datasets.Dataset.save_to_disk`;
- `builtin:NAME` (see `selfteach.data.builtin`).

Known formats are recognised by their fields (GSM8K, AIME/AMC/MATH, SVAMP, MAWPS, 4-way
multiple choice); anything else is read through an explicit field mapping such as
`{"question": "Body+Question", "answer": "Answer"}` (`+` joins fields with a space).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from selfteach.data.jsonl import read_jsonl
from selfteach.data.records import Claim, Problem
from selfteach.errors import SelfteachError

LETTERS = "ABCDEFGHIJ"


def parse_field_map(items: list[str] | None) -> dict[str, str]:
    """`["question=Body+Question", "answer=Answer"]` -> {"question": "Body+Question", ...}."""
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise SelfteachError(f"--field {item!r}: expected TARGET=SOURCE, e.g. question=Body+Question")
        target, source = (s.strip() for s in item.split("=", 1))
        if not target or not source:
            raise SelfteachError(f"--field {item!r}: expected TARGET=SOURCE")
        out[target] = source
    return out


def read_rows(spec: str | Path) -> list[dict[str, Any]]:
    """Raw rows from a JSONL file, parquet file, or saved HF dataset directory."""
    path = Path(spec)
    if not path.exists():
        raise SelfteachError(f"{path}: file not found")
    if path.is_dir():
        return _read_hf_dir(path)
    if path.suffix == ".parquet":
        return _read_parquet(path)
    return read_jsonl(path)


def _read_hf_dir(path: Path) -> list[dict[str, Any]]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:
        raise SelfteachError(f"{path}: not a dataset saved with save_to_disk ({type(e).__name__})") from None
    if isinstance(ds, datasets.DatasetDict):
        split = "test" if "test" in ds else next(iter(ds))
        ds = ds[split]
    rows = ds.to_list()
    if not rows:
        raise SelfteachError(f"{path}: dataset is empty")
    return rows


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    import datasets

    try:
        rows = datasets.Dataset.from_parquet(str(path)).to_list()
    except Exception as e:
        raise SelfteachError(f"{path}: cannot read parquet ({type(e).__name__})") from None
    if not rows:
        raise SelfteachError(f"{path}: file is empty")
    return rows


def _get(row: dict, source: str, where: str) -> Any:
    parts = [p.strip() for p in source.split("+")]
    missing = [p for p in parts if p not in row]
    if missing:
        raise SelfteachError(f"{where}: missing field {missing[0]!r}")
    vals = [row[p] for p in parts]
    if len(vals) == 1:
        return vals[0]
    return " ".join(str(v).strip() for v in vals)


def _gsm8k_answer(solution: str) -> str | None:
    m = re.search(r"####\s*(.+)$", solution.strip())
    return m.group(1).replace(",", "").strip() if m else None


def detect_format(row: dict) -> str:
    keys = set(row)
    if {"question", "answer"} <= keys and isinstance(row["answer"], str) and "####" in row["answer"]:
        return "gsm8k"
    if {"question", "choices", "answer"} <= keys:
        return "mc"
    if {"Body", "Question", "Answer"} <= keys:
        return "svamp"
    if {"input", "target"} <= keys:
        return "mawps"
    if {"problem", "answer"} <= keys:
        return "competition"
    if "question" in keys:
        return "generic"
    if "prompt" in keys:
        return "prompt"
    return "unknown"


def problem_from_row(row: dict, idx: int, fields: dict[str, str], where: str) -> Problem:
    rid = str(row.get("id", row.get("ID", idx)))
    if fields:
        q = _get(row, fields.get("question", "question"), where)
        ans = _get(row, fields["answer"], where) if "answer" in fields else row.get("answer")
        sol = _get(row, fields["solution"], where) if "solution" in fields else None
        choices = _get(row, fields["choices"], where) if "choices" in fields else None
        if choices is not None and isinstance(ans, int) and not isinstance(ans, bool):
            ans = LETTERS[ans]
        return Problem(id=rid, question=str(q), answer=ans, solution=sol, choices=choices)
    fmt = detect_format(row)
    if fmt == "gsm8k":
        sol = re.sub(r"<<[^>]*>>", "", row["answer"])
        return Problem(id=rid, question=row["question"], answer=_gsm8k_answer(sol), solution=sol)
    if fmt == "mc":
        ans = row["answer"]
        if isinstance(ans, int) and not isinstance(ans, bool):
            if not 0 <= ans < len(row["choices"]):
                raise SelfteachError(f"{where}: field 'answer' index {ans} out of range")
            ans = LETTERS[ans]
        return Problem(id=rid, question=row["question"], answer=ans, choices=row["choices"],
                       meta={"subject": row.get("type", row.get("subject"))})
    if fmt == "svamp":
        return Problem(id=rid, question=f"{row['Body'].strip()} {row['Question'].strip()}", answer=row["Answer"])
    if fmt == "mawps":
        return Problem(id=rid, question=row["input"], answer=row["target"])
    if fmt == "competition":
        return Problem(id=rid, question=row["problem"], answer=row["answer"], solution=row.get("solution"))
    if fmt == "generic":
        return Problem(id=rid, question=row["question"], answer=row.get("answer"), solution=row.get("solution"))
    if fmt == "prompt":
        return Problem(id=rid, question=row["prompt"], answer=row.get("answer"))
    raise SelfteachError(f"{where}: missing field 'question' (no known format; map fields with --field question=...)")


def validated(make: Callable[[], Any], where: str) -> Any:
    try:
        return make()
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "row"
        raise SelfteachError(f"{where}: field {loc!r}: {err['msg']}") from None
    except (TypeError, AttributeError, KeyError) as e:
        raise SelfteachError(f"{where}: wrongly typed field ({e})") from None


def load_problems(spec: str | Path, fields: dict[str, str] | None = None, limit: int | None = None,
                  require_answers: bool = False, seed: int | None = None) -> list[Problem]:
    """Problems from a data spec (path or `builtin:NAME`). See the module docstring."""
    spec_s = str(spec)
    if spec_s.startswith("builtin:"):
        from selfteach.data.builtin import builtin_problems

        problems = builtin_problems(spec_s.removeprefix("builtin:"), seed=seed or 0)
    else:
        rows = read_rows(spec_s)
        problems = [validated(lambda r=r, i=i: problem_from_row(r, i, fields or {}, f"{spec_s}:{i + 1}"),
                               f"{spec_s}:{i + 1}") for i, r in enumerate(rows)]
    if limit is not None:
        if limit < 1:
            raise SelfteachError(f"--limit {limit}: must be >= 1")
        problems = problems[:limit]
    if require_answers:
        missing = [p.id for p in problems if p.answer is None]
        if missing:
            raise SelfteachError(f"{spec_s}: {len(missing)} problems have no gold answer (first id {missing[0]!r}); "
                                 "evaluation needs answers (map one with --field answer=FIELD)")
    return problems


def load_claims(spec: str | Path, fields: dict[str, str] | None = None, limit: int | None = None,
                seed: int | None = None) -> list[Claim]:
    """Claims from a data spec. Rows need `claim` (or a mapped field); optional question,
    group, key, gold (bool, or "True"/"False", or 1/0)."""
    spec_s = str(spec)
    if spec_s.startswith("builtin:"):
        from selfteach.data.builtin import builtin_claims

        claims = builtin_claims(spec_s.removeprefix("builtin:"), seed=seed or 0)
    else:
        rows = read_rows(spec_s)
        fields = fields or {}
        claims = []
        for i, row in enumerate(rows):
            where = f"{spec_s}:{i + 1}"

            def make(row=row, i=i, where=where) -> Claim:
                src = {k: (_get(row, fields[k], where) if k in fields else row.get(k))
                       for k in ("id", "question", "claim", "group", "key", "gold")}
                if src["claim"] is None:
                    raise SelfteachError(f"{where}: missing field 'claim'")
                gold = src["gold"] if src["gold"] is not None else row.get("label")
                return Claim(id=str(src["id"] if src["id"] is not None else i), question=str(src["question"] or ""),
                             claim=str(src["claim"]),
                             group=None if src["group"] is None else str(src["group"]),
                             key=None if src["key"] is None else str(src["key"]), gold=_as_bool(gold, where))

            claims.append(validated(make, where))
    if limit is not None:
        claims = limit_whole_groups(claims, limit)
    ids = [c.id for c in claims]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise SelfteachError(f"{spec_s}: duplicate claim id {dup!r}")
    return claims


def limit_whole_groups(claims: list[Claim], limit: int) -> list[Claim]:
    """At most `limit` claims, keeping consistency groups whole: groups (an ungrouped claim
    is its own) are taken in order of first appearance while they fit. Cutting the first N
    claims split e.g. 28 of the 46 countries `builtin:capitals --limit 64` touched into lone
    claims, on which no consistency rule can act. Claims keep their order."""
    if all(c.group is None for c in claims):
        return claims[:limit]
    sizes: dict[str, int] = {}
    for n, c in enumerate(claims):
        key = c.group if c.group is not None else f"\0{n}"
        sizes[key] = sizes.get(key, 0) + 1
    keep, total = set(), 0
    for key, size in sizes.items():
        if total + size <= limit:
            keep.add(key)
            total += size
    if not keep:  # not even the first group fits: the first N claims, as asked
        return claims[:limit]
    return [c for n, c in enumerate(claims) if (c.group if c.group is not None else f"\0{n}") in keep]


def _as_bool(v: Any, where: str) -> bool | None:
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return v.strip().lower() in ("true", "1", "yes")
    raise SelfteachError(f"{where}: field 'gold': expected a boolean, got {v!r}")
