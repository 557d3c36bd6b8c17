"""Final-answer extraction and equivalence.

Extraction finds the final-answer SPAN, first that matches wins: `#### ...` (GSM8K), the last
`\\boxed{...}` (balanced braces), "the (final) answer is ..." / "Answer: ...", and, for
free-form math, the last number-like expression (fractions, `\\frac`, mixed numbers, tuples,
times, currency, thousands separators, percentages, inline math). The span goes to math-verify
(`parse` + `verify`); numbers are not cleaned by hand beyond a fast path for plain decimals.

`extract_answer` returns a KEY: a canonical string of the parsed value when it is a rational
number (integers and terminating decimals in decimal, others as p/q: "3/4" -> "0.75", "1/3"
-> "1/3"), a canonical time ("10:30 AM" -> "10:30"), else the span with spacing normalised.
ICM's math rule groups claims by this key, so 3/4 and 3/5 never share a label, and every key
reads back through `answers_match`.

Every math-verify call runs in a child process (`verify_worker.py`) under a time limit: an
answer like `99999999!` or `9^{9^{9^{9}}}` would otherwise never return, and math-verify's
own signal-based timeouts only work on the main thread. A timeout counts as "not equal" and
is counted (`verify_timeouts`, `VERIFY_STATS`).
"""

from __future__ import annotations

import atexit
import json
import os
import re
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

VERIFY_TIMEOUT_S = 3.0  # budget of one math-verify request (parse + verify)
_GRACE_S = 3.0  # extra wait before the child is killed (it is stuck in C code)
_START_TIMEOUT_S = 120.0  # importing math-verify on a loaded machine

# ---- number-like expressions ------------------------------------------------------------

_INT = r"\d{1,3}(?:(?:,|\{,\})\d{3})+(?!\d)|\d+"
_UNSIGNED = rf"(?:{_INT})(?:\.\d+)?|\.\d+"
_SIGN = r"(?:(?<![\w)\]}.])-\s?)?"
_NUMBER = rf"{_SIGN}(?:\\?\$\s?)?(?:{_UNSIGNED})"
_TEX_FRAC = r"\\[dt]?frac\s*\{\s*-?[\d.,]+\s*\}\s*\{\s*-?[\d.,]+\s*\}"
_ELEMENT = rf"(?:{_SIGN}{_TEX_FRAC}|{_NUMBER}(?:\s*/\s*{_UNSIGNED})?)"
_TIME = r"(?<![\d:])\d{1,2}:\d{2}(?![\d:])(?:\s*[ap]\.?\s?m\b\.?)?"
_NUMLIKE = re.compile(
    "|".join([
        _TIME,
        rf"[(\[]\s*{_ELEMENT}(?:\s*,\s*{_ELEMENT})+\s*[)\]]",  # tuples, intervals
        rf"\\\{{\s*{_ELEMENT}(?:\s*,\s*{_ELEMENT})*\s*\\\}}",  # sets
        rf"{_SIGN}(?:\d+\s*)?{_TEX_FRAC}",  # \frac{3}{4}, 2\frac{1}{2}
        rf"{_SIGN}\d+\s+\d+\s*/\s*\d+(?![\d.])",  # mixed number 2 1/2
        rf"{_NUMBER}\s*/\s*{_NUMBER}",  # 3/4
        rf"{_NUMBER}(?:\s*\\?%)?",
    ]),
    re.IGNORECASE,
)
_INLINE_MATH = re.compile(
    r"\$\$(.+?)\$\$|\\\[(.+?)\\\]|\\\((.+?)\\\)|(?<![\\$])\$([^$\n]+?)(?<!\s)\$", re.DOTALL)
_WORD = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{2,}")
_ANSWER_IS = re.compile(
    r"\b(?:final\s+answer|answer)\b\s*\**\s*(?:is\b|:|=|would be\b|will be\b|should be\b)\s*\**",
    re.IGNORECASE)
_HASHES = re.compile(r"####[ \t]*([^\n]*)")
_SENTENCE_END = re.compile(r"\n|\.(?=\s|$)")
_LETTER = re.compile(r"(?:answer\s*(?:is|:)?\s*\(?|^\(?|\s\(?)([A-J])\)?(?:[.:)\s]|$)",
                     re.IGNORECASE | re.MULTILINE)
