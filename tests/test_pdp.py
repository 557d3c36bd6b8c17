"""Preference-data prompting: self-ranking, the in-context block, settings checks, and an
end-to-end pdp run on tiny-random."""

from __future__ import annotations

import json

import pytest

from selfteach.backends.base import Usage
from selfteach.errors import SelfteachError
from selfteach.evaluate.anytime import AnytimeConfig, evaluate_anytime
from selfteach.evaluate.pdp import check_pdp, pdp_block, pdp_budget, rank_attempts

ATTEMPTS = ["attempt zero", "attempt one", "attempt two", "attempt three"]


def test_pdp_block_pairs_best_with_worst():
    text, shown = pdp_block(ATTEMPTS, order=[2, 0, 3, 1], method="pdp", pairs=2)
    assert shown == [2, 1, 0, 3]
    ex1 = text.index("Example 1")
    assert text.index("Better attempt:\nattempt two") > ex1
    assert text.index("Worse attempt:\nattempt one") > text.index("attempt two")
    assert (
        text.index("Better attempt:\nattempt zero")
        > text.index("Example 2")
        > text.index("attempt one")
    )


def test_pdp_plus_shows_only_winners():
    text, shown = pdp_block(ATTEMPTS, order=[3, 1, 0, 2], method="pdp+", pairs=2)
    assert shown == [3, 1]
    assert "attempt three" in text and "attempt one" in text
    assert "attempt zero" not in text and "attempt two" not in text and "Worse" not in text


def test_vote_ranks_by_agreement():
    scores = rank_attempts(
        None, "q", ["so 12", "it is 12", "answer is 7", "no idea"], "vote", "math"
    )
    assert scores == [2.0, 2.0, 1.0, 0.0]


class JudgeBackend:
    """P(Yes) / P(A) high when the judged attempt contains GOOD; a strong bias to "A"."""

    name = "judge"
    usage = Usage()

    def chat_prompt(self, user, system=None):
        return user

    def label_logprobs(self, prompts, labels):
        out = []
        for p in prompts:
            if "Yes" in labels:
                good = "GOOD" in p.split("Proposed solution:")[1]
                out.append({"Yes": -0.1 if good else -2.0, "No": -2.0 if good else -0.1})
            else:
                a = p.split("Solution A:")[1].split("Solution B:")[0]
                b = p.split("Solution B:")[1]
                bias = 1.0
                out.append({"A": bias + ("GOOD" in a) * 2.0, "B": ("GOOD" in b) * 2.0})
        return out


def test_pointwise_and_pairwise_self_judgment():
    attempts = ["bad", "GOOD work", "meh"]
    pw = rank_attempts(JudgeBackend(), "q", attempts, "pointwise", "math")
    assert max(range(3), key=lambda i: pw[i]) == 1
    pair = rank_attempts(JudgeBackend(), "q", attempts, "pairwise", "math")
    assert max(range(3), key=lambda i: pair[i]) == 1
    assert pair[0] == pytest.approx(pair[2])  # the A bias cancels over both orders
    assert sum(pair) == pytest.approx(6.0)  # 6 ordered comparisons, one unit each


def test_check_pdp_settings():
    with pytest.raises(SelfteachError, match="needs 6 attempts"):
        check_pdp(AnytimeConfig(method="pdp", pdp_k=4, pdp_pairs=3), ["math"])
    check_pdp(AnytimeConfig(method="pdp+", pdp_k=4, pdp_pairs=3), ["math"])
    with pytest.raises(SelfteachError, match="vote"):
        check_pdp(AnytimeConfig(method="pdp", pdp_judge="vote"), ["trip"])
    assert pdp_budget(AnytimeConfig(budgets=[16, 32, 64, 128])) == 32
    assert pdp_budget(AnytimeConfig(budgets=[16, 32, 64], pdp_budget=50)) == 50


def test_pdp_end_to_end_tiny(tiny_backend, tmp_path):
    cfg = AnytimeConfig(
        model="tiny-random", limit=2, budgets=[4, 8], method="pdp", pdp_k=3, answer_tokens=3
    )
    res = evaluate_anytime(cfg, tmp_path / "pdp", backend=tiny_backend, progress=False)
    rows = [json.loads(x) for x in (tmp_path / "pdp" / "outputs.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and res["curve"]["method"] == "pdp"
    info = rows[0]["pdp"]
    assert len(info["attempts"]) == 3 and sorted(info["order"]) == [0, 1, 2]
    assert info["shown"] == [info["order"][0], info["order"][-1]]
    assert info["attempt_tokens"] <= 3 * 4  # attempts at the median budget (4)
    plain = AnytimeConfig(model="tiny-random", limit=2, budgets=[4, 8], answer_tokens=3)
    evaluate_anytime(plain, tmp_path / "plain", backend=tiny_backend, progress=False)
    plain_row = json.loads((tmp_path / "plain" / "outputs.jsonl").read_text().splitlines()[0])
    assert rows[0]["prompt_tokens"] > plain_row["prompt_tokens"]  # the examples are in context
