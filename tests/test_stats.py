"""selfteach.stats, the one place for AUROC and bootstrap intervals: known answers and the
pairwise definition."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from selfteach.data.records import Claim
from selfteach.elicit.search import auroc as claims_auroc
from selfteach.stats import auroc, bootstrap_ci, percentile_interval


def test_auroc_known_answers():
    assert auroc([0.1, 0.9, 0.5], [0, 1, 0]) == 1.0
    assert auroc([0.9, 0.1], [0, 1]) == 0.0
    assert auroc([1, 1], [1, 0]) == 0.5  # a tie counts one half
    assert auroc([0.2, 0.4, 0.6, 0.8], [0, 1, 0, 1]) == 0.75
    assert math.isnan(auroc([0.3, 0.4], [1, 1])) and math.isnan(auroc([], []))


@given(st.lists(st.tuples(st.integers(-3, 3), st.booleans()), max_size=12))
def test_auroc_is_the_share_of_ordered_pairs(rows):
    pos = [s for s, y in rows if y]
    neg = [s for s, y in rows if not y]
    got = auroc([s for s, _ in rows], [y for _, y in rows])
    if not pos or not neg:
        assert math.isnan(got)
    else:
        pairs = [(p > q) + 0.5 * (p == q) for p in pos for q in neg]
        assert got == sum(pairs) / len(pairs)


def test_claims_auroc_reads_gold_and_margins():
    claims = [
        Claim(id=str(i), claim=f"c{i}", gold=g) for i, g in enumerate([True, False, None, True])
    ]
    assert claims_auroc({0: 2.0, 1: 1.0, 2: 9.0, 3: 0.5}, claims) == 0.5
    assert claims_auroc({0: 1.0}, claims[:1]) is None  # one class: no AUROC


def test_percentile_interval_and_bootstrap():
    assert percentile_interval(list(range(101)), 0.9) == pytest.approx((5.0, 95.0))
    lo, hi = bootstrap_ci([0, 1] * 50, seed=1)
    assert lo < 0.5 < hi and bootstrap_ci([0.3]) == (0.3, 0.3)
