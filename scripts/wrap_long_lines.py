"""Wrap the lines ruff's E501 flags, and nothing else (no repo-wide reformat).

    python scripts/wrap_long_lines.py selfteach tests benchmarks    # then: make lint

1. A trailing comment that makes a line too long moves to its own line above the code
   (same indentation), as long as the code alone fits.
2. Each statement still holding a long line is reformatted alone (`ruff format --range`),
   in the project's ruff settings; every other line of the file stays as it is.
3. What is left is printed: long string literals and comments, wrapped by hand.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tokenize
from collections import defaultdict
from pathlib import Path

RUFF = str(Path(sys.executable).with_name("ruff"))
LIMIT = 100  # [tool.ruff] line-length


def long_lines(paths: list[str]) -> dict[str, list[int]]:
    out = subprocess.run(
        # per-file-ignores cleared: the files a temporary E501 exemption lists are found too
        [RUFF, "check", "--select", "E501", "--config", "lint.per-file-ignores = {}",
         "--no-cache", "--output-format", "concise", *paths],
        capture_output=True,
        text=True,
    ).stdout
    found: dict[str, list[int]] = defaultdict(list)
    for m in re.finditer(r"^(.+?):(\d+):\d+: E501", out, re.M):
        found[m.group(1)].append(int(m.group(2)))
    return found


def trailing_comments(source: str) -> dict[int, int]:
    """Line number -> column of a comment that follows code on that line."""
    cols, code_on = {}, set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT and tok.start[0] in code_on:
            cols[tok.start[0]] = tok.start[1]
        elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                              tokenize.COMMENT):
            code_on.update(range(tok.start[0], tok.end[0] + 1))
    return cols


def lift_comments(path: str, lines: list[int]) -> None:
    text = Path(path).read_text()
    rows = text.splitlines(keepends=True)
    cols = trailing_comments(text)
    for n in sorted(lines, reverse=True):
        col = cols.get(n)
        row = rows[n - 1]
        if col is None or len(row[:col].rstrip()) > LIMIT:
            continue
        indent = row[: len(row) - len(row.lstrip())]
        rows[n - 1 : n] = [f"{indent}{row[col:].rstrip()}\n", row[:col].rstrip() + "\n"]
    Path(path).write_text("".join(rows))


def main(paths: list[str]) -> int:
    for path, lines in long_lines(paths).items():
        lift_comments(path, lines)
    for path, lines in long_lines(paths).items():
        for n in sorted(lines, reverse=True):  # bottom up: earlier line numbers stay valid
            subprocess.run(
                [RUFF, "format", "-q", "--range", f"{n}:1-{n}:{10**4}", path], check=False
            )
    left = long_lines(paths)
    for path, lines in sorted(left.items()):
        for n in lines:
            print(f"{path}:{n}: still over {LIMIT} (a string or comment: wrap by hand)")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["selfteach", "tests", "benchmarks"]))
