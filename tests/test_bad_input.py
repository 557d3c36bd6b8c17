"""A table of malformed inputs across every command: each must give exit code 2, exactly
one line on stderr naming the file/line/field or the option and value, no traceback, and
write nothing (no run directory, no change to an existing one). No model may load: the
table runs with `from_pretrained` patched to fail, so every check must come first.

`benchmarks/reliability_table.py` runs the same table and prints the per-area counts
recorded in docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import pytest

TINY = ["--model", "tiny-random"]


@dataclass
class Case:
    # what is malformed: "data", "options", "--out", "resume", "report"
    area: str
    command: str                       # e.g. "eval accuracy"
    name: str
    make: Callable[[Path], list[str]]  # builds the inputs under a temporary folder, returns argv
    expect: str                        # must appear in the one error line
    tags: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.command.replace(' ', '-')}:{self.name}"


CASES: list[Case] = []


def case(
    area: str, command: str, name: str, make: Callable[[Path], list[str]], expect: str
) -> None:
    CASES.append(Case(area, command, name, make, expect))


def write(folder: Path, name: str, data: str | bytes) -> str:
    p = folder / name
    if isinstance(data, str):
        data = data.encode("utf-8")
    p.write_bytes(data)
    return str(p)


def jl(*rows) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


# ---- valid rows of each input kind, and how each command takes a file ------------------
PROBLEM = {"id": "p1", "question": "What is 2 + 2?", "answer": "4"}
CLAIM = {
    "id": "c1",
    "question": "What is 2 + 2?",
    "claim": "The answer is 4.",
    "group": "g1",
    "gold": True,
}
PAIR = {"prompt": "What is 2 + 2?", "chosen": "4", "rejected": "5"}
ITEM = {"id": "j1", "prompt": "What is 2 + 2?", "chosen": "4", "rejected": "5", "subset": "math"}
SFT = {"prompt": "What is 2 + 2?", "completion": "4"}
RECORD = {"id": "j1", "prompt": "What is 2 + 2?", "responses": ["4", "5"], "best": 0,
          "samples": [{"scores": [9, 2], "text": "Scores: 9, 2"}]}

# command -> (argv before the file, option taking the file, valid row, text field)
FILE_COMMANDS: dict[str, tuple[list[str], str, dict, str]] = {
    "eval accuracy": (["eval", "accuracy", *TINY], "--data", PROBLEM, "question"),
    "eval anytime": (["eval", "anytime", *TINY], "--data", PROBLEM, "question"),
    "elicit": (["elicit", *TINY], "--claims", CLAIM, "claim"),
    "improve": (["improve", *TINY], "--problems", PROBLEM, "question"),
    "train grpo": (["train", "grpo", *TINY], "--problems", PROBLEM, "question"),
    "train sft": (["train", "sft", *TINY], "--data", SFT, "completion"),
    "train dpo": (["train", "dpo", *TINY], "--pairs", PAIR, "chosen"),
    "judge run": (["judge", "run", *TINY], "--data", ITEM, "prompt"),
    "judge eval": (["judge", "eval", *TINY], "--data", ITEM, "prompt"),
    "judge rft-data": (["judge", "rft-data", *TINY], "--data", ITEM, "prompt"),
    "judge eval --from-run": (["judge", "eval", *TINY], "--from-run", RECORD, "prompt"),
    "judge train-meta": (
        ["judge", "train-meta", "--backbone", "tiny-random"],
        "--judgments",
        RECORD,
        "prompt",
    ),
}


def with_file(
    command: str,
    data: str | bytes | None,
    fname: str = "in.jsonl",
    extra: list[str] | None = None,
    make_path: Callable[[Path], str] | None = None,
) -> Callable[[Path], list[str]]:
    pre, opt, _, _ = FILE_COMMANDS[command]

    def make(tmp: Path) -> list[str]:
        if make_path is not None:
            path = make_path(tmp)
        elif data is None:
            path = str(tmp / fname)  # missing
        else:
            path = write(tmp, fname, data)
        return [*pre, opt, path, "--out", str(tmp / "out"), *(extra or [])]
    return make


# ---- 1. any input file: encoding, JSON syntax, numbers, shape -------------------------------
def _corruptions(row: dict, text_field: str) -> list[tuple[str, bytes | str | None, str]]:
    good = json.dumps(row)
    latin = dict(row, **{text_field: "caf\u00e9"})
    return [
        (
            "latin-1",
            good.encode() + b"\n" + json.dumps(latin, ensure_ascii=False).encode("latin-1") + b"\n",
            "in.jsonl:2: not UTF-8",
        ),
        ("utf-16", (good + "\n").encode("utf-16"), "in.jsonl:1: not UTF-8 (looks like UTF-16)"),
        ("invalid-bytes", good.encode() + b'\n{"id": "x\xff\xfe"}\n', "in.jsonl:2: not UTF-8"),
        (
            "deep-nesting",
            good + "\n" + '{"a": ' + "[" * 200_000 + "]" * 200_000 + "}\n",
            "in.jsonl:2: JSON nested too deeply",
        ),
        (
            "NaN",
            good + "\n" + good[:-1] + ', "x": NaN}\n',
            "in.jsonl:2: field 'x': nan is not a finite number",
        ),
        ("Infinity", good + "\n" + good[:-1] + ', "x": Infinity}\n', "in.jsonl:2: field 'x': inf"),
        (
            "-Infinity",
            good + "\n" + good[:-1] + ', "x": [1, -Infinity]}\n',
            "in.jsonl:2: field 'x[1]': -inf",
        ),
        (
            "1e400",
            good + "\n" + good[:-1] + ', "x": {"y": 1e400}}\n',
            "in.jsonl:2: field 'x.y': inf",
        ),
        ("malformed", good + '\n{"id": "x", \n', "in.jsonl:2: malformed JSON"),
        ("array-row", good + "\n[1, 2]\n", "in.jsonl:2: expected a JSON object, got list"),
        ("string-row", good + '\n"text"\n', "in.jsonl:2: expected a JSON object, got str"),
        ("null-row", "null\n" + good + "\n", "in.jsonl:1: expected a JSON object, got NoneType"),
        ("empty-file", b"", "in.jsonl: file is empty"),
        ("blank-file", "\n   \n\t\n", "in.jsonl: file is empty"),
        ("missing-file", None, "in.jsonl: file not found"),
    ]


for _cmd, (_pre, _opt, _row, _text) in FILE_COMMANDS.items():
    for _name, _data, _expect in _corruptions(_row, _text):
        case("data: file", _cmd, _name, with_file(_cmd, _data), _expect)
    case(
        "data: file",
        _cmd,
        "directory-not-dataset",
        with_file(_cmd, None, make_path=lambda t: _folder(t)),
        "judgments.jsonl: file not found"
        if _cmd in ("judge eval --from-run", "judge train-meta")
        else "is a directory, expected a JSONL file"
        if _cmd == "train dpo"
        else "not a dataset saved with save_to_disk",
    )


def _folder(tmp: Path) -> str:
    (tmp / "d").mkdir()
    write(tmp / "d", "x.txt", "x")
    return str(tmp / "d")


# ---- 2. fields: types, blanks, ids, choices ------------------------------------------------
PROBLEM_FIELDS = [
    ("question-number", {"question": 42}, "in.jsonl:2: field 'question'"),
    ("question-list", {"question": ["a", "b"]}, "in.jsonl:2: field 'question'"),
    ("question-null", {"question": None}, "in.jsonl:2: field 'question'"),
    ("question-blank", {"question": "   \t "}, "in.jsonl:2: field 'question'"),
    ("question-empty", {"question": ""}, "in.jsonl:2: field 'question'"),
    ("answer-list", {"answer": [4]}, "in.jsonl:2: field 'answer'"),
    ("answer-object", {"answer": {"v": 4}}, "in.jsonl:2: field 'answer'"),
    ("answer-bool", {"answer": True}, "in.jsonl:2: field 'answer'"),
    ("answer-blank", {"answer": "  "}, "in.jsonl:2: field 'answer'"),
    ("id-list", {"id": [1]}, "in.jsonl:2: field 'id'"),
    ("id-object", {"id": {"a": 1}}, "in.jsonl:2: field 'id'"),
    ("id-null", {"id": None}, "in.jsonl:2: field 'id'"),
    ("id-bool", {"id": True}, "in.jsonl:2: field 'id'"),
    ("id-float", {"id": 1.5}, "in.jsonl:2: field 'id'"),
    ("id-blank", {"id": " "}, "in.jsonl:2: field 'id'"),
    (
        "mc-letter-outside",
        {"choices": ["1", "2", "3", "4"], "answer": "E"},
        "in.jsonl:2: field 'answer'",
    ),
    (
        "mc-letter-word",
        {"choices": ["1", "2", "3", "4"], "answer": "four"},
        "in.jsonl:2: field 'answer'",
    ),
    (
        "mc-index-outside",
        {"choices": ["1", "2", "3", "4"], "answer": 7},
        "in.jsonl:2: field 'answer' index 7",
    ),
    (
        "mc-index-negative",
        {"choices": ["1", "2"], "answer": -1},
        "in.jsonl:2: field 'answer' index -1",
    ),
    ("mc-choices-numbers", {"choices": [1, 2, 3, 4], "answer": "A"}, "in.jsonl:2: field 'choices"),
    ("mc-one-choice", {"choices": ["only"], "answer": "A"}, "in.jsonl:2: field 'choices'"),
    ("mc-choices-string", {"choices": "ABCD", "answer": "A"}, "in.jsonl:2: field 'choices'"),
    ("mc-blank-choice", {"choices": ["a", " "], "answer": "A"}, "in.jsonl:2: field 'choices"),
]
DUPLICATES = [  # (name, rows, expected)
    ("dup-id-string", [{"id": "a"}, {"id": "a"}], "in.jsonl:2: duplicate id 'a' (first on line 1)"),
    (
        "dup-id-int-vs-string",
        [{"id": 1}, {"id": "1"}],
        "in.jsonl:2: duplicate id '1' (first on line 1)",
    ),
    (
        "dup-explicit-vs-implicit",
        [{}, {"id": "0"}],
        "in.jsonl:2: duplicate id '0' (first on line 1)",
    ),
    (
        "dup-after-blank-line",
        [{"id": "a"}, "", {"id": "a"}],
        "in.jsonl:3: duplicate id 'a' (first on line 1)",
    ),
    ("null-id-twice", [{"id": None}, {"id": None}], "in.jsonl:1: field 'id'"),
]


def _rows_with(base: dict, change: dict) -> str:
    row = {k: v for k, v in {**base, **change}.items()}
    return jl(base | {"id": "first"} if "id" in base else base, row)


for _cmd in ("eval accuracy", "eval anytime", "improve", "train grpo"):
    for _name, _change, _expect in PROBLEM_FIELDS:
        case("data: fields", _cmd, _name, with_file(_cmd, _rows_with(PROBLEM, _change)), _expect)
    for _name, _rows, _expect in DUPLICATES:
        _lines = "".join(
            "\n"
            if r == ""
            else json.dumps({k: v for k, v in {**PROBLEM, **r}.items() if "id" in r or k != "id"})
            + "\n"
            for r in _rows
        )
        case("data: ids", _cmd, _name, with_file(_cmd, _lines), _expect)
    case(
        "data: fields",
        _cmd,
        "svamp-body-number",
        with_file(_cmd, jl({"Body": 3, "Question": "How many?", "Answer": 3})),
        "in.jsonl:1: field 'Body'",
    )
    case(
        "data: fields",
        _cmd,
        "field-map-missing",
        with_file(_cmd, jl(PROBLEM), extra=["--field", "question=Body+Question"]),
        "missing field 'Body'",
    )
    case("data: fields", _cmd, "field-map-joins-number",
         with_file(_cmd, jl({"id": "a", "Body": "x", "Question": 5, "answer": "1"}),
                   extra=["--field", "question=Body+Question"]), "in.jsonl:1: field 'Question'")

for _cmd in ("eval accuracy", "eval anytime"):
    case(
        "data: fields",
        _cmd,
        "no-answers",
        with_file(_cmd, jl({"id": "a", "question": "Q?"})),
        "no gold answer",
    )
    case(
        "data: fields",
        _cmd,
        "answer-NaN-parquet",
        lambda t, c=_cmd: _parquet(t, c),
        "field 'answer'",
    )

CLAIM_FIELDS = [
    ("claim-number", {"claim": 7}, "field 'claim'"),
    ("claim-list", {"claim": ["a"]}, "field 'claim'"),
    ("claim-blank", {"claim": "  "}, "field 'claim'"),
    ("claim-missing", {"claim": None}, "missing field 'claim'"),
    ("group-list", {"group": ["g"]}, "field 'group'"),
    ("group-object", {"group": {"g": 1}}, "field 'group'"),
    ("group-float", {"group": 1.5}, "field 'group'"),
    ("group-bool", {"group": False}, "field 'group'"),
    ("key-list", {"key": [1]}, "field 'key'"),
    ("key-bool", {"key": True}, "field 'key'"),
    ("question-number", {"question": 3}, "field 'question'"),
    ("gold-maybe", {"gold": "maybe"}, "field 'gold'"),
    ("gold-two", {"gold": 2}, "field 'gold'"),
    ("id-list", {"id": ["c"]}, "field 'id'"),
    ("id-null", {"id": None}, "field 'id'"),
    ("dup-id", {"id": "first"}, "in.jsonl:2: duplicate id 'first' (first on line 1)"),
]
for _name, _change, _expect in CLAIM_FIELDS:
    case("data: fields", "elicit", _name, with_file("elicit", _rows_with(CLAIM, _change)), _expect)
case(
    "data: ids",
    "elicit",
    "dup-explicit-vs-implicit",
    with_file("elicit", jl({"claim": "a"}, {"id": "0", "claim": "b"})),
    "in.jsonl:2: duplicate id '0' (first on line 1)",
)

ITEM_FIELDS = [
    ("prompt-number", {"prompt": 5}, "field 'prompt'"),
    ("prompt-blank", {"prompt": " \n "}, "field 'prompt'"),
    ("chosen-number", {"chosen": 4}, "field 'chosen'"),
    ("rejected-blank", {"rejected": "  "}, "field 'rejected'"),
    ("id-list", {"id": [1]}, "field 'id'"),
    ("id-null", {"id": None}, "field 'id'"),
    ("subset-list", {"subset": ["a"]}, "field 'subset'"),
    ("dup-id", {"id": "first"}, "in.jsonl:2: duplicate id 'first' (first on line 1)"),
    (
        "responses-not-list",
        {"chosen": None, "rejected": None, "responses": "ab"},
        "field 'responses'",
    ),
    ("best-outside", {"responses": ["a", "b"], "best": 5}, "field 'best'"),
    ("best-bool", {"responses": ["a", "b"], "best": True}, "field 'best'"),
    ("best-float", {"responses": ["a", "b"], "best": 0.5}, "field 'best'"),
]
ITEM_N = {"id": "j2", "prompt": "What is 2 + 2?", "responses": ["4", "5"], "best": 0}
for _cmd in ("judge run", "judge eval", "judge rft-data"):
    for _name, _change, _expect in ITEM_FIELDS:
        _base = ITEM if "responses" not in _change else ITEM_N
        _change = {
            k: v for k, v in _change.items() if v is not None or k not in ("chosen", "rejected")
        }
        case("data: fields", _cmd, _name, with_file(_cmd, _rows_with(_base, _change)), _expect)

PAIR_FIELDS = [
    ("chosen-number", {"chosen": 4}, "in.jsonl:2: field 'chosen'"),
    ("chosen-messages-numbers", {"chosen": [1, 2]}, "in.jsonl:2: field 'chosen'"),
    ("rejected-blank", {"rejected": "   "}, "in.jsonl:2: field 'rejected'"),
    ("prompt-number", {"prompt": 1}, "in.jsonl:2: field 'prompt'"),
    (
        "identical",
        {"chosen": "x", "rejected": "x"},
        "in.jsonl:2: chosen and rejected are identical",
    ),
    ("chosen-missing", {"chosen": None}, "in.jsonl:2: field 'chosen'"),
]
for _name, _change, _expect in PAIR_FIELDS:
    _row = {k: v for k, v in {**PAIR, **_change}.items() if v is not None}
    case("data: fields", "train dpo", _name, with_file("train dpo", jl(PAIR, _row)), _expect)

SFT_FIELDS = [
    ("completion-number", {"completion": 4}, "in.jsonl:2: field 'completion'"),
    ("completion-float", {"completion": 4.5}, "in.jsonl:2: field 'completion'"),
    ("completion-list-numbers", {"completion": [1, 2]}, "in.jsonl:2: field 'completion'"),
    ("completion-blank", {"completion": "  "}, "in.jsonl:2: field 'completion'"),
    ("completion-empty", {"completion": ""}, "in.jsonl:2: missing or empty field 'completion'"),
    ("prompt-number", {"prompt": 3}, "in.jsonl:2: field 'prompt'"),
    ("prompt-object", {"prompt": {"a": 1}}, "in.jsonl:2: field 'prompt'"),
    (
        "messages-no-assistant",
        {
            "prompt": None,
            "completion": None,
            "messages": [{"role": "user", "content": "q"}, {"role": "user", "content": "a"}],
        },
        "field 'messages'",
    ),
    (
        "messages-content-number",
        {
            "prompt": None,
            "completion": None,
            "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": 4}],
        },
        "field 'messages'",
    ),
]
for _name, _change, _expect in SFT_FIELDS:
    _row = {k: v for k, v in {**SFT, **_change}.items() if v is not None}
    _first = (
        SFT
        if "messages" not in _change
        else {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    )
    case("data: fields", "train sft", _name, with_file("train sft", jl(_first, _row)), _expect)
case("data: fields", "train sft", "problem-question-number",
     with_file("train sft", jl({"question": 5, "completion": "x"})), "in.jsonl:1: field 'question'")

RECORD_FIELDS = [
    ("samples-missing", {"samples": None}, "missing field 'samples'"),
    ("responses-string", {"responses": "ab"}, "field 'responses'"),
    ("samples-numbers", {"samples": [1, 2]}, "field 'samples'"),
    ("id-list", {"id": [1]}, "field 'id'"),
    ("dup-id", {"id": "j1"}, "in.jsonl:2: duplicate id 'j1' (first on line 1)"),
]
for _cmd in ("judge eval --from-run", "judge train-meta"):
    for _name, _change, _expect in RECORD_FIELDS:
        _row = {k: v for k, v in {**RECORD, **_change}.items() if v is not None}
        case("data: fields", _cmd, _name, with_file(_cmd, jl(RECORD, _row)), _expect)


def _parquet(tmp: Path, cmd: str) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp / "in.parquet"
    pq.write_table(
        pa.table({"id": ["a", "b"], "question": ["Q1?", "Q2?"], "answer": [1.0, float("nan")]}),
        path,
    )
    pre, opt, _, _ = FILE_COMMANDS[cmd]
    return [*pre, opt, str(path), "--out", str(tmp / "out")]


def _saved(tmp: Path, kind: str) -> list[str]:
    import datasets

    path = tmp / "ds"
    if kind == "empty":
        datasets.Dataset.from_list([]).save_to_disk(str(path))
    else:
        datasets.DatasetDict({}).save_to_disk(str(path))
    return ["eval", "accuracy", *TINY, "--data", str(path), "--out", str(tmp / "out")]


case(
    "data: file",
    "eval accuracy",
    "saved-dataset-empty",
    lambda t: _saved(t, "empty"),
    "dataset is empty",
)
case("data: file", "eval accuracy", "saved-dataset-no-split", lambda t: _saved(t, "nosplit"),
     "saved dataset has no split")
case(
    "data: file",
    "eval accuracy",
    "builtin-unknown",
    lambda t: ["eval", "accuracy", *TINY, "--data", "builtin:nope", "--out", str(t / "out")],
    "builtin",
)
case(
    "data: file",
    "judge eval",
    "builtin-unknown",
    lambda t: ["judge", "eval", *TINY, "--data", "builtin:nope", "--out", str(t / "out")],
    "builtin:nope",
)

# ---- 3. option values: zero, negative, NaN, infinite, too large, unknown choices --------
BIG = str(2**64)
COMMAND_ARGS = {  # argv that would run, given the out folder
    "eval accuracy": lambda o: ["eval", "accuracy", *TINY, "--limit", "2", "--out", o],
    "eval anytime": lambda o: ["eval", "anytime", *TINY, "--limit", "2", "--out", o],
    "elicit": lambda o: ["elicit", *TINY, "--claims", "builtin:capitals", "--out", o],
    "improve": lambda o: ["improve", *TINY, "--out", o],
    "train sft": lambda o: ["train", "sft", *TINY, "--data", "builtin:arithmetic", "--out", o],
    "train dpo": lambda o: ["train", "dpo", *TINY, "--pairs", "PAIRS", "--out", o],
    "train grpo": lambda o: [
        "train",
        "grpo",
        *TINY,
        "--problems",
        "builtin:arithmetic",
        "--out",
        o,
    ],
    "judge run": lambda o: ["judge", "run", *TINY, "--data", "builtin:pairs", "--out", o],
    "judge eval": lambda o: ["judge", "eval", *TINY, "--out", o],
    "judge rft-data": lambda o: ["judge", "rft-data", *TINY, "--out", o],
    "judge train-meta": lambda o: [
        "judge",
        "train-meta",
        "--backbone",
        "tiny-random",
        "--judgments",
        "RECORDS",
        "--out",
        o,
    ],
    "demo": lambda o: ["demo", *TINY, "--skip-icm", "--out", o],
}
OPTIONS = {
    "eval accuracy": [
        ("--samples", "0"),
        ("--samples", "-1"),
        ("--samples", "5000"),
        ("--temperature", "-1"),
        ("--temperature", "nan"),
        ("--temperature", "inf"),
        ("--temperature", "100"),
        ("--top-p", "0"),
        ("--top-p", "1.5"),
        ("--top-p", "nan"),
        ("--max-new-tokens", "0"),
        ("--max-new-tokens", "1000000000"),
        ("--batch-size", "0"),
        ("--batch-size", "-3"),
        ("--batch-size", "1000000"),
        ("--seed", "-1"),
        ("--seed", BIG),
        ("--seed", str(2**70)),
        ("--limit", "0"),
        ("--samples", "x"),
        ("--top-p", "abc"),
    ],
    "eval anytime": [
        ("--samples", "0"),
        ("--samples", "100000"),
        ("--temperature", "nan"),
        ("--temperature", "-0.5"),
        ("--batch-size", "0"),
        ("--pdp-k", "1"),
        ("--budgets", "0,1"),
        ("--budgets", "64,32"),
        ("--budgets", "a,b"),
        ("--budgets", ","),
        ("--method", "bogus"),
        ("--scorer", "bogus"),
        ("--pdp-judge", "bogus"),
        ("--seed", BIG),
        ("--answer-tokens", "0"),
        ("--answer-tokens", "100000"),
        ("--backend", "bogus"),
        ("--prompt-template", "no slot"),
        ("--pdp-budget", "0"),
    ],
    "elicit": [
        ("--alpha", "0"),
        ("--alpha", "-1"),
        ("--alpha", "nan"),
        ("--alpha", "inf"),
        ("--iters", "-1"),
        ("--iters", "1000000000000"),
        ("--seed", "-1"),
        ("--seed", BIG),
        ("--task", "bogus"),
        ("--scoring", "bogus"),
        ("--blocks", "1"),
        ("--refresh-every", "0"),
        ("--refresh-frac", "0"),
        ("--refresh-frac", "nan"),
        ("--max-context-tokens", "-1"),
        ("--limit", "0"),
        ("--backend", "bogus"),
    ],
    "improve": [
        ("--rounds", "0"),
        ("--samples", "1"),
        ("--samples", "100000"),
        ("--temperatures", "a,b"),
        ("--temperatures", "-1"),
        ("--temperatures", "nan"),
        ("--temperatures", ","),
        ("--beta", "0"),
        ("--beta", "nan"),
        ("--lr", "0"),
        ("--lr", "-1"),
        ("--lr", "nan"),
        ("--lr", "5"),
        ("--epochs", "0"),
        ("--epochs", "nan"),
        ("--batch-size", "0"),
        ("--grpo-loss-type", "bogus"),
        ("--on-one-class", "bogus"),
        ("--baselines", "bogus"),
        ("--icm", "alpha=nan"),
        ("--icm", "bogus=1"),
        ("--icm", "noequals"),
        ("--seed", BIG),
        ("--eval-samples", "0"),
        ("--grpo-lr", "0"),
        ("--eval-size", "0"),
        ("--max-new-tokens", "0"),
        ("--pairs-per-problem", "0"),
    ],
    "train sft": [
        ("--objective", "bogus"),
        ("--alpha", "2"),
        ("--alpha", "nan"),
        ("--lr", "0"),
        ("--lr", "nan"),
        ("--lr", "-1"),
        ("--batch-size", "0"),
        ("--max-steps", "0"),
        ("--max-steps", "-5"),
        ("--epochs", "0"),
        ("--epochs", "nan"),
        ("--seed", BIG),
        ("--max-length", "4"),
        ("--save-steps", "0"),
        ("--limit", "0"),
        ("--grad-accum", "0"),
        ("--diag-every", "0"),
    ],
    "train dpo": [
        ("--loss-type", "bogus"),
        ("--beta", "0"),
        ("--beta", "-1"),
        ("--beta", "nan"),
        ("--beta", "inf"),
        ("--lr", "0"),
        ("--lr", "nan"),
        ("--batch-size", "0"),
        ("--max-steps", "0"),
        ("--epochs", "nan"),
        ("--seed", BIG),
        ("--device", "tpu"),
        ("--lora-r", "0"),
        ("--max-length", "8"),
        ("--grad-accum", "0"),
    ],
    "train grpo": [
        ("--loss-type", "bogus"),
        ("--reward", "bogus"),
        ("--num-generations", "1"),
        ("--temperature", "0"),
        ("--temperature", "nan"),
        ("--beta", "-1"),
        ("--beta", "nan"),
        ("--lr", "0"),
        ("--batch-size", "0"),
        ("--max-steps", "-2"),
        ("--seed", "-1"),
        ("--device", "tpu"),
        ("--limit", "0"),
        ("--max-completion-length", "0"),
    ],
    "judge run": [
        ("--k", "0"),
        ("--k", "100000000000"),
        ("--temperature", "-1"),
        ("--temperature", "nan"),
        ("--top-p", "0"),
        ("--top-p", "2"),
        ("--max-new-tokens", "4"),
        ("--max-new-tokens", "1000000000"),
        ("--batch-size", "0"),
        ("--mode", "bogus"),
        ("--orders", "bogus"),
        ("--k-meta", "0"),
        ("--k-meta", "1.5"),
        ("--k-meta", "nan"),
        ("--seed", BIG),
        ("--limit", "0"),
        ("--backend", "bogus"),
    ],
    "judge eval": [
        ("--k", "0"),
        ("--k", "a"),
        ("--k", "100000000000"),
        ("--k", "1,,x"),
        ("--k", ","),
        ("--temperature", "nan"),
        ("--top-p", "0"),
        ("--mode", "bogus"),
        ("--k-meta", "2"),
        ("--seed", "-1"),
        ("--batch-size", "0"),
    ],
    "judge rft-data": [
        ("--k", "0"),
        ("--k", "100000000000"),
        ("--temperature", "nan"),
        ("--seed", BIG),
        ("--max-new-tokens", "0"),
    ],
    "judge train-meta": [
        ("--max-tokens", "8"),
        ("--epochs", "0"),
        ("--epochs", "1000000000"),
        ("--val-frac", "1.0"),
        ("--val-frac", "nan"),
        ("--seed", BIG),
    ],
    "demo": [("--limit", "0"), ("--model", "no-such-model"), ("--icm-model", "no-such-model")],
}
MODELS = [("--model", "no-such-model", "unknown model 'no-such-model'"),
          ("--model", "missing.gguf", "GGUF file not found"),
          ("--model", "http://127.0.0.1:notaport/v1", "not a valid URL"),
          ("--model", "http:///v1", "no host"),
          ("--model", "", "--model '': empty"),
          ("--model", "EMPTYDIR", "not a model directory (no config.json)"),
          ("--model", "AFILE", "expected a model directory or a .gguf file")]


def _files_for(argv: list[str], tmp: Path) -> list[str]:
    """Valid input files for the commands that need one (the option is what is wrong)."""
    subst = {"PAIRS": lambda: write(tmp, "pairs.jsonl", jl(PAIR)),
             "EMPTYDIR": lambda: (tmp.joinpath("m").mkdir(), str(tmp / "m"))[1],
             "AFILE": lambda: write(tmp, "weights.bin", b"\0"),
             "RECORDS": lambda: write(tmp, "judgments.jsonl", jl(RECORD))}
    return [subst[a]() if a in subst else a for a in argv]


def _option_case(cmd: str, opt: str, value: str) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        argv = _files_for(COMMAND_ARGS[cmd](str(tmp / "out")), tmp)
        value_ = _files_for([value], tmp)[0]
        if opt in argv:  # replace the default given above (e.g. --model)
            i = argv.index(opt)
            return argv[:i] + [opt, value_] + argv[i + 2:]
        return [*argv, opt, value_]
    return make


for _cmd, _opts in OPTIONS.items():
    for _opt, _value in _opts:
        _expect = f"{_opt} " if _opt not in ("--model", "--icm-model") else "unknown model"
        if _opt == "--icm" or _value == ",":
            _expect = _opt
        case("options", _cmd, f"{_opt}={_value}", _option_case(_cmd, _opt, _value), _expect)
for _cmd in COMMAND_ARGS:
    if _cmd in ("judge train-meta",):
        continue
    for _opt, _value, _expect in MODELS:
        _name = f"model={_value or 'empty'}".replace("/", "|")
        case("options: model", _cmd, _name, _option_case(_cmd, _opt, _value), _expect)

# ---- 4. --out: a file, under a file, unwritable, empty, a finished run ----------------
def _out_case(cmd: str, kind: str) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        if kind == "is-file":
            out = write(tmp, "out", "keep me")
        elif kind == "under-file":
            out = str(Path(write(tmp, "afile", "keep me")) / "run")
        elif kind == "unwritable":
            out = "/proc/selfteach-test/run"
        elif kind == "empty":
            out = ""
        else:  # a finished run without --resume
            (tmp / "out").mkdir()
            write(tmp / "out", "config.yaml", "model: tiny-random\n")
            out = str(tmp / "out")
        argv = _files_for(COMMAND_ARGS[cmd](out), tmp)
        return argv
    return make


OUT_EXPECT = {
    "is-file": "is a file",
    "under-file": "is a file, cannot create a directory under it",
    "unwritable": "not writable",
    "empty": "--out '': empty",
    "existing-run": "run directory exists",
}
for _cmd in COMMAND_ARGS:
    for _kind, _expect in OUT_EXPECT.items():
        if _kind == "existing-run" and _cmd in (
            "judge train-meta",
            "demo",
            "train dpo",
            "train grpo",
            "judge rft-data",
        ):
            continue  # these add to --out by design
        case("--out", _cmd, f"out-{_kind}", _out_case(_cmd, _kind), _expect)

# ---- 5. --resume on a damaged run directory -------------------------------------------------
RESUMABLE = {
    "eval accuracy": "outputs.jsonl",
    "eval anytime": "outputs.jsonl",
    "elicit": "metrics.jsonl",
    "improve": "metrics.jsonl",
    "judge run": "judgments.jsonl",
    "judge eval": "judgments.jsonl",
    "train sft": "metrics.jsonl",
}
DAMAGE = [
    ("config-malformed-yaml", "config.yaml", b"model: [unclosed\n", "config.yaml:"),
    ("config-not-mapping", "config.yaml", b"- a\n- b\n", "config.yaml: expected a mapping"),
    ("config-invalid-utf8", "config.yaml", b"model: \xff\xfe\n", "config.yaml: not UTF-8"),
    ("row-not-object", None, b'{"id": "a"}\n[1, 2]\n{"id": "b"}\n', ":2: damaged row"),
    ("row-invalid-utf8", None, b'{"id": "a"}\n{"id": "\xff"}\n{"id": "b"}\n', ":2: damaged row"),
    ("row-malformed-middle", None, b'{"id": "a"}\n{"id": \n{"id": "b"}\n', ":2: damaged row"),
]
ID_DAMAGE = [
    ("row-without-id", b'{"id": "a"}\n{"x": 1}\n', ":2: row has no valid 'id'"),
    ("row-id-null", b'{"id": null}\n', ":1: row has no valid 'id'"),
]


def _resume_case(cmd: str, file: str, content: bytes) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        out = tmp / "out"
        out.mkdir()
        write(out, "config.yaml", "model: tiny-random\n")
        write(out, file, content)
        return [*_files_for(COMMAND_ARGS[cmd](str(out)), tmp), "--resume"]
    return make


for _cmd, _outputs in RESUMABLE.items():
    for _name, _file, _content, _expect in DAMAGE:
        case("resume", _cmd, _name, _resume_case(_cmd, _file or _outputs, _content), _expect)
    if _outputs != "metrics.jsonl":
        for _name, _content, _expect in ID_DAMAGE:
            case("resume", _cmd, _name, _resume_case(_cmd, _outputs, _content), _expect)

# ---- 6. report on a damaged run ----------------------------------------------------------
REPORT_DAMAGE = [
    ("summary-malformed", "summary.json", b'{"title": ', "summary.json:1: malformed JSON"),
    ("summary-list", "summary.json", b"[1, 2]", "summary.json: expected a JSON object"),
    ("summary-invalid-utf8", "summary.json", b'{"title": "\xff"}', "summary.json: not UTF-8"),
    ("summary-tables-not-list", "summary.json", b'{"tables": 3}', "field 'tables'"),
    ("summary-table-not-object", "summary.json", b'{"tables": [1]}', "field 'tables[0]'"),
    (
        "summary-rows-not-lists",
        "summary.json",
        b'{"tables": [{"name": "t", "columns": [], "rows": [1]}]}',
        "field 'tables[0]'",
    ),
    ("summary-notes-not-list", "summary.json", b'{"notes": 5}', "field 'notes'"),
    (
        "summary-deep",
        "summary.json",
        b'{"a": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
        "nested too deeply",
    ),
    ("env-malformed", "env.json", b"{", "env.json:1: malformed JSON"),
    ("env-list", "env.json", b"[]", "env.json: expected a JSON object"),
    ("env-invalid-utf8", "env.json", b'{"a": "\xff"}', "env.json: not UTF-8"),
    ("config-invalid-utf8", "config.yaml", b"a: \xff\n", "config.yaml: not UTF-8"),
]


def _report_case(file: str | None, content: bytes | None, extra: list[str] | None = None,
                 run: str = "run") -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        d = tmp / "run"
        d.mkdir()
        if file:
            write(d, file, content or b"")
        return ["report", str(tmp / run), *(extra or [])]
    return make


for _name, _file, _content, _expect in REPORT_DAMAGE:
    case("report", "report", _name, _report_case(_file, _content), _expect)
case("report", "report", "run-missing", _report_case(None, None, run="nope"), "not a run directory")
case(
    "report",
    "report",
    "compare-missing",
    _report_case(None, None, ["--compare", "nope"]),
    "not a run directory",
)
case(
    "report",
    "report",
    "out-is-dir",
    _report_case("summary.json", b"{}", ["--out", "."]),
    "is a directory",
)
case(
    "report",
    "report",
    "out-under-file",
    lambda t: (
        write(t, "f", "x"),
        _report_case("summary.json", b"{}", ["--out", str(t / "f" / "r.html")])(t),
    )[1],
    "is a file, cannot create a directory under it",
)


# ---- the check -------------------------------------------------------------------------
def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"<dir>")
            for p in sorted(folder.rglob("*"))}


def _legacy_run(argv: list[str]) -> int:
    """`selfteach.cli.main` with argv, for measuring a checkout without `cli.run`."""
    import sys

    from selfteach import cli

    old, sys.argv = sys.argv, ["selfteach", *argv]
    try:
        cli.main()
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = old
    return 0


def check(c: Case, tmp: Path, strict: bool = True) -> str | None:
    """None when the case fails cleanly (exit 2, one line, no traceback, nothing written,
    and, when `strict`, the line names what the case expects); else what went wrong."""
    try:
        from selfteach.cli import run
    except ImportError:
        run = _legacy_run

    argv = c.make(tmp)
    before = snapshot(tmp)
    err, out = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(tmp)  # a stray relative write would show in the snapshot
    try:
        with mock.patch("transformers.AutoModelForCausalLM.from_pretrained",
                        side_effect=AssertionError("a model was loaded")), \
                contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            rc = run(argv)
    except BaseException as e:  # noqa: BLE001 - a crash is what we are counting
        return (
            f"crash: {type(e).__name__}: {e}".splitlines()[0]
            + " | "
            + traceback.format_exc(limit=-1)[-300:]
        )
    finally:
        os.chdir(cwd)
    lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
    problems = []
    if rc != 2:
        problems.append(f"exit {rc}")
    if len(lines) != 1:
        problems.append(f"{len(lines)} stderr lines")
    if "Traceback" in err.getvalue():
        problems.append("traceback")
    if strict and lines and c.expect not in lines[0]:
        problems.append(f"message lacks {c.expect!r}")
    if snapshot(tmp) != before:
        problems.append("wrote files")
    return (
        "; ".join(problems) + f" | stderr: {err.getvalue().strip()[:300]!r}" if problems else None
    )


@pytest.fixture(scope="module", autouse=True)
def _imports():
    import transformers  # noqa: F401 - imported once, so the patch in check() is cheap


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_bad_input(c: Case, tmp_path: Path) -> None:
    problem = check(c, tmp_path)
    assert problem is None, problem


def test_table_is_large_and_covers_every_command() -> None:
    assert len(CASES) >= 300
    commands = {c.command.split(" --")[0] for c in CASES}
    assert {
        "eval accuracy",
        "eval anytime",
        "elicit",
        "improve",
        "train sft",
        "train dpo",
        "train grpo",
        "judge run",
        "judge eval",
        "judge rft-data",
        "judge train-meta",
        "report",
        "demo",
    } <= commands


def test_trl_pairs_with_extra_columns_are_accepted(tmp_path: Path) -> None:
    """TRL preference datasets carry extra columns (ids, scores, sources): ignored."""
    from selfteach.train.dpo import read_pairs

    path = write(
        tmp_path, "p.jsonl", jl({**PAIR, "id": 3, "score_chosen": 8.0, "source": "x", "meta": [1]})
    )
    pairs = read_pairs(path)
    assert [(p.prompt, p.chosen, p.rejected) for p in pairs] == [(PAIR["prompt"], "4", "5")]


def test_resume_drops_only_a_torn_last_line_and_says_so(tmp_path: Path, capsys) -> None:
    from selfteach.errors import SelfteachError
    from selfteach.runs import RunDir

    run = RunDir(tmp_path)
    (tmp_path / "outputs.jsonl").write_bytes(b'{"id": "a"}\n{"id": "b"}\n{"id": "c", "ou')
    assert set(run.done_rows("outputs.jsonl")) == {"a", "b"}
    assert "dropped a torn last line" in capsys.readouterr().err
    assert (tmp_path / "outputs.jsonl").read_bytes() == b'{"id": "a"}\n{"id": "b"}\n'
    (tmp_path / "outputs.jsonl").write_bytes(b'{"id": "a"}\n{"id": \n{"id": "c"}\n')
    with pytest.raises(SelfteachError, match=r"outputs.jsonl:2: damaged row"):
        run.done_rows("outputs.jsonl")
    # untouched
    assert (tmp_path / "outputs.jsonl").read_bytes() == b'{"id": "a"}\n{"id": \n{"id": "c"}\n'
    (tmp_path / "outputs.jsonl").unlink()
    # our own NaN metrics are not damage
    (tmp_path / "metrics.jsonl").write_bytes(b'{"auroc": NaN}\n')
    run.check_resumable()


def test_valid_inputs_still_pass_the_checks(tmp_path: Path) -> None:
    """The checks reject the malformed, not the unusual: integer ids, numeric keys and
    answers, a UTF-8 BOM, blank lines, letters in lower case."""
    from selfteach.data.loaders import load_claims, load_problems

    p = write(
        tmp_path,
        "p.jsonl",
        "\ufeff"
        + jl(
            {"id": 7, "question": "Q?", "answer": 4.0},
            "",
            {"question": "Q2?", "choices": ["a", "b"], "answer": "b"},
        ),
    )
    assert [(x.id, x.answer) for x in load_problems(p)] == [("7", "4"), ("1", "B")]
    c = write(
        tmp_path, "c.jsonl", jl({"claim": "x", "group": 3, "key": 2.5}, {"claim": "y", "key": 7})
    )
    claims = load_claims(c)
    assert [(x.id, x.group, x.key) for x in claims] == [("0", "3", "2.5"), ("1", None, "7")]
