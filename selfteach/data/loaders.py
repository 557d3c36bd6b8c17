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
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from selfteach.data.checks import as_id, as_label, as_text, check_unique_ids, row_id
from selfteach.data.jsonl import iter_jsonl_at
from selfteach.data.records import Claim, Problem
from selfteach.errors import SelfteachError

LETTERS = "ABCDEFGHIJ"


def parse_field_map(items: list[str] | None) -> dict[str, str]:
    """`["question=Body+Question", "answer=Answer"]` -> {"question": "Body+Question", ...}."""
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise SelfteachError(
                f"--field {item!r}: expected TARGET=SOURCE, e.g. question=Body+Question"
            )
        target, source = (s.strip() for s in item.split("=", 1))
        if not target or not source:
            raise SelfteachError(f"--field {item!r}: expected TARGET=SOURCE")
        out[target] = source
    return out


def read_rows(spec: str | Path) -> list[dict[str, Any]]:
    """Raw rows from a JSONL file, parquet file, or saved HF dataset directory."""
    return [row for _, row in read_rows_at(spec)]


def read_rows_at(spec: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """(line, row) pairs: the file line for JSONL, the 1-based row number otherwise.
    JSONL rows are checked as they are read (UTF-8, JSON objects, finite numbers: see
    `selfteach.data.jsonl`)."""
    path = Path(spec)
    if not str(spec).strip():
        raise SelfteachError("data path '': empty")
    if not path.exists():
        raise SelfteachError(f"{path}: file not found")
    if path.is_dir():
        rows = _read_hf_dir(path)
    elif path.suffix == ".parquet":
        rows = _read_parquet(path)
    else:
        return list(iter_jsonl_at(path))
    # NaN in a parquet column is a missing value, fine in a column nobody reads; the
    # record models reject a non-finite number in a field that is read.
    return list(enumerate(rows, 1))


def _read_hf_dir(path: Path) -> list[dict[str, Any]]:
    import datasets

    datasets.disable_progress_bars()  # progress goes to stderr, where only the error line belongs
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:
        if _no_shards(path):
            raise SelfteachError(f"{path}: dataset is empty") from None
        raise SelfteachError(
            f"{path}: not a dataset saved with save_to_disk ({type(e).__name__})"
        ) from None
    if isinstance(ds, datasets.DatasetDict):
        if not ds:
            raise SelfteachError(f"{path}: saved dataset has no split")
        split = "test" if "test" in ds else next(iter(ds))
        ds = ds[split]
    rows = ds.to_list()
    if not rows:
        raise SelfteachError(f"{path}: dataset is empty")
    return rows


def _no_shards(path: Path) -> bool:
    """A dataset saved with no rows has a state.json listing no data files."""
    import json

    try:
        return (
            json.loads((path / "state.json").read_text(encoding="utf-8")).get("_data_files") == []
        )
    except (OSError, ValueError, AttributeError):
        return False


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    import datasets

    datasets.disable_progress_bars()
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
    return " ".join(as_text(v, where, p).strip() for p, v in zip(parts, vals, strict=True))


def _gsm8k_answer(solution: str) -> str | None:
    m = re.search(r"####\s*(.+)$", solution.strip())
    return m.group(1).replace(",", "").strip() if m else None


def detect_format(row: dict) -> str:
    keys = set(row)
    if (
        {"question", "answer"} <= keys
        and isinstance(row["answer"], str)
        and "####" in row["answer"]
    ):
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
    rid = row_id(row, where, idx)
    if fields:
        qname = fields.get("question", "question")
        q = as_text(_get(row, qname, where), where, qname)
        ans = _get(row, fields["answer"], where) if "answer" in fields else row.get("answer")
        sol = _get(row, fields["solution"], where) if "solution" in fields else None
        choices = _get(row, fields["choices"], where) if "choices" in fields else None
        if choices is not None and isinstance(ans, int) and not isinstance(ans, bool):
            ans = _letter(ans, choices, where)
        return Problem(id=rid, question=q, answer=ans, solution=sol, choices=choices)
    fmt = detect_format(row)
    if fmt == "gsm8k":
        sol = re.sub(r"<<[^>]*>>", "", row["answer"])
        return Problem(id=rid, question=row["question"], answer=_gsm8k_answer(sol), solution=sol)
    if fmt == "mc":
        ans = row["answer"]
        if isinstance(ans, int) and not isinstance(ans, bool):
            ans = _letter(ans, row["choices"], where)
        return Problem(id=rid, question=row["question"], answer=ans, choices=row["choices"],
                       meta={"subject": row.get("type", row.get("subject"))})
    if fmt == "svamp":
        body, q = as_text(row["Body"], where, "Body"), as_text(row["Question"], where, "Question")
        return Problem(id=rid, question=f"{body.strip()} {q.strip()}", answer=row["Answer"])
    if fmt == "mawps":
        return Problem(id=rid, question=row["input"], answer=row["target"])
    if fmt == "competition":
        return Problem(
            id=rid, question=row["problem"], answer=row["answer"], solution=row.get("solution")
        )
    if fmt == "generic":
        return Problem(
            id=rid, question=row["question"], answer=row.get("answer"), solution=row.get("solution")
        )
    if fmt == "prompt":
        return Problem(id=rid, question=row["prompt"], answer=row.get("answer"))
    raise SelfteachError(
        f"{where}: missing field 'question' (no known format; map fields with --field question=...)"
    )


def _letter(index: int, choices: Any, where: str) -> str:
    """A 0-based answer index as its letter; out of range is an error, not a wrap-around."""
    n = len(choices) if isinstance(choices, list) else 0
    if not 0 <= index < min(n, len(LETTERS)):
        raise SelfteachError(f"{where}: field 'answer' index {index} out of range for {n} choices")
    return LETTERS[index]


def validated(make: Callable[[], Any], where: str) -> Any:
    try:
        return make()
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        msg = err["msg"].removeprefix("Value error, ").replace("Input should be", "must be")
        raise SelfteachError(
            f"{where}: field {loc!r}: {msg}" if loc else f"{where}: {msg}"
        ) from None
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
        at = read_rows_at(spec_s)
        problems = [validated(partial(problem_from_row, r, i, fields or {}, f"{spec_s}:{n}"),
                              f"{spec_s}:{n}") for i, (n, r) in enumerate(at)]
        check_unique_ids(((p.id, str(n)) for p, (n, _) in zip(problems, at, strict=True)), spec_s)
    if limit is not None:
        if limit < 1:
            raise SelfteachError(f"--limit {limit}: must be >= 1")
        problems = problems[:limit]
    if require_answers:
        missing = [p.id for p in problems if p.answer is None]
        if missing:
            raise SelfteachError(
                f"{spec_s}: {len(missing)} problems have no gold answer (first id {missing[0]!r}); "
                "evaluation needs answers (map one with --field answer=FIELD)"
            )
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
        at = read_rows_at(spec_s)
        fields = fields or {}
        claims = [validated(partial(_claim, row, i, fields, f"{spec_s}:{n}"), f"{spec_s}:{n}")
                  for i, (n, row) in enumerate(at)]
        check_unique_ids(((c.id, str(n)) for c, (n, _) in zip(claims, at, strict=True)), spec_s)
    if limit is not None:
        claims = limit_whole_groups(claims, limit)
    ids = [c.id for c in claims]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise SelfteachError(f"{spec_s}: duplicate claim id {dup!r}")
    return claims


def _claim(row: dict, i: int, fields: dict[str, str], where: str) -> Claim:
    """One claim; every field keeps its type (no str() of a list or a null)."""
    src = {k: (_get(row, fields[k], where) if k in fields else row.get(k))
           for k in ("id", "question", "claim", "group", "key", "gold")}
    if src["claim"] is None:
        raise SelfteachError(f"{where}: missing field {fields.get('claim', 'claim')!r}")
    gold = src["gold"] if src["gold"] is not None else row.get("label")
    q = src["question"]
    q = "" if q is None or q == "" else as_text(q, where, fields.get("question", "question"))
    has_id = "id" in fields or "id" in row
    return Claim(id=as_id(src["id"], where, fields.get("id", "id")) if has_id else str(i),
                 question=q, claim=as_text(src["claim"], where, fields.get("claim", "claim")),
                 group=as_label(src["group"], where, fields.get("group", "group")),
                 key=as_label(src["key"], where, fields.get("key", "key"), numbers=True),
                 gold=_as_bool(gold, where))


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
    return [
        c for n, c in enumerate(claims) if (c.group if c.group is not None else f"\0{n}") in keep
    ]


def _as_bool(v: Any, where: str) -> bool | None:
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return v.strip().lower() in ("true", "1", "yes")
    raise SelfteachError(f"{where}: field 'gold': expected a boolean, got {v!r}")
