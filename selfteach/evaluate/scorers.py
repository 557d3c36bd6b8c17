"""Scorers for anytime evaluation: a model output and a problem in, a quality in [0, 1] out.

- `math`: the final answer (`selfteach.data.answers.extract_answer`) equals the gold answer
  numerically or symbolically (math-verify). AIME/MAWPS/SVAMP/GSM8K.
- `choice`: the chosen letter equals the gold letter (GPQA / MMLU 4-way format).
- `trip`: constraint satisfaction rate (CSR) of a NaturalPlan trip plan (Zheng et al. 2024,
  arXiv 2406.04520), the quality used for planning tasks in arXiv 2601.11038.

Trip-planning constraints are read from the NaturalPlan prompt text itself ("You plan to
visit 3 European cities for 14 days in total", "You would like to visit Florence for 6
days", "attend a wedding in Oslo between day 10 and day 14", "Here are the cities that
have direct flights: London and Oslo, from Florence to London."), with the stays of the
gold plan as a fallback. The plan is parsed from "**Day 1-6:** ... Florence ..." lines,
where a flight day counts for both cities, as in NaturalPlan. The constraints are:

1. one per required city: the days spent there (summed over visits) equal the request;
2. one per event window: a visit to that city overlaps days [a, b];
3. flights: every move between consecutive stays is a listed direct flight (direction
   respected for "from X to Y") and lands on the day the previous stay ends;
4. total: the plan starts on day 1 and ends on the requested last day.

CSR = satisfied / number of constraints; an unparseable plan satisfies none.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from selfteach.data.answers import extract_answer, extract_choice, is_correct
from selfteach.data.loaders import LETTERS
from selfteach.data.records import Problem
from selfteach.errors import SelfteachError

Scorer = Callable[[str, Problem], float]
SCORERS = ("auto", "math", "choice", "trip")




def score_math(output: str, problem: Problem) -> float:
    return float(is_correct(output, problem.answer, kind="math"))


def score_choice(output: str, problem: Problem) -> float:
    return float(is_correct(output, problem.answer, kind="choice"))


def predicted(output: str, kind: str) -> str | None:
    """The answer a scorer reads from `output` (for the per-item log)."""
    if kind == "choice":
        return extract_choice(output)
    if kind == "trip":
        return " -> ".join(f"{s.city}:{s.start}-{s.end}" for s in parse_plan(output)) or None
    return extract_answer(output)


def format_question(problem: Problem) -> str:
    """The question text the model sees; multiple choice gets lettered options."""
    if not problem.choices:
        return problem.question
    opts = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(problem.choices))
    return f"{problem.question}\n\n{opts}\n\nAnswer with the letter of the correct option."


# ---- NaturalPlan trip planning ---------------------------------------------------------

@dataclass
class TripConstraints:
    """What a NaturalPlan trip prompt asks for."""

    total_days: int | None = None
    stays: dict[str, int] = field(default_factory=dict)  # city -> required days
    events: list[tuple[str, int, int]] = field(default_factory=list)  # (city, first day, last day)
    flights: set[tuple[str, str]] = field(default_factory=set)  # allowed (from, to)

    @property
    def cities(self) -> list[str]:
        names = (
            set(self.stays) | {c for c, _, _ in self.events} | {c for f in self.flights for c in f}
        )
        return sorted(names, key=len, reverse=True)  # longest first: "New York" before "York"

    @property
    def n_constraints(self) -> int:
        return len(self.stays) + len(self.events) + 1 + (self.total_days is not None)


@dataclass
class Stay:
    city: str
    start: int
    end: int

    @property
    def days(self) -> int:
        return self.end - self.start + 1


_CITY = r"([A-Z][\w'-]*(?: [A-Z][\w'-]*)*)"
_STAY_PATTERNS = [
    re.compile(r"visit " + _CITY + r" for (\d+) days"),
    re.compile(r"spend (\d+) days in " + _CITY),
    re.compile(r"stay in " + _CITY + r" for (\d+) days"),
]
_TOTAL = re.compile(
    r"for (\d+) days in total|visiting the cities for (\d+) days|cities for (\d+) days"
)
_WINDOW = re.compile(r"(?:between|from) day (\d+) (?:and|to) day (\d+)", re.IGNORECASE)
_DAY_RANGE = re.compile(r"Day\s*(\d+)\s*(?:-|–|to)\s*(\d+)", re.IGNORECASE)
_SINGLE_DAY = re.compile(r"Day\s*(\d+)\b(?!\s*(?:-|–|to)\s*\d)", re.IGNORECASE)


def parse_trip_constraints(prompt: str, gold_plan: str | None = None) -> TripConstraints:
    """Constraints of a NaturalPlan trip prompt (see the module docstring)."""
    c = TripConstraints()
    head, _, flights = prompt.partition("direct flights:")
    m = _TOTAL.search(head)
    if m:
        c.total_days = int(next(g for g in m.groups() if g))
    for pat in _STAY_PATTERNS:
        for mm in pat.finditer(head):
            a, b = mm.groups()
            city, days = (a, int(b)) if not a.isdigit() else (b, int(a))
            c.stays[city.strip()] = days
    for line in re.split(r"\n\n|(?<=\.)\s", flights):
        if re.search(r"Find a trip plan|trip plan", line):
            break
        for part in re.split(r",|\n", line):
            part = part.strip().rstrip(".")
            m2 = re.fullmatch(r"from " + _CITY + r" to " + _CITY, part)
            if m2:
                c.flights.add((m2.group(1), m2.group(2)))
                continue
            m2 = re.fullmatch(_CITY + r" and " + _CITY, part)
            if m2:
                c.flights |= {(m2.group(1), m2.group(2)), (m2.group(2), m2.group(1))}
    if not c.stays and gold_plan:
        for s in parse_plan(gold_plan):
            c.stays[s.city] = c.stays.get(s.city, 0) + s.days
    known = c.cities
    for sentence in re.split(r"(?<=\.)\s+", head):
        w = _WINDOW.search(sentence)
        if not w:
            continue
        city = next((k for k in known if k in sentence), None)
        if city is not None:
            c.events.append((city, int(w.group(1)), int(w.group(2))))
    return c


def parse_plan(text: str, cities: list[str] | None = None) -> list[Stay]:
    """Stays of a plan written as NaturalPlan does ("**Day 1-6:** ... visit Florence ...").
    Lines with a day range and a city are stays; "Day 6: Fly from A to B" lines are flights."""
    stays = []
    for line in text.splitlines():
        m = _DAY_RANGE.search(line)
        if not m or re.search(r"\bfly\b|\bflight\b", line, re.IGNORECASE):
            continue
        rest = line[m.end():]
        city = None
        if cities:
            hits = [(rest.find(k), k) for k in cities if k in rest]
            city = min(hits)[1] if hits else None
        else:
            mm = re.search(r"(?:[Vv]isit|in|at) " + _CITY, rest)
            city = mm.group(1) if mm else None
        if city:
            stays.append(Stay(city, int(m.group(1)), int(m.group(2))))
    return stays


def trip_csr(output: str, constraints: TripConstraints) -> tuple[int, int]:
    """(satisfied, total) constraints of the plan in `output`."""
    total = constraints.n_constraints
    plan = parse_plan(output, constraints.cities or None)
    if not plan:
        return 0, total
    ok = 0
    spent: dict[str, int] = {}
    for s in plan:
        spent[s.city] = spent.get(s.city, 0) + s.days
    ok += sum(spent.get(city, 0) == days for city, days in constraints.stays.items())
    ok += sum(any(s.city == city and s.start <= b and s.end >= a for s in plan)
              for city, a, b in constraints.events)
    moves = list(zip(plan, plan[1:], strict=False))
    ok += all((x.city, y.city) in constraints.flights and y.start == x.end for x, y in moves) \
        and len(plan) >= len(constraints.stays)
    if constraints.total_days is not None:
        ok += plan[0].start == 1 and plan[-1].end == constraints.total_days
    return ok, total


def score_trip(output: str, problem: Problem) -> float:
    c = parse_trip_constraints(problem.question, problem.answer)
    ok, total = trip_csr(output, c)
    return ok / total


# ---- choosing a scorer -----------------------------------------------------------------

def scorer_kind(kind: str, problem: Problem) -> str:
    """Resolve "auto": multiple choice when the problem has choices, trip planning when the
    gold answer is a NaturalPlan day-by-day plan, math otherwise."""
    if kind != "auto":
        return kind
    if problem.choices:
        return "choice"
    if (
        problem.answer
        and _DAY_RANGE.search(problem.answer)
        and "direct flights" in problem.question
    ):
        return "trip"
    return "math"


def get_scorer(kind: str) -> Scorer:
    if kind not in SCORERS or kind == "auto":
        raise SelfteachError(f"--scorer {kind!r}: choose one of {', '.join(SCORERS)}")
    return {"math": score_math, "choice": score_choice, "trip": score_trip}[kind]


def check_scorable(problems: list[Problem], kind: str, where: str) -> list[str]:
    """The scorer kind of each problem; raises before any generation when one cannot be scored."""
    if kind not in SCORERS:
        raise SelfteachError(f"--scorer {kind!r}: choose one of {', '.join(SCORERS)}")
    kinds = []
    for p in problems:
        k = scorer_kind(kind, p)
        if p.answer is None or not str(p.answer).strip():
            raise SelfteachError(f"{where}: item {p.id!r} has no gold answer")
        if k == "choice":
            if not p.choices:
                raise SelfteachError(
                    f"{where}: item {p.id!r}: scorer 'choice' needs field 'choices'"
                )
            if str(p.answer).strip().upper() not in LETTERS[: len(p.choices)]:
                raise SelfteachError(f"{where}: item {p.id!r}: answer {p.answer!r} is not a letter "
                                     f"A-{LETTERS[len(p.choices) - 1]}")
        if k == "trip":
            c = parse_trip_constraints(p.question, p.answer)
            if not c.stays:
                raise SelfteachError(
                    f"{where}: item {p.id!r}: no city stays found in the question or gold plan "
                    "(expected NaturalPlan trip format)"
                )
        kinds.append(k)
    return kinds
