"""Field checks shared by every loader: text, ids, labels, and unique ids.

A loader must never turn a wrongly typed value into a string (`str([1, 2])` is a valid
claim to pydantic, and `str(None)` an id that collides with the next null): these helpers
accept the types a field can sensibly have and raise one `SelfteachError` line naming
file:line and field for anything else.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal, overload

from selfteach.errors import SelfteachError


def _type(v: Any) -> str:
    return "null" if v is None else type(v).__name__


@overload
def as_text(v: Any, where: str, name: str, required: Literal[True] = True) -> str: ...
@overload
def as_text(v: Any, where: str, name: str, required: bool) -> str | None: ...
def as_text(v: Any, where: str, name: str, required: bool = True) -> str | None:
    """A non-blank string (or None when not `required`)."""
    if v is None and not required:
        return None
    if not isinstance(v, str):
        raise SelfteachError(f"{where}: field {name!r}: expected text, got {_type(v)}")
    if not v.strip():
        raise SelfteachError(f"{where}: field {name!r} is empty or only whitespace")
    return v


def as_id(v: Any, where: str, name: str = "id") -> str:
    """An id: a non-blank string or an integer (ints are common in exported datasets)."""
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    if isinstance(v, str) and v.strip():
        return v
    if isinstance(v, str):
        raise SelfteachError(f"{where}: field {name!r} is empty")
    raise SelfteachError(
        f"{where}: field {name!r}: expected a string or integer id, got {_type(v)}"
    )


def row_id(row: dict, where: str, implicit: int, names: tuple[str, ...] = ("id", "ID")) -> str:
    """The row's id field, or `implicit` (its 0-based position) when it has none."""
    for name in names:
        if name in row:
            return as_id(row[name], where, name)
    return str(implicit)


def as_label(v: Any, where: str, name: str, numbers: bool = False) -> str | None:
    """A grouping label (claim group, consistency key): string or integer; finite floats
    too when `numbers` (a key may be a numeric final answer). None stays None."""
    if v is None:
        return None
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    if numbers and isinstance(v, float) and math.isfinite(v):
        return str(int(v)) if v.is_integer() else str(v)
    if isinstance(v, str) and v.strip():
        return v
    if isinstance(v, str):
        raise SelfteachError(f"{where}: field {name!r} is empty")
    kinds = "a string or number" if numbers else "a string or integer"
    raise SelfteachError(f"{where}: field {name!r}: expected {kinds}, got {_type(v)}")


def check_unique_ids(ids: Iterable[tuple[str, str]], spec: str) -> None:
    """`ids` are (id, line) pairs; a repeated id raises naming both lines, e.g.
    "data.jsonl:7: duplicate id 'a' (first on line 2)"."""
    seen: dict[str, str] = {}
    for rid, line in ids:
        if rid in seen:
            raise SelfteachError(
                f"{spec}:{line}: duplicate id {rid!r} (first on line {seen[rid]}); "
                "ids must be unique (rows without an id get their 0-based row number)"
            )
        seen[rid] = line
