"""Reading and writing JSONL, with line-numbered errors and atomic writes."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from selfteach.errors import SelfteachError

_UMASK = os.umask(0)
os.umask(_UMASK)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """All rows of a JSONL file; a bad line raises an error naming file and line."""
    return list(iter_jsonl(path))


def iter_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        raise SelfteachError(f"{path}: file not found")
    if path.is_dir():
        raise SelfteachError(f"{path}: is a directory, expected a JSONL file")
    empty = True
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise SelfteachError(f"{path}:{lineno}: malformed JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise SelfteachError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            empty = False
            yield row
    if empty:
        raise SelfteachError(f"{path}: file is empty")


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
