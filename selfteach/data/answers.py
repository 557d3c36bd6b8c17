"""Final-answer extraction and equivalence.

Extraction order (first that matches wins): `#### N` (GSM8K), the last `\\boxed{...}`,
"the (final) answer is X", a multiple-choice letter, and, for free-form math, the last
number in the text. Equivalence goes through math-verify (`parse` + `verify`), with a
fast exact/numeric path first. Timeouts are disabled because math-verify's signal-based
timeout only works on the main thread (trainers call rewards from worker threads).
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache

logging.getLogger("math_verify").setLevel(logging.ERROR)

_NUM = r"-?\$?\d[\d,]*(?:\.\d+)?|-?\.\d+"
_HASHES = re.compile(r"####\s*(" + _NUM + r")")
_ANSWER_IS = re.compile(
    r"(?:final answer|the answer|answer)\s*(?:is|:|=)\s*[:\s]*\$?\\?\(?\s*(" + _NUM + r"|\([A-Ja-j]\)|[A-J]\b)",
    re.IGNORECASE,
)
_LAST_NUM = re.compile(_NUM)
_LETTER = re.compile(r"(?:answer\s*(?:is|:)?\s*\(?|^\(?|\s\(?)([A-J])\)?(?:[.:)\s]|$)", re.IGNORECASE | re.MULTILINE)


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


def _clean_number(s: str) -> str:
    s = s.replace(",", "").replace("$", "").strip()
    if s.endswith("."):
        s = s[:-1]
    try:
        f = float(s)
    except ValueError:
        return s
    return str(int(f)) if f.is_integer() else repr(f)


def extract_answer(text: str, kind: str = "math") -> str | None:
    """The final answer in a model output. `kind` is "math" or "choice" (A-J letters)."""
    if not text:
        return None
    if kind == "choice":
        return extract_choice(text)
    m = _HASHES.search(text)
    if m:
        return _clean_number(m.group(1))
    boxed = last_boxed(text)
    if boxed is not None:
        return _clean_number(boxed)
    matches = list(_ANSWER_IS.finditer(text))
    if matches:
        # "the answer is 1 + 7 = 8." restates the computation: the result follows the last "="
        clause = re.split(r"\n|\.(?=\s|$)", text[matches[-1].start():], maxsplit=1)[0]
        if "=" in clause:
            after = _LAST_NUM.findall(clause.rsplit("=", 1)[1])
            if after:
                return _clean_number(after[0])
        return _clean_number(matches[-1].group(1).strip("()"))
    nums = _LAST_NUM.findall(text)
    return _clean_number(nums[-1]) if nums else None


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


@lru_cache(maxsize=65536)
def answers_match(pred: str | None, gold: str | None) -> bool:
    """True when `pred` and `gold` are the same answer (numerically or symbolically)."""
    if pred is None or gold is None:
        return False
    p, g = _clean_number(str(pred)), _clean_number(str(gold))
    if p == g:
        return True
    try:
        return abs(float(p) - float(g)) <= 1e-6 * max(1.0, abs(float(g)))
    except ValueError:
        pass
    from math_verify import parse, verify

    try:
        gp = parse(f"${g}$", parsing_timeout=None)
        pp = parse(f"${p}$", parsing_timeout=None)
        return bool(gp and pp and verify(gp, pp, timeout_seconds=None))
    except Exception:  # math-verify raises on exotic input; that is simply "no match"
        return False


def is_correct(output: str, gold: str | None, kind: str = "math") -> bool:
    """Extract the final answer from `output` and compare it with `gold`."""
    if kind == "choice":
        pred = extract_choice(output)
        return pred is not None and gold is not None and pred == str(gold).strip().upper()
    return answers_match(extract_answer(output), gold)
