"""Reading a judgment's scores: the last `\\boxed{a, b, ...}` list (SPCT, arXiv 2504.02495).

Never raises on model output. Anything but exactly n integers in [lo, hi] inside the last
box is a failed sample with a reason, which voting counts and the run summary reports:
`missing` (no box), `unterminated` (box never closed, e.g. cut off by max_new_tokens),
`format` (an entry is not an integer), `count` (wrong number of scores), `range`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BOX = re.compile(r"\\boxed\s*\{")
_INT = re.compile(r"[+-]?\d+(?:\.0+)?")
FAILURE_REASONS = ("missing", "unterminated", "format", "count", "range")


@dataclass(frozen=True)
class Parsed:
    scores: list[int] | None  # None when the sample failed
    error: str | None = None  # one of FAILURE_REASONS

    @property
    def ok(self) -> bool:
        return self.scores is not None


def parse_scores(text: str, n: int, lo: int = 1, hi: int = 10) -> Parsed:
    """The n integer scores in the last `\\boxed{...}` of `text`, or a failure reason."""
    boxes = list(_BOX.finditer(text or ""))
    if not boxes:
        return Parsed(None, "missing")
    start = boxes[-1].end()
    end = text.find("}", start)
    if end == -1:
        return Parsed(None, "unterminated")
    body = text[start:end].strip().strip("[]()")
    parts = [p.strip() for p in re.split(r"[,;]", body)] if body else []
    if not parts or not all(_INT.fullmatch(p) for p in parts):
        return Parsed(None, "format")
    scores = [int(float(p)) for p in parts]
    if len(scores) != n:
        return Parsed(None, "count")
    if any(s < lo or s > hi for s in scores):
        return Parsed(None, "range")
    return Parsed(scores)


def close_stopped_box(text: str, finish_reason: str | None, stop: list[str]) -> str:
    """Put back the brace of a score box that a stop string cut off.

    Backends drop the stop string from the text, so a judgment stopped at a stop string that
    starts with "}" (e.g. "}\n", the end of the score line) ends inside its last box; the
    brace is put back so the box parses. Any other text is returned unchanged."""
    if finish_reason != "stop" or not any(s.startswith("}") for s in stop):
        return text
    return text + "}" if parse_scores(text, 1).error == "unterminated" else text


def ranks_best_first(scores: list[int] | None, best: int) -> bool:
    """SPCT's rule: the known-best response scores strictly above every other one."""
    if scores is None or not 0 <= best < len(scores):
        return False
    return all(scores[best] > s for i, s in enumerate(scores) if i != best)
