"""math-verify in a separate process, so every check can be bounded in time.

`selfteach.data.answers` starts this file as a child process and sends it one JSON request
per line on stdin; it answers one JSON line on stdout. The child runs math-verify on its
own main thread under a wall-clock alarm covering the whole request (math-verify's own
`signal.alarm` timeouts only work on the main thread of the calling process, and trainers
and servers call reward functions from worker threads). An answer whose evaluation is stuck
in C code (a huge integer power) ignores the alarm; the parent then kills this process.

Requests: {"op": "key", "a": latex, "budget": s} -> {"num": "p/q" | null, "timeout": bool}
          {"op": "match", "a": gold, "b": pred, "budget": s} -> {"ok": bool, "timeout": bool}
Standalone on purpose (no selfteach imports): starting it costs only the math-verify import.
"""

from __future__ import annotations

import json
import logging
import resource
import signal
import sys

MEMORY_LIMIT = 4 << 30  # an answer like 9^(9^9) must not take the machine's memory before the alarm


class Budget(BaseException):
    """Raised by the alarm; a BaseException so math-verify's `except Exception` lets it through."""


def _alarm(signum, frame):  # noqa: ANN001
    raise Budget()


def _rational(value) -> str | None:  # noqa: ANN001
    """"p/q" when the parsed value is a rational number, else None."""
    import sympy

    if isinstance(value, sympy.Float):
        value = sympy.Rational(str(value))  # the decimal as written, not its binary float
    elif not isinstance(value, sympy.Rational):
        if not (isinstance(value, sympy.Expr) and value.is_number and value.is_rational):
            return None
        value = sympy.Rational(value.doit())
    return f"{value.p}/{value.q}"


def handle(req: dict) -> dict:
    from math_verify import parse, verify

    if req["op"] == "key":
        parsed = parse(req["a"], parsing_timeout=None)
        return {"num": _rational(parsed[0]) if parsed else None}
    gold = parse(req["a"], parsing_timeout=None)
    pred = parse(req["b"], parsing_timeout=None)
    return {"ok": bool(gold and pred and verify(gold, pred, timeout_seconds=None))}


def main() -> None:
    logging.disable(logging.CRITICAL)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    except (ValueError, OSError):  # a lower hard limit is already in place
        pass
    import math_verify  # noqa: F401  (import before saying ready: requests are then timed fairly)

    signal.signal(signal.SIGALRM, _alarm)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        signal.setitimer(signal.ITIMER_REAL, float(req["budget"]))
        try:
            out = handle(req) | {"timeout": False}
        except Budget:
            out = {"ok": False, "num": None, "timeout": True}
        except (Exception, RecursionError):  # math-verify/sympy raise on exotic input: "no match"
            out = {"ok": False, "num": None, "timeout": False}
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
