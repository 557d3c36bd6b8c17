"""Built-in tasks generated offline from a seed, for demos and tests.

- `arithmetic`: one-step word problems ("Tom has 7 apples and buys 5 more...").
- Fact families (`FACT_FAMILIES`): True/False claims about well-known facts. Each subject
  (a country, a state, an author, ...) gets its one true answer and `wrong` wrong
  candidates drawn from *other* subjects' answers: mutually exclusive candidates that
  share `group` = subject, so ICM's `exclusive` rule (at most one True per group) applies,
  and with one wrong candidate also `comparison` (exactly one of two).
  `capitals` (country -> capital), `currencies` (country -> official currency),
  `state-capitals` (US state -> capital), `authors` (author -> novel), `inventors`
  (inventor -> invention), `elements` (element -> chemical symbol), `planets` (planet ->
  order from the Sun; 8 subjects, 3 wrong candidates each).
- `sums`: True/False claims "a + b = c" (half correct), grouped by the question.

The facts are chosen to be unambiguous: every subject has exactly one true answer and no
subject's answer is also true of another subject in its family (no shared currency names,
no contested inventions), so every wrong candidate is false.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from selfteach.data.records import Claim, Problem
from selfteach.errors import SelfteachError

CAPITALS: dict[str, str] = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid",
    "Portugal": "Lisbon", "Japan": "Tokyo", "China": "Beijing", "Russia": "Moscow",
    "Egypt": "Cairo", "Greece": "Athens", "Canada": "Ottawa", "Australia": "Canberra",
    "Brazil": "Brasilia", "Argentina": "Buenos Aires", "Mexico": "Mexico City",
    "India": "New Delhi", "Kenya": "Nairobi", "Norway": "Oslo", "Sweden": "Stockholm",
    "Finland": "Helsinki", "Denmark": "Copenhagen", "Poland": "Warsaw", "Austria": "Vienna",
    "Hungary": "Budapest", "Ireland": "Dublin", "Netherlands": "Amsterdam", "Belgium": "Brussels",
    "Switzerland": "Bern", "Turkey": "Ankara", "Iran": "Tehran", "Iraq": "Baghdad",
    "Thailand": "Bangkok", "Vietnam": "Hanoi", "South Korea": "Seoul", "Indonesia": "Jakarta",
    "Philippines": "Manila", "Peru": "Lima", "Chile": "Santiago", "Colombia": "Bogota",
    "Cuba": "Havana", "Nigeria": "Abuja", "Ethiopia": "Addis Ababa", "Morocco": "Rabat",
    "Saudi Arabia": "Riyadh", "Pakistan": "Islamabad", "Ukraine": "Kyiv",
    "Czech Republic": "Prague", "Romania": "Bucharest", "Bulgaria": "Sofia", "Serbia": "Belgrade",
    "Croatia": "Zagreb", "New Zealand": "Wellington", "Venezuela": "Caracas", "Israel": "Jerusalem",
    "Lebanon": "Beirut", "Syria": "Damascus", "Afghanistan": "Kabul", "Nepal": "Kathmandu",
    "Bangladesh": "Dhaka", "Malaysia": "Kuala Lumpur", "Singapore": "Singapore",
    "Iceland": "Reykjavik", "Scotland": "Edinburgh", "England": "London",
}

# Official currencies whose names are unique within the family: countries sharing a
# currency name with another listed one (rupee, peso, dollar, franc, krone, dinar, euro
# members...) or using a second legal tender (Panama, Lesotho, Bhutan...) are left out, so
# "The official currency of Kenya is the rand." is false for every drawn candidate.
CURRENCIES: dict[str, str] = {
    "Japan": "yen", "China": "yuan", "South Korea": "won", "India": "rupee",
    "the United Kingdom": "pound sterling", "the United States": "dollar", "Switzerland": "franc",
    "Germany": "euro", "Russia": "ruble", "Mexico": "peso", "Brazil": "real",
    "South Africa": "rand", "Israel": "shekel", "Thailand": "baht", "Vietnam": "dong",
    "Indonesia": "rupiah", "Malaysia": "ringgit", "Turkey": "lira", "Poland": "zloty",
    "Hungary": "forint", "the Czech Republic": "koruna", "Sweden": "krona", "Ukraine": "hryvnia",
    "Nigeria": "naira", "Ghana": "cedi", "Kenya": "shilling", "Bangladesh": "taka",
    "Saudi Arabia": "riyal", "the United Arab Emirates": "dirham", "Peru": "sol", "Romania": "leu",
    "Georgia": "lari", "Armenia": "dram", "Azerbaijan": "manat", "Kazakhstan": "tenge",
    "Mongolia": "tugrik", "Myanmar": "kyat", "Angola": "kwanza", "Zambia": "kwacha",
    "Botswana": "pula", "Ethiopia": "birr", "Albania": "lek", "Serbia": "dinar",
    "Afghanistan": "afghani", "Papua New Guinea": "kina", "the Gambia": "dalasi",
}

STATE_CAPITALS: dict[str, str] = {
    "Alabama": "Montgomery", "Alaska": "Juneau", "Arizona": "Phoenix", "Arkansas": "Little Rock",
    "California": "Sacramento", "Colorado": "Denver", "Connecticut": "Hartford",
    "Delaware": "Dover", "Florida": "Tallahassee", "Georgia": "Atlanta", "Hawaii": "Honolulu",
    "Idaho": "Boise", "Illinois": "Springfield", "Indiana": "Indianapolis", "Iowa": "Des Moines",
    "Kansas": "Topeka", "Kentucky": "Frankfort", "Louisiana": "Baton Rouge", "Maine": "Augusta",
    "Maryland": "Annapolis", "Massachusetts": "Boston", "Michigan": "Lansing",
    "Minnesota": "Saint Paul", "Mississippi": "Jackson", "Missouri": "Jefferson City",
    "Montana": "Helena", "Nebraska": "Lincoln", "Nevada": "Carson City", "New Hampshire": "Concord",
    "New Jersey": "Trenton", "New Mexico": "Santa Fe", "New York": "Albany",
    "North Carolina": "Raleigh", "North Dakota": "Bismarck", "Ohio": "Columbus",
    "Oklahoma": "Oklahoma City", "Oregon": "Salem", "Pennsylvania": "Harrisburg",
    "Rhode Island": "Providence", "South Carolina": "Columbia", "South Dakota": "Pierre",
    "Tennessee": "Nashville", "Texas": "Austin", "Utah": "Salt Lake City", "Vermont": "Montpelier",
    "Virginia": "Richmond", "Washington": "Olympia", "West Virginia": "Charleston",
    "Wisconsin": "Madison", "Wyoming": "Cheyenne",
}

# One famous single-author novel per author (no two listed authors share a book).
AUTHORS: dict[str, str] = {
    "George Orwell": "Nineteen Eighty-Four", "Jane Austen": "Pride and Prejudice",
    "Herman Melville": "Moby-Dick", "Leo Tolstoy": "War and Peace",
    "Fyodor Dostoevsky": "Crime and Punishment", "Charles Dickens": "Great Expectations",
    "Mark Twain": "Adventures of Huckleberry Finn", "F. Scott Fitzgerald": "The Great Gatsby",
    "Harper Lee": "To Kill a Mockingbird", "J. D. Salinger": "The Catcher in the Rye",
    "Mary Shelley": "Frankenstein", "Bram Stoker": "Dracula", "Miguel de Cervantes": "Don Quixote",
    "Gabriel Garcia Marquez": "One Hundred Years of Solitude", "Victor Hugo": "Les Miserables",
    "J. R. R. Tolkien": "The Lord of the Rings", "Aldous Huxley": "Brave New World",
    "Ray Bradbury": "Fahrenheit 451", "John Steinbeck": "The Grapes of Wrath",
    "Ernest Hemingway": "The Old Man and the Sea", "Charlotte Bronte": "Jane Eyre",
    "Emily Bronte": "Wuthering Heights", "Oscar Wilde": "The Picture of Dorian Gray",
    "Lewis Carroll": "Alice's Adventures in Wonderland", "Jonathan Swift": "Gulliver's Travels",
    "Daniel Defoe": "Robinson Crusoe", "Gustave Flaubert": "Madame Bovary",
    "James Joyce": "Ulysses", "Virginia Woolf": "Mrs Dalloway", "Toni Morrison": "Beloved",
    "Chinua Achebe": "Things Fall Apart", "Margaret Atwood": "The Handmaid's Tale",
    "Joseph Heller": "Catch-22", "Kurt Vonnegut": "Slaughterhouse-Five",
    "William Golding": "Lord of the Flies", "Agatha Christie": "Murder on the Orient Express",
    "Jules Verne": "Twenty Thousand Leagues Under the Seas", "H. G. Wells": "The War of the Worlds",
    "Robert Louis Stevenson": "Treasure Island", "Nathaniel Hawthorne": "The Scarlet Letter",
    "Louisa May Alcott": "Little Women", "Harriet Beecher Stowe": "Uncle Tom's Cabin",
    "Vladimir Nabokov": "Lolita", "Umberto Eco": "The Name of the Rose",
    "Boris Pasternak": "Doctor Zhivago", "Mikhail Bulgakov": "The Master and Margarita",
    "Khaled Hosseini": "The Kite Runner", "Paulo Coelho": "The Alchemist",
    "Cormac McCarthy": "The Road", "Kazuo Ishiguro": "The Remains of the Day",
}

# Inventions with an undisputed inventor; contested ones (light bulb, radio, telephone,
# television, Watt's steam engine, Arkwright's water frame, Morse code...) are left out so
# that no wrong candidate is arguably true.
INVENTORS: dict[str, str] = {
    "Johannes Gutenberg": "the movable-type printing press in Europe",
    "Thomas Edison": "the phonograph",
    "the Wright brothers": "the first successful powered airplane",
    "Tim Berners-Lee": "the World Wide Web", "Alfred Nobel": "dynamite",
    "Benjamin Franklin": "the lightning rod", "Eli Whitney": "the cotton gin",
    "Alessandro Volta": "the first electric battery",
    "Louis Braille": "a tactile writing system for the blind",
    "Karl Benz": "the first practical automobile", "Rudolf Diesel": "the diesel engine",
    "Willis Carrier": "modern air conditioning", "Percy Spencer": "the microwave oven",
    "Robert Goddard": "the first liquid-fueled rocket", "Elisha Otis": "the safety elevator",
    "Evangelista Torricelli": "the mercury barometer", "Christiaan Huygens": "the pendulum clock",
    "Daniel Gabriel Fahrenheit": "the mercury-in-glass thermometer",
    "James Hargreaves": "the spinning jenny", "John Kay": "the flying shuttle",
    "Edmund Cartwright": "the power loom", "Thomas Newcomen": "the atmospheric steam engine",
    "Charles Babbage": "the Analytical Engine", "Stephanie Kwolek": "Kevlar",
    "Wallace Carothers": "nylon", "Leo Baekeland": "Bakelite", "Walter Hunt": "the safety pin",
    "Ruth Wakefield": "the chocolate chip cookie", "Earl Dickson": "the Band-Aid",
    "Bette Nesmith Graham": "Liquid Paper", "Louis Daguerre": "the daguerreotype",
    "Richard Gatling": "the Gatling gun", "Dean Kamen": "the Segway", "George de Mestral": "Velcro",
    "John Pemberton": "Coca-Cola", "Percy Shaw": "the cat's eye road reflector",
    "Mikhail Kalashnikov": "the AK-47 rifle", "Frank Epperson": "the Popsicle",
}

ELEMENTS: dict[str, str] = {
    "hydrogen": "H", "helium": "He", "lithium": "Li", "beryllium": "Be", "boron": "B",
    "carbon": "C", "nitrogen": "N", "oxygen": "O", "fluorine": "F", "neon": "Ne", "sodium": "Na",
    "magnesium": "Mg", "aluminium": "Al", "silicon": "Si", "phosphorus": "P", "sulfur": "S",
    "chlorine": "Cl", "argon": "Ar", "potassium": "K", "calcium": "Ca", "titanium": "Ti",
    "chromium": "Cr", "manganese": "Mn", "iron": "Fe", "cobalt": "Co", "nickel": "Ni",
    "copper": "Cu", "zinc": "Zn", "arsenic": "As", "bromine": "Br", "krypton": "Kr", "silver": "Ag",
    "tin": "Sn", "antimony": "Sb", "iodine": "I", "xenon": "Xe", "tungsten": "W", "platinum": "Pt",
    "gold": "Au", "mercury": "Hg", "lead": "Pb", "radon": "Rn", "radium": "Ra", "uranium": "U",
    "plutonium": "Pu",
}

PLANETS: dict[str, str] = {
    "Mercury": "first", "Venus": "second", "Earth": "third", "Mars": "fourth", "Jupiter": "fifth",
    "Saturn": "sixth", "Uranus": "seventh", "Neptune": "eighth",
}


@dataclass(frozen=True)
class FactFamily:
    """Subjects with one true answer each, and how to say a candidate as a question and claim
    (`{s}` = subject, `{a}` = candidate answer). `wrong` = wrong candidates per subject."""

    facts: dict[str, str]
    question: str
    claim: str
    wrong: int = 1


FACT_FAMILIES: dict[str, FactFamily] = {
    "capitals": FactFamily(CAPITALS, "What is the capital of {s}?", "The capital of {s} is {a}."),
    "currencies": FactFamily(CURRENCIES, "What is the official currency of {s}?",
                             "The official currency of {s} is the {a}."),
    "state-capitals": FactFamily(STATE_CAPITALS, "What is the capital of the US state of {s}?",
                                 "The capital of {s} is {a}."),
    "authors": FactFamily(AUTHORS, "Name a novel written by {s}.", "{s} wrote {a}."),
    "inventors": FactFamily(INVENTORS, "What did {s} invent?", "{s} invented {a}."),
    "elements": FactFamily(ELEMENTS, "What is the chemical symbol of {s}?",
                           "The chemical symbol of {s} is {a}."),
    "planets": FactFamily(PLANETS, "Counting from the Sun, which planet is {s}?",
                          "{s} is the {a} planet from the Sun.", wrong=3),
}
CLAIM_SETS = (*FACT_FAMILIES, "sums")

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
            q, ans = (
                f"{who} has {a} {what} and gets {b} more. How many {what} does {who} have now?",
                a + b,
            )
        elif op == "sub":
            a = a + b
            q, ans = f"{who} has {a} {what} and gives away {b}. How many {what} are left?", a - b
        else:
            a = a % 9 + 2
            q, ans = (
                f"{who} has {a} boxes with {b} {what} in each box. How many {what} are there?",
                a * b,
            )
        out.append(Problem(id=f"arith-{i}", question=q, answer=str(ans), meta={"op": op}))
    return out


def fact_claims(name: str, seed: int = 0, wrong_per_subject: int | None = None) -> list[Claim]:
    """Claims of fact family `name`: per subject its true answer and `wrong_per_subject`
    (default: the family's) wrong answers drawn from other subjects' answers, candidates of
    one subject sharing `group` = subject and `key` = the candidate answer; shuffled."""
    fam = FACT_FAMILIES[name]
    k = fam.wrong if wrong_per_subject is None else wrong_per_subject
    subjects = sorted(fam.facts)
    if not 1 <= k < len(subjects):
        raise SelfteachError(f"builtin:{name}: wrong candidates per subject {k}: "
                             f"choose 1..{len(subjects) - 1}")
    rng = random.Random(seed)
    claims = []
    for s in subjects:
        true = fam.facts[s]
        # other subjects' answers, never this subject's own (the same draw order as the first
        # version of `capitals`, so its claims are unchanged for a given seed)
        wrong = rng.sample([fam.facts[o] for o in subjects if o != s and fam.facts[o] != true], k)
        cands = [(true, True)] + [(w, False) for w in wrong]
        rng.shuffle(cands)
        for j, (answer, gold) in enumerate(cands):
            claims.append(Claim(id=f"{s}-{j}", question=fam.question.format(s=s),
                                claim=_sentence(fam.claim.format(s=s, a=answer)), group=s,
                                key=answer, gold=gold))
    rng.shuffle(claims)
    return claims


def _sentence(text: str) -> str:
    """Capitalise the first letter ("the Wright brothers invented ..." starts a sentence)."""
    return text[:1].upper() + text[1:]


MAX_SUMS = 1_000_000


def _sums_count(name: str) -> int | None:
    """`sums` = 128 claims; `sums-N` = N claims (1..1,000,000; the first 128 equal `sums`'s),
    for measuring ICM on claim sets far larger than a context. None: not a sums set."""
    if name == "sums":
        return 128
    head, _, n = name.partition("-")
    if head != "sums" or not n:
        return None
    if not n.isdigit() or not 1 <= int(n) <= MAX_SUMS:
        raise SelfteachError(f"builtin:{name}: sums-N needs N in 1..{MAX_SUMS}, e.g. sums-10000")
    return int(n)


def builtin_claims(name: str, seed: int = 0, wrong_per_subject: int | None = None) -> list[Claim]:
    """A built-in claim set (`FACT_FAMILIES`, `sums` or `sums-N`) generated offline from `seed`."""
    if name in FACT_FAMILIES:
        return fact_claims(name, seed, wrong_per_subject)
    n = _sums_count(name)
    if n is not None:
        rng = random.Random(seed)
        claims = []
        for i in range(n):
            a, b = rng.randint(2, 60), rng.randint(2, 60)
            right = rng.random() < 0.5
            c = a + b if right else a + b + rng.choice([-10, -2, -1, 1, 2, 10])
            claims.append(
                Claim(
                    id=f"sum-{i}",
                    question=f"What is {a} + {b}?",
                    claim=f"{a} + {b} = {c}",
                    group=f"sum-{i}",
                    key=str(c),
                    gold=right,
                )
            )
        return claims
    raise SelfteachError(f"builtin:{name}: unknown built-in claim set "
                         f"(choose: {', '.join(CLAIM_SETS)}, sums-N)")