_PLAIN = re.compile(rf"\s*(-?)\s*(?:\\?\$)?\s*({_UNSIGNED})\s*\.?\s*")
_TIME_FULL = re.compile(r"\s*(\d{1,2}):(\d{2})\s*(?:([ap])\.?\s?m\.?)?\s*", re.IGNORECASE)


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (balanced braces), or None."""
    start = text.rfind("\\boxed")
    while start != -1:
        i = text.find("{", start)
        if i == -1:
            return None
        depth = 0
        for j in range(i, len(text)):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    return text[i + 1 : j].strip()
        start = text.rfind("\\boxed", 0, start)
    return None


def _math_segments(text: str) -> list[re.Match]:
    """Inline math ($...$, \\(...\\), \\[...\\]); a `$` pair around plain words is currency."""
    out = []
    for m in _INLINE_MATH.finditer(text):
        body = next(g for g in m.groups() if g is not None)
        if m.group(4) is not None and _WORD.search(re.sub(r"\\text\{[^{}]*\}", "", body)):
            continue
        out.append(m)
    return out


def _body(m: re.Match) -> str:
    body = next(g for g in m.groups() if g is not None)
    return body.rsplit("=", 1)[1] if "=" in body else body  # "x = 5", "1 + 7 = 8": the result


def _span_in(region: str) -> str | None:
    """The answer inside a stretch of text that follows "answer is" or "####"."""
    if "=" in region:  # "the answer is 1 + 7 = 8" restates the computation: the result follows "="
        after = region.rsplit("=", 1)[1]
        if _NUMLIKE.search(after):
            region = after
    maths = _math_segments(region)
    if maths:
        return _body(maths[0])
    m = _NUMLIKE.search(region)
    if m:
        return m.group(0)
    m = re.fullmatch(r"\W*\(?([A-Ja-j])\)?[\W]*|\W*([A-Za-z][\w-]*)\W*", region)
    return (m.group(1) or m.group(2)) if m else None


def final_answer_span(text: str) -> str | None:
    """The text of the final answer in a model output, before any normalisation."""
    if not text:
        return None
    text = text.replace("\u2212", "-")
    m = _HASHES.search(text)
    if m and (span := _span_in(m.group(1))):
        return span
    boxed = last_boxed(text)
    if boxed:
        return boxed
    matches = list(_ANSWER_IS.finditer(text))
    if matches:
        region = _SENTENCE_END.split(text[matches[-1].end():], maxsplit=1)[0]
        if span := _span_in(region):
            return span
    nums = list(_NUMLIKE.finditer(text))
    maths = _math_segments(text)
    if maths and (not nums or maths[-1].end() >= nums[-1].end()):
        return _body(maths[-1]).strip() or None
    return nums[-1].group(0) if nums else None


# ---- canonical keys -----------------------------------------------------------------------

def _canon(x: Fraction) -> str:
    """Integers and terminating decimals in decimal notation, other rationals as p/q (exact:
    no float, so 10^400 + 1/2 keeps every digit)."""
    if x.denominator == 1:
        return str(x.numerator)
    d, twos, fives = x.denominator, 0, 0
    while d % 2 == 0:
        d, twos = d // 2, twos + 1
    while d % 5 == 0:
        d, fives = d // 5, fives + 1
    if d != 1:
        return f"{x.numerator}/{x.denominator}"
    digits = max(twos, fives)
    scaled = str(abs(x.numerator * 10**digits // x.denominator)).rjust(digits + 1, "0")
    return ("-" if x < 0 else "") + scaled[:-digits] + "." + scaled[-digits:]


_MAX_DIGITS = 1000  # Python refuses int(str) beyond 4300 digits; such "answers" go to math-verify


def _plain_number(s: str) -> Fraction | None:
    """A plain decimal ("-1,234.50", "$18", "12{,}500"), the fast path math-verify agrees with."""
    m = _PLAIN.fullmatch(s)
    if not m or len(m.group(2)) > _MAX_DIGITS:
        return None
    return Fraction(m.group(1) + m.group(2).replace("{,}", "").replace(",", ""))


def _time(s: str) -> tuple[int, int, bool] | None:
    """(hour, minute, has am/pm) of "10:30", "2:15 PM"; hours in 24h form when am/pm is given."""
    m = _TIME_FULL.fullmatch(s)
    if not m:
        return None
    h, mins, ampm = int(m.group(1)), int(m.group(2)), (m.group(3) or "").lower()
    if ampm:
        h = h % 12 + (12 if ampm == "p" else 0)
    return h, mins, bool(ampm)


def _tidy(span: str) -> str:
    """Spacing, delimiters and sentence punctuation removed: a key that reads back."""
    s = span.strip().strip("$").strip()
    s = re.sub(r"\\left|\\right|\\!|\\,|\\;|\\displaystyle", "", s)
    s = re.sub(r"\s*([,+\-*/=()\[\]{}<>^_])\s*", r"\1", s)
    return re.sub(r"\s+", " ", s).rstrip(".").strip()


def _as_latex(s: str) -> str:
    """Wrap an answer for math-verify's LaTeX reader; a lone `$` is a currency sign."""
    s = s.strip()
    if len(s) > 1 and s.startswith("$") and s.endswith("$"):
        s = s.strip("$")
    return "$" + re.sub(r"(?<!\\)\$", "", s).replace("\\$", "") + "$"


