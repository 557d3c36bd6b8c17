"""Bad-input reliability table: runs every case of tests/test_bad_input.py (the same
check: exit 2, one stderr line naming the culprit, no traceback, nothing written) and
prints cases tried / clean / failing per area as a markdown table, plus the failures.

    PYTHONPATH=. python benchmarks/reliability_table.py [--failures] [--filter TEXT] [--loose]

With PYTHONPATH pointing at another checkout (and --loose) it measures that checkout on
the same table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    import test_bad_input as t
    import transformers  # noqa: F401 - imported once, outside the timing of the cases

    ap = argparse.ArgumentParser()
    ap.add_argument("--failures", action="store_true", help="list every failing case")
    ap.add_argument("--filter", default="", help="only cases whose id contains this")
    ap.add_argument(
        "--loose",
        action="store_true",
        help="do not require the expected text in the message "
        "(to measure another checkout, whose messages are worded differently)",
    )
    a = ap.parse_args()
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    failures = []
    t0 = time.time()
    for c in t.CASES:
        if a.filter not in c.id:
            continue
        with tempfile.TemporaryDirectory() as d:
            problem = t.check(c, Path(d), strict=not a.loose)
        counts[c.area][0] += 1
        counts[c.area][1] += problem is None
        if problem:
            failures.append((c.id, problem))
    print("| area | cases tried | clean | failing |\n|---|---:|---:|---:|")
    for area, (n, ok) in sorted(counts.items()):
        print(f"| {area} | {n} | {ok} | {n - ok} |")
    n, ok = sum(v[0] for v in counts.values()), sum(v[1] for v in counts.values())
    print(f"| **all** | **{n}** | **{ok}** | **{n - ok}** |")
    print(f"\n{n} cases in {time.time() - t0:.1f} s")
    if a.failures:
        for cid, why in failures:
            print(f"FAIL {cid}: {why}")


if __name__ == "__main__":
    main()
