"""Built-in tasks generated offline from a seed, for demos and tests.

- `arithmetic`: one-step word problems ("Tom has 7 apples and buys 5 more...").
- `capitals`: True/False claims "The capital of X is Y." Each country gets its true
  capital and `wrong_per_country` wrong candidates drawn from other countries' capitals:
  mutually exclusive candidates that share `group` = country.
- `sums`: True/False claims "a + b = c" (half correct), grouped by the question.
"""

from __future__ import annotations

import random

from selfteach.data.records import Claim, Problem
from selfteach.errors import SelfteachError

CAPITALS: dict[str, str] = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Portugal": "Lisbon",
    "Japan": "Tokyo", "China": "Beijing", "Russia": "Moscow", "Egypt": "Cairo", "Greece": "Athens",
    "Canada": "Ottawa", "Australia": "Canberra", "Brazil": "Brasilia", "Argentina": "Buenos Aires",
    "Mexico": "Mexico City", "India": "New Delhi", "Kenya": "Nairobi", "Norway": "Oslo",
    "Sweden": "Stockholm", "Finland": "Helsinki", "Denmark": "Copenhagen", "Poland": "Warsaw",
    "Austria": "Vienna", "Hungary": "Budapest", "Ireland": "Dublin", "Netherlands": "Amsterdam",
    "Belgium": "Brussels", "Switzerland": "Bern", "Turkey": "Ankara", "Iran": "Tehran",
    "Iraq": "Baghdad", "Thailand": "Bangkok", "Vietnam": "Hanoi", "South Korea": "Seoul",
    "Indonesia": "Jakarta", "Philippines": "Manila", "Peru": "Lima", "Chile": "Santiago",
    "Colombia": "Bogota", "Cuba": "Havana", "Nigeria": "Abuja", "Ethiopia": "Addis Ababa",
    "Morocco": "Rabat", "Saudi Arabia": "Riyadh", "Pakistan": "Islamabad", "Ukraine": "Kyiv",
    "Czech Republic": "Prague", "Romania": "Bucharest", "Bulgaria": "Sofia", "Serbia": "Belgrade",
    "Croatia": "Zagreb", "New Zealand": "Wellington", "Venezuela": "Caracas", "Israel": "Jerusalem",
    "Lebanon": "Beirut", "Syria": "Damascus", "Afghanistan": "Kabul", "Nepal": "Kathmandu",
    "Bangladesh": "Dhaka", "Malaysia": "Kuala Lumpur", "Singapore": "Singapore", "Iceland": "Reykjavik",
    "Scotland": "Edinburgh", "England": "London",
}

_NAMES = ["Tom", "Ana", "Li", "Sara", "Omar", "Maya", "Ivan", "Zoe", "Ben", "Ravi"]
_THINGS = ["apples", "marbles", "books", "stickers", "pencils", "cookies", "cards", "shells"]


def builtin_problems(name: str, n: int = 200, seed: int = 0) -> list[Problem]:
    if name != "arithmetic":
        raise SelfteachError(f"builtin:{name}: unknown built-in problem set (choose: arithmetic)")
    rng = random.Random(seed)
    out = []
    for i in range(n):
        who, what = rng.choice(_NAMES), rng.choice(_THINGS)
        a, b = rng.randint(2, 40), rng.randint(2, 20)
        op = rng.choice(["add", "sub", "mul"])
        if op == "add":
            q, ans = f"{who} has {a} {what} and gets {b} more. How many {what} does {who} have now?", a + b
        elif op == "sub":
            a = a + b
            q, ans = f"{who} has {a} {what} and gives away {b}. How many {what} are left?", a - b
        else:
            a = a % 9 + 2
            q, ans = f"{who} has {a} boxes with {b} {what} in each box. How many {what} are there?", a * b
        out.append(Problem(id=f"arith-{i}", question=q, answer=str(ans), meta={"op": op}))
    return out


def builtin_claims(name: str, seed: int = 0, wrong_per_country: int = 1) -> list[Claim]:
    rng = random.Random(seed)
    if name == "capitals":
        countries = sorted(CAPITALS)
        claims = []
        for c in countries:
            wrong = rng.sample([CAPITALS[o] for o in countries if o != c and CAPITALS[o] != CAPITALS[c]],
                               wrong_per_country)
            cands = [(CAPITALS[c], True)] + [(w, False) for w in wrong]
            rng.shuffle(cands)
            for j, (city, gold) in enumerate(cands):
                claims.append(Claim(id=f"{c}-{j}", question=f"What is the capital of {c}?",
                                    claim=f"The capital of {c} is {city}.", group=c, key=city, gold=gold))
        rng.shuffle(claims)
        return claims
    if name == "sums":
        claims = []
        for i in range(128):
            a, b = rng.randint(2, 60), rng.randint(2, 60)
            right = rng.random() < 0.5
            c = a + b if right else a + b + rng.choice([-10, -2, -1, 1, 2, 10])
            claims.append(Claim(id=f"sum-{i}", question=f"What is {a} + {b}?", claim=f"{a} + {b} = {c}",
                                group=f"sum-{i}", key=str(c), gold=right))
        return claims
    raise SelfteachError(f"builtin:{name}: unknown built-in claim set (choose: capitals, sums)")