def answer_key(span: str | None) -> str | None:
    """The canonical key of an answer span (see the module docstring)."""
    if span is None or not span.strip():
        return None
    span = span.replace("\u2212", "-")
    t = _time(span)
    if t:
        return f"{t[0]}:{t[1]:02d}"
    pct = re.fullmatch(r"(.*?)\s*\\?%\s*\.?", span)
    if pct and (x := _plain_number(pct.group(1))) is not None:
        return _canon(x) + "%"
    x = _plain_number(span)
    if x is not None:
        return _canon(x)
    # math-verify reads "2 1/2" as 2 * 1/2; written as LaTeX it is the mixed number 5/2
    span = re.sub(r"^(-?\d+)\s+(\d+)\s*/\s*(\d+)$", r"\1\\frac{\2}{\3}", span.strip())
    num = _worker_key(span)
    try:
        return _tidy(span) if num is None else _canon(Fraction(num))
    except ValueError:  # more digits than Python converts
        return _tidy(span)


@lru_cache(maxsize=65536)
def _worker_key(span: str) -> str | None:
    res = _VERIFIER.ask({"op": "key", "a": _as_latex(span)})
    if res.get("timeout"):
        _TIMED_OUT.add(_tidy(span))  # its comparison would time out too: answer at once
    return res.get("num")


def extract_answer(text: str, kind: str = "math") -> str | None:
    """The final answer in a model output, as a canonical key. `kind` is "math" or "choice"."""
    if not text:
        return None
    if kind == "choice":
        return extract_choice(text)
    return answer_key(final_answer_span(text))


def extract_choice(text: str) -> str | None:
    """A multiple-choice letter: "the answer is (C)", "C.", "\\boxed{C}"."""
    boxed = last_boxed(text)
    if boxed and re.fullmatch(r"\(?[A-Ja-j]\)?", boxed):
        return boxed.strip("()").upper()
    m = re.search(r"answer\s*(?:is|:)\s*\(?([A-J])\b", text, re.IGNORECASE)
    if m:
        return m.group(1).upper()
    m = _LETTER.search(text.strip())
    return m.group(1).upper() if m else None


# ---- equivalence ----------------------------------------------------------------------------

@dataclass
class VerifyStats:
    """Counts over this process: math-verify requests, timeouts, and killed worker processes."""

    requests: int = 0
    timeouts: int = 0
    restarts: int = 0


VERIFY_STATS = VerifyStats()
_LOCAL = threading.local()
_TIMED_OUT: set[str] = set()


def verify_timeouts() -> int:
    """Comparisons that hit the time limit so far in the calling thread (take differences)."""
    return getattr(_LOCAL, "timeouts", 0)


def _count_timeout() -> None:
    _LOCAL.timeouts = verify_timeouts() + 1
    VERIFY_STATS.timeouts += 1


