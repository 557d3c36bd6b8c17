"""Reading and writing JSONL, with line-numbered errors and atomic writes."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from selfteach.errors import SelfteachError

_UMASK = os.umask(0)
os.umask(_UMASK)


def read_jsonl(path: str | Path, finite: bool = True) -> list[dict[str, Any]]:
    """All rows of a JSONL file; a bad line raises an error naming file and line."""
    return [row for _, row in iter_jsonl_at(path, finite=finite)]


def iter_jsonl_at(path: str | Path, allow_empty: bool = False,
                  finite: bool = True) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) for every non-blank line. Every line must be UTF-8 text holding
    one JSON object with finite numbers (unless `finite` is False: files we wrote may hold
    NaN metrics); the first that is not raises `SelfteachError` naming file:line (and the
    field, for a non-finite number)."""
    path = Path(path)
    if not path.exists():
        raise SelfteachError(f"{path}: file not found")
    if path.is_dir():
        raise SelfteachError(f"{path}: is a directory, expected a JSONL file")
    empty = True
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            line = decode_line(raw, path, lineno)
            if not line.strip():
                continue
            empty = False
            yield lineno, parse_line(line, f"{path}:{lineno}", finite)
    if empty and not allow_empty:
        raise SelfteachError(f"{path}: file is empty")


def decode_line(raw: bytes, path: Path | str, lineno: int) -> str:
    """A line as text; a UTF-8 byte-order mark on line 1 is dropped."""
    if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        hint = (
            " (looks like UTF-16)"
            if raw[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in raw
            else ""
        )
        raise SelfteachError(
            f"{path}:{lineno}: not UTF-8{hint}: byte 0x{raw[e.start]:02x} at column {e.start + 1}; "
            "save the file as UTF-8"
        ) from None


def parse_line(line: str, where: str, finite: bool = True) -> dict[str, Any]:
    """One JSON object, with only finite numbers unless `finite` is False (JSON has no NaN
    or Infinity; Python's json reads them, and 1e400, as non-finite floats that poison
    every mean). Our own run files may hold NaN metrics (json.dumps writes them)."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise SelfteachError(f"{where}: malformed JSON ({e.msg} at column {e.colno})") from None
    except RecursionError:
        raise SelfteachError(f"{where}: JSON nested too deeply") from None
    if not isinstance(row, dict):
        raise SelfteachError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if finite:
        check_finite(row, where)
    return row


def check_finite(value: Any, where: str) -> None:
    """Raise naming the field of the first NaN or infinite number in `value` (iterative:
    a deeply nested row must not overflow the stack here)."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        name, v = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            raise SelfteachError(f"{where}: field {name or 'row'!r}: {v} is not a finite number")
        if isinstance(v, dict):
            stack.extend((f"{name}.{k}" if name else str(k), x) for k, x in v.items())
        elif isinstance(v, list | tuple):
            stack.extend((f"{name}[{i}]", x) for i, x in enumerate(v))


def _dump(row: Any) -> str:
    if isinstance(row, BaseModel):
        return row.model_dump_json()
    return json.dumps(row, ensure_ascii=False)


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> Path:
    """Write rows atomically: to a temp file in the same folder, then rename."""
    return atomic_write_text(path, "".join(_dump(r) + "\n" for r in rows))


def append_jsonl(path: str | Path, row: Any) -> None:
    """Append one row and flush (used for logs and resumable outputs)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(_dump(row) + "\n")
        f.flush()


def atomic_write_text(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
