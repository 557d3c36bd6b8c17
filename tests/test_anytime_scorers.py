"""Scorers: math (with restated computations), 4-way multiple choice, and the NaturalPlan
trip-planning constraint satisfaction rate on hand-made cases."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfteach.data.records import Problem
from selfteach.errors import SelfteachError
from selfteach.evaluate.scorers import (
    Stay,
    check_scorable,
    format_question,
    parse_plan,
    parse_trip_constraints,
    score_choice,
    score_math,
    score_trip,
    scorer_kind,
    trip_csr,
)

TRIP = (
    "You plan to visit 3 European cities for 14 days in total. "
    "You only take direct flights to commute between "
    "cities. You would like to visit Florence for 6 days. "
    "You want to spend 5 days in London. You would like to "
    "visit Oslo for 5 days. "
    "You are going to attend a wedding in Oslo between day 10 and day 14.\n\n"
    "Here are the cities that have direct flights:\nLondon and Oslo, from Florence to London.\n\n"
    "Find a trip plan of visiting the cities for 14 days "
    "by taking direct flights to commute between them."
)
GOLD = (
    "Here is the trip plan for visiting the 3 European cities for 14 days:\n\n"
    "**Day 1-6:** Arriving in Florence and visit Florence for 6 days.\n"
    "**Day 6:** Fly from Florence to London.\n"
    "**Day 6-10:** Visit London for 5 days.\n**Day 10:** Fly from London to Oslo.\n"
    "**Day 10-14:** Visit Oslo for 5 days."
)
TRIP_PROBLEM = Problem(id="t", question=TRIP, answer=GOLD)


def plan(*stays: tuple[str, int, int]) -> str:
    lines = []
    for i, (c, a, b) in enumerate(stays):
        if i:
            lines.append(f"**Day {a}:** Fly from {stays[i - 1][0]} to {c}.")
        lines.append(f"**Day {a}-{b}:** Visit {c} for {b - a + 1} days.")
    return "\n".join(lines)


def test_trip_constraints_parsed_from_prompt():
    c = parse_trip_constraints(TRIP)
    assert c.total_days == 14
    assert c.stays == {"Florence": 6, "London": 5, "Oslo": 5}
    assert c.events == [("Oslo", 10, 14)]
    assert c.flights == {("London", "Oslo"), ("Oslo", "London"), ("Florence", "London")}
    assert c.n_constraints == 3 + 1 + 1 + 1  # stays, event, flights, total


@pytest.mark.parametrize("text,ok", [
    (GOLD, 6),
    # Florence one day short: its stay and the total fail; London and the event still hold
    (plan(("Florence", 1, 5), ("London", 5, 9), ("Oslo", 9, 13)), 4),
    # Oslo first: the wedding (days 10-14) is missed and London->Florence is not a flight
    # (only "from Florence to London"); stays and total hold
    (plan(("Oslo", 1, 5), ("London", 5, 9), ("Florence", 9, 14)), 4),
    # Florence -> Oslo is not a direct flight; the Oslo stay still touches day 10 of the wedding
    (plan(("Florence", 1, 6), ("Oslo", 6, 10), ("London", 10, 14)), 5),
    # a gap between stays (end day 10, next start day 11) breaks the flights, and it ends on day 15
    (plan(("Florence", 1, 6), ("London", 6, 10), ("Oslo", 11, 15)), 4),
    ("I cannot make a plan.", 0),
])
def test_trip_csr_hand_made(text, ok):
    assert trip_csr(text, parse_trip_constraints(TRIP)) == (ok, 6)
    assert score_trip(text, TRIP_PROBLEM) == pytest.approx(ok / 6)


def test_trip_stays_fall_back_to_gold_plan():
    prompt = (
        "Plan a 14-day trip, cities for 14 days. Here are the cities that have direct flights:\n"
        "London and Oslo, Florence and London."
    )
    c = parse_trip_constraints(prompt, GOLD)
    assert c.stays == {"Florence": 6, "London": 5, "Oslo": 5}
    assert trip_csr(GOLD, c) == (c.n_constraints, c.n_constraints)


CITIES = ["Florence", "London", "Oslo", "Santorini", "Reykjavik", "Split", "Vienna"]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(CITIES), st.integers(1, 6)), min_size=1, max_size=5))
def test_plan_round_trip(stays):
    day, spec = 1, []
    for city, n in stays:
        spec.append((city, day, day + n - 1))
        day += n - 1
    parsed = parse_plan(plan(*spec), CITIES)
    assert parsed == [Stay(c, a, b) for c, a, b in spec]


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300))
def test_csr_in_unit_interval(text):
    assert 0.0 <= score_trip(text, TRIP_PROBLEM) <= 1.0


def test_math_scorer_reads_restated_computation():
    p = Problem(id="m", question="q", answer="8")
    assert score_math("\nTherefore, the final answer is 1 + 7 = 8.", p) == 1.0
    assert score_math("\nTherefore, the final answer is 1 + 7 = 9.", p) == 0.0
    assert score_math("so we get \\boxed{8}", p) == 1.0
    assert score_math("The answer is 8. Then x = 5", p) == 1.0
    assert score_math("answer is 3.5.", Problem(id="d", question="q", answer="3.5")) == 1.0


def test_choice_scorer_and_format():
    p = Problem(id="c", question="Which?", choices=["w", "x", "y", "z"], answer="C")
    text = format_question(p)
    assert "A. w\nB. x\nC. y\nD. z" in text
    assert score_choice("The answer is (C)", p) == 1.0
    assert score_choice("\nTherefore, the final answer is B.", p) == 0.0
    assert scorer_kind("auto", p) == "choice"
    assert scorer_kind("auto", TRIP_PROBLEM) == "trip"
    assert scorer_kind("auto", Problem(id="m", question="1+1", answer="2")) == "math"


def test_check_scorable_errors():
    with pytest.raises(SelfteachError, match="'choice' needs field 'choices'"):
        check_scorable([Problem(id="a", question="q", answer="B")], "choice", "f.jsonl")
    with pytest.raises(SelfteachError, match="no city stays"):
        check_scorable([Problem(id="a", question="q", answer="x")], "trip", "f.jsonl")
    with pytest.raises(SelfteachError, match="no gold answer"):
        check_scorable([Problem(id="a", question="q")], "math", "f.jsonl")
    with pytest.raises(SelfteachError, match="--scorer"):
        check_scorable([Problem(id="a", question="q", answer="1")], "bleu", "f.jsonl")
    assert check_scorable([TRIP_PROBLEM], "auto", "f") == ["trip"]