class _Verifier:
    """One long-lived `verify_worker.py` child, one request at a time, killed when it overruns."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.proc: subprocess.Popen | None = None
        self.pid = 0

    def _start(self) -> None:
        worker = Path(__file__).with_name("verify_worker.py")
        self.proc = subprocess.Popen([sys.executable, str(worker)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)
        self.pid = os.getpid()
        if self._read(_START_TIMEOUT_S) is None:
            self._kill()
            raise RuntimeError(f"math-verify worker {worker} did not start")

    def _read(self, timeout: float) -> dict | None:
        assert self.proc is not None and self.proc.stdout is not None
        buf, deadline = b"", time.monotonic() + timeout
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                return None
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:  # the child died (e.g. out of memory)
                return None
            buf += chunk
        return json.loads(buf)

    def _kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            for pipe in (self.proc.stdin, self.proc.stdout):  # both PIPE: never None
                if pipe is not None:
                    pipe.close()
        self.proc = None

    def ask(self, req: dict) -> dict:
        """The worker's answer; {"timeout": True} when it overran and was killed."""
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                self._start()
            assert self.proc is not None and self.proc.stdin is not None
            VERIFY_STATS.requests += 1
            self.proc.stdin.write((json.dumps(req | {"budget": VERIFY_TIMEOUT_S}) + "\n").encode())
            res = self._read(VERIFY_TIMEOUT_S + _GRACE_S)
            if res is None:
                timed_out = self.proc.poll() is None
                self._kill()
                VERIFY_STATS.restarts += 1
                return {"timeout": timed_out}
            return res


    def close(self) -> None:
        """Let the worker exit (end of its input); kill it if it is busy."""
        if self.proc is not None and self.pid == os.getpid():
            try:
                if self.proc.stdin is not None:
                    self.proc.stdin.close()
                self.proc.wait(timeout=1)
                if self.proc.stdout is not None:
                    self.proc.stdout.close()
            except (OSError, subprocess.TimeoutExpired):
                self._kill()
        self.proc = None

    def forget(self) -> None:
        """In a forked child: the parent's worker and lock are not ours."""
        self.inherited = self.proc  # kept, so it is never closed (or waited for) from here
        self.lock, self.proc = threading.Lock(), None


_VERIFIER = _Verifier()
atexit.register(_VERIFIER.close)
os.register_at_fork(after_in_child=_VERIFIER.forget)


@lru_cache(maxsize=65536)
def _match(pred: str, gold: str) -> tuple[bool, bool]:
    """(equal, timed out)."""
    p, g = pred.strip(), gold.strip()
    if not p or not g:
        return False, False
    if p == g:
        return True, False
    pn, gn = _plain_number(p), _plain_number(g)
    if pn is not None and gn is not None:
        return abs(pn - gn) <= Fraction(1, 10**6) * max(Fraction(1), abs(gn)), False
    pt, gt = _time(p), _time(g)
    if pt or gt:  # math-verify reads 10:30 as 10/30
        if not (pt and gt) or pt[1] != gt[1]:
            return False, False
        return (pt[0] == gt[0] if pt[2] and gt[2] else pt[0] % 12 == gt[0] % 12), False
    if _tidy(p) in _TIMED_OUT:
        return False, True
    res = _VERIFIER.ask({"op": "match", "a": _as_latex(g), "b": _as_latex(p)})
    if res.get("timeout"):
        _TIMED_OUT.add(_tidy(p))
        return False, True
    return bool(res.get("ok")) or _tidy(p).lower() == _tidy(g).lower(), False


def answers_match(pred: str | None, gold: str | None) -> bool:
    """True when `pred` and `gold` are the same answer (numerically or symbolically).
    A check that runs past `VERIFY_TIMEOUT_S` is False and counted (`verify_timeouts`)."""
    if pred is None or gold is None:
        return False
    ok, timed_out = _match(str(pred), str(gold))
    if timed_out:
        _count_timeout()
    return ok


def is_correct(output: str, gold: str | None, kind: str = "math") -> bool:
    """Extract the final answer from `output` and compare it with `gold`."""
    if kind == "choice":
        pred = extract_choice(output)
        return pred is not None and gold is not None and pred == str(gold).strip().upper()
    return answers_match(extract_answer(output), gold)
