import json
import re

import pytest

from selfteach.data.builtin import builtin_claims, builtin_problems
from selfteach.data.jsonl import read_jsonl, write_jsonl
from selfteach.data.loaders import load_claims, load_problems, parse_field_map
from selfteach.errors import SelfteachError


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_shared_formats(shared_data):
    cases = {"gsm8k/test.jsonl": "18", "math/aime24.jsonl": "204", "math/svamp.jsonl": "145",
             "math/mawps_singleop.jsonl": "14", "math/amc23.jsonl": "27"}
    for f, ans in cases.items():
        p = load_problems(shared_data / f, limit=1)[0]
        assert p.answer == ans, f
    mc = load_problems(shared_data / "mc/mmlu_stem.jsonl", limit=1)[0]
    assert mc.answer == "C" and len(mc.choices) == 4
    gsm = load_problems(shared_data / "gsm8k/test.jsonl", limit=1)[0]
    assert "<<" not in gsm.solution  # calculator annotations stripped


def test_field_mapping(tmp_path):
    p = write(
        tmp_path, "d.jsonl", json.dumps({"B": "Tom has 3.", "Q": "How many?", "A": 3.0}) + "\n"
    )
    probs = load_problems(p, fields=parse_field_map(["question=B+Q", "answer=A"]))
    assert probs[0].question == "Tom has 3. How many?" and probs[0].answer == "3"


def test_hf_dataset_dir_and_parquet(tmp_path):
    import datasets

    ds = datasets.Dataset.from_list(
        [{"question": "1+1?", "answer": "2"}, {"question": "2+2?", "answer": "4"}]
    )
    ds.save_to_disk(str(tmp_path / "ds"))
    ds.to_parquet(str(tmp_path / "d.parquet"))
    assert [p.answer for p in load_problems(tmp_path / "ds")] == ["2", "4"]
    assert [p.answer for p in load_problems(tmp_path / "d.parquet")] == ["2", "4"]


@pytest.mark.parametrize("text,expected", [
    ("", "file is empty"),
    ('{"question": "a"}\n{bad json\n', ":2: malformed JSON"),
    ('[1, 2]\n', ":1: expected a JSON object"),
    ('{"foo": 1}\n', ":1: missing field 'question'"),
    ('{"question": 5, "answer": "1"}\n', ":1: field 'question'"),
])
def test_bad_input_names_line_and_field(tmp_path, text, expected):
    p = write(tmp_path, "bad.jsonl", text)
    with pytest.raises(SelfteachError, match=expected):
        load_problems(p)


def test_missing_file_and_missing_answers(tmp_path):
    with pytest.raises(SelfteachError, match="file not found"):
        load_problems(tmp_path / "nope.jsonl")
    p = write(tmp_path, "q.jsonl", '{"question": "x"}\n')
    assert load_problems(p)[0].answer is None  # fine for training
    with pytest.raises(SelfteachError, match="no gold answer"):
        load_problems(p, require_answers=True)


def test_bad_field_map():
    with pytest.raises(SelfteachError, match="TARGET=SOURCE"):
        parse_field_map(["question"])


def test_claims_loader(tmp_path):
    p = write(
        tmp_path,
        "c.jsonl",
        "\n".join(
            json.dumps(r)
            for r in [
                {"id": "a", "claim": "x", "gold": "True", "group": 1},
                {"id": "b", "claim": "y", "label": 0},
            ]
        )
        + "\n",
    )
    cs = load_claims(p)
    assert [c.gold for c in cs] == [True, False] and cs[0].group == "1"
    bad = write(tmp_path, "c2.jsonl", '{"id": "a", "text": "x"}\n')
    with pytest.raises(SelfteachError, match="missing field 'claim'"):
        load_claims(bad)
    dup = write(tmp_path, "c3.jsonl", '{"id": "a", "claim": "x"}\n{"id": "a", "claim": "y"}\n')
    with pytest.raises(SelfteachError, match="duplicate id .a. .first on line 1"):
        load_claims(dup)


def test_builtin_tasks_seeded_and_correct():
    a, b = builtin_problems("arithmetic", seed=1), builtin_problems("arithmetic", seed=1)
    assert a == b and len(a) == 200
    for p in a[:50]:
        nums = [int(t) for t in re.findall(r"\d+", p.question)]
        op = p.meta["op"]
        want = (
            nums[0] + nums[1]
            if op == "add"
            else nums[0] - nums[1]
            if op == "sub"
            else nums[0] * nums[1]
        )
        assert p.answer == str(want)
    caps = builtin_claims("capitals")
    by_group = {}
    for c in caps:
        by_group.setdefault(c.group, []).append(c.gold)
    assert all(sorted(v) == [False, True] for v in by_group.values())  # exactly one true candidate
    with pytest.raises(SelfteachError, match="unknown built-in"):
        load_problems("builtin:nope")


def test_write_jsonl_atomic_roundtrip(tmp_path):
    p = tmp_path / "sub" / "x.jsonl"
    write_jsonl(p, [{"a": 1}, {"a": 2}])
    assert read_jsonl(p) == [{"a": 1}, {"a": 2}]
    assert not list(p.parent.glob(".*tmp"))


@pytest.mark.parametrize("family", ["capitals", "authors", "planets"])
@pytest.mark.parametrize("limit", [1, 5, 64, 10_000])
def test_claims_limit_keeps_groups_whole(family, limit):
    """--limit N on grouped claims: no subject is cut (a lone candidate escapes every rule),
    at most N claims, the first subjects in order, claims in their original order."""
    full = load_claims(f"builtin:{family}", seed=0)
    got = load_claims(f"builtin:{family}", limit=limit, seed=0)
    size = {g: sum(c.group == g for c in full) for g in {c.group for c in full}}
    assert len(got) <= limit
    if limit < min(size.values()):  # not even one subject fits: the first N claims
        assert [c.id for c in got] == [c.id for c in full[:limit]]
        return
    assert all(sum(c.group == g for c in got) == size[g] for g in {c.group for c in got})
    order = list(dict.fromkeys(c.group for c in full))
    kept = list(dict.fromkeys(c.group for c in got))
    assert kept == order[: len(kept)] and (
        len(got) == len(full) or len(got) > limit - max(size.values())
    )
    assert [c.id for c in got] == [c.id for c in full if c.group in set(kept)]


def test_claims_limit_without_groups_is_the_first_n(tmp_path):
    p = write(
        tmp_path,
        "c.jsonl",
        "".join(json.dumps({"id": str(i), "claim": f"c{i}"}) + "\n" for i in range(5)),
    )
    assert [c.id for c in load_claims(p, limit=3)] == ["0", "1", "2"]
