"""Built-in fact families (selfteach.data.builtin): structure, correctness invariants,
seeded determinism, and that `selfteach elicit --task exclusive` accepts every family."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from selfteach.data.builtin import CLAIM_SETS, FACT_FAMILIES, builtin_claims
from selfteach.data.loaders import limit_whole_groups, load_claims
from selfteach.elicit.rules import make_rule
from selfteach.errors import SelfteachError

FAMILIES = sorted(FACT_FAMILIES)


def by_group(claims):
    groups = defaultdict(list)
    for c in claims:
        groups[c.group].append(c)
    return groups


def test_at_least_five_new_families_of_useful_size():
    assert len(FAMILIES) >= 6 and "capitals" in FAMILIES
    for name in FAMILIES:
        n = len(FACT_FAMILIES[name].facts)
        assert n >= 30 or name == "planets", (name, n)  # the solar system has 8 planets


@pytest.mark.parametrize("name", FAMILIES)
def test_family_loads_with_one_true_per_subject(name):
    fam = FACT_FAMILIES[name]
    claims = load_claims(f"builtin:{name}")
    groups = by_group(claims)
    assert set(groups) == set(fam.facts)
    assert len(claims) == len(fam.facts) * (1 + fam.wrong) and len({c.id for c in claims}) == len(
        claims
    )
    answers = set(fam.facts.values())
    for subject, cands in groups.items():
        true = [c for c in cands if c.gold]
        assert len(true) == 1 and true[0].key == fam.facts[subject], subject
        wrong = [c.key for c in cands if not c.gold]
        assert len(wrong) == len(set(wrong)) == fam.wrong
        # wrong candidates are other subjects' answers, never this subject's own
        assert fam.facts[subject] not in wrong and set(wrong) <= answers
        for c in cands:
            assert subject.lower() in c.claim.lower() and c.key in c.claim
            assert c.claim[0].isupper() and c.claim.endswith(".")
            assert c.question and subject in c.question
    make_rule("exclusive", claims)  # the claims fit the rule they are made for


@pytest.mark.parametrize("name", FAMILIES)
def test_answers_unique_within_family(name):
    """No answer is shared by two subjects: a wrong candidate (another subject's answer)
    can then never also be true of this subject."""
    facts = FACT_FAMILIES[name].facts
    assert len(set(facts.values())) == len(facts)
    lowered = [a.lower() for a in facts.values()]
    assert len(set(lowered)) == len(lowered)


def test_known_facts_spot_check():
    """A few facts read back through the claims (guards against a shifted dict entry)."""
    want = {
        ("capitals", "Japan"): "Tokyo",
        ("currencies", "Japan"): "yen",
        ("currencies", "the United Kingdom"): "pound sterling",
        ("state-capitals", "Illinois"): "Springfield",
        ("state-capitals", "California"): "Sacramento",
        ("authors", "Herman Melville"): "Moby-Dick",
        ("inventors", "Alfred Nobel"): "dynamite",
        ("elements", "gold"): "Au",
        ("elements", "iron"): "Fe",
        ("planets", "Mars"): "fourth",
        ("planets", "Neptune"): "eighth",
    }
    for (name, subject), answer in want.items():
        true = [c for c in builtin_claims(name) if c.group == subject and c.gold]
        assert [c.key for c in true] == [answer]
    mars = [c.claim for c in builtin_claims("planets") if c.group == "Mars" and c.gold]
    assert mars == ["Mars is the fourth planet from the Sun."]


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(FAMILIES), st.integers(0, 10_000), st.integers(1, 7))
def test_seeded_and_invariant_under_any_seed(name, seed, wrong):
    a = builtin_claims(name, seed=seed, wrong_per_subject=wrong)
    assert a == builtin_claims(name, seed=seed, wrong_per_subject=wrong)  # deterministic
    facts = FACT_FAMILIES[name].facts
    for subject, cands in by_group(a).items():
        assert sorted(c.gold for c in cands) == [False] * wrong + [True]
        assert all(c.key != facts[subject] for c in cands if not c.gold)


def test_seeds_differ_and_capitals_unchanged():
    for name in FAMILIES:
        assert builtin_claims(name, seed=0) != builtin_claims(name, seed=1), name
    # `capitals` draws exactly as before the families were generalised (published results
    # on builtin:capitals stay reproducible)
    digest = hashlib.sha256(
        json.dumps([c.model_dump() for c in builtin_claims("capitals")]).encode()
    )
    assert digest.hexdigest() == "0564990cfde9901319717ad7cb920b2b9bf6c8ac1e49be22901625b2a4fbbbc9"


def test_bad_names_and_counts():
    with pytest.raises(
        SelfteachError, match="unknown built-in claim set .*currencies.*planets.*sums"
    ):
        load_claims("builtin:rivers")
    assert set(FAMILIES) | {"sums"} == set(CLAIM_SETS)
    with pytest.raises(
        SelfteachError, match="builtin:planets: wrong candidates per subject 8: choose 1..7"
    ):
        builtin_claims("planets", wrong_per_subject=8)
    with pytest.raises(SelfteachError, match="per subject 0"):
        builtin_claims("authors", wrong_per_subject=0)


@pytest.mark.parametrize("name", [n for n in FAMILIES if n != "capitals"])  # capitals: test_icm.py
def test_cli_elicit_exclusive_runs_on_every_family(tmp_path, name):
    from selfteach.cli import app

    out = tmp_path / name
    r = CliRunner().invoke(
        app,
        [
            "elicit",
            "--model",
            "tiny-random",
            "--claims",
            f"builtin:{name}",
            "--task",
            "exclusive",
            "--limit",
            "8",
            "--iters",
            "2",
            "--out",
            str(out),
            "--no-progress",
        ],
    )
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in (out / "labels.jsonl").read_text().splitlines()]
    want = limit_whole_groups(builtin_claims(name), 8)  # --limit keeps subjects whole
    assert [row["id"] for row in rows] == [c.id for c in want] and 0 < len(want) <= 8
    result = json.loads((out / "icm_result.json").read_text())
    assert result["metrics"]["accuracy"] is not None  # gold is known, so accuracy is reported
