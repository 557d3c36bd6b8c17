"""The self-improvement pipeline: candidates, claims, pairs, evaluation, and the loop end to
end on tiny-random (ICM replaced by a deterministic stub labeler where noted, so the loop
is tested independently of the ICM search)."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from selfteach.data.records import Problem
from selfteach.errors import SelfteachError
from selfteach.improve.candidates import diversity_stats, generate_candidates, split_samples
from selfteach.improve.evaluation import compare
from selfteach.improve.loop import (
    ImproveConfig,
    margin_median_labels,
    run_improve,
    sft_rows,
    split_problems,
)
from selfteach.improve.pairs import (
    build_pairs,
    claims_from_candidates,
    is_degenerate,
    no_pairs_message,
)
from selfteach.train.dpo import DPOArgs
from selfteach.train.grpo import GRPOArgs


def cand(pid, j, text, answer, correct=None, temp=0.5, reason="stop"):
    return {
        "id": f"{pid}#{j}",
        "problem_id": pid,
        "prompt": f"Q {pid}",
        "text": text,
        "answer": answer,
        "temperature": temp,
        "finish_reason": reason,
        "tokens": len(text.split()),
        "correct": correct,
    }


# ---- candidates --------------------------------------------------------------------------
def test_split_samples_known():
    assert split_samples(8, [0.3, 0.6, 0.9]) == [(0.3, 3), (0.6, 3), (0.9, 2)]
    assert split_samples(2, [0.3, 0.6, 0.9]) == [(0.3, 1), (0.6, 1)]
    with pytest.raises(SelfteachError):
        split_samples(4, [])


@given(st.integers(1, 64), st.lists(st.floats(0.05, 2.0), min_size=1, max_size=6))
def test_split_samples_property(n, temps):
    plan = split_samples(n, temps)
    counts = [c for _, c in plan]
    assert sum(counts) == n and max(counts) - min(counts) <= 1 and all(c > 0 for c in counts)


def test_generate_candidates_from_model_only_and_resume(tiny_backend, tmp_path):
    from selfteach.runs import RunDir

    probs = [Problem(id=f"p{i}", question=f"What is {i} + 1?", answer=str(i + 1)) for i in range(3)]
    run = RunDir(tmp_path)
    rows = generate_candidates(
        tiny_backend, probs, n=4, temperatures=[0.5, 1.0], max_new_tokens=6, run=run, progress=False
    )
    assert len(rows) == 12 and Counter(r["temperature"] for r in rows) == {0.5: 6, 1.0: 6}
    assert all(r["correct"] is not None for r in rows)
    # no gold text is ever injected: every candidate is a model sample with its token count
    assert all(
        r["tokens"] > 0 and str(int(r["problem_id"][1:]) + 1) != r["text"].strip() for r in rows
    )
    # resume: a torn problem (fewer than n rows) is regenerated, finished ones are kept
    lines = (tmp_path / "candidates.jsonl").read_text().splitlines()
    (tmp_path / "candidates.jsonl").write_text("\n".join(lines[:6]) + "\n{\"torn")
    again = generate_candidates(
        tiny_backend, probs, n=4, temperatures=[0.5, 1.0], max_new_tokens=6, run=run, progress=False
    )
    assert [r["id"] for r in again] == [r["id"] for r in rows]
    assert [r["text"] for r in again[:4]] == [r["text"] for r in rows[:4]]


def test_diversity_stats_known():
    cands = [cand("a", 0, "x is 3", "3", True), cand("a", 1, "x is 4", "4", False),
             cand("b", 0, "y is 5", "5", True), cand("b", 1, "y is 5", "5", True, reason="length")]
    d = diversity_stats(cands)
    assert d["mean_distinct_answers"] == 1.5 and d["share_problems_multiple_answers"] == 0.5
    assert d["candidate_accuracy"] == 0.75 and d["share_problems_right_and_wrong"] == 0.5
    assert d["share_truncated"] == 0.25 and d["mean_unique_text_ratio"] == 0.75


# ---- claims and pairs --------------------------------------------------------------------
def test_claims_from_candidates():
    cands = [cand("a", 0, "so 3", "3", True), cand("a", 1, "", None, None)]
    claims = claims_from_candidates(cands, {"a": "What?"})
    assert (claims[0].group, claims[0].key, claims[0].gold, claims[0].question) == (
        "a",
        "3",
        True,
        "What?",
    )
    assert claims[1].key is None and claims[1].gold is None and claims[1].claim == "(empty)"


def test_build_pairs_known():
    cands = [
        cand("a", 0, "good one, 3", "3", True),
        cand("a", 1, "good two, so 3", "3", True),
        cand("a", 2, "bad, 4", "4", False),
        cand("a", 3, "bad, 5", "5", False),
        cand("a", 4, "bad, 6", "6", False),
        cand("a", 5, "bad, 6", "6", False),  # duplicate text of a#4
        cand("a", 6, "!!", None, False),  # degenerate
        cand("b", 0, "all agree 7", "7", True),
        cand("b", 1, "all agree, 7", "7", True),
    ]
    labels = {c["id"]: bool(c["correct"]) for c in cands}
    pairs, stats = build_pairs(cands, labels, cap=5)
    assert stats["pairs_possible"] == 6 and len(pairs) == 5 and stats["problems_with_both"] == 1
    assert stats["dropped_duplicate"] == 1 and stats["dropped_degenerate"] == 1
    assert all(p.meta["problem_id"] == "a" and p.chosen != p.rejected for p in pairs)
    assert stats["pairs_correct_order"] == 5
    # the spread rule uses every distinct chosen and rejected text before repeating one
    assert {p.meta["chosen_id"] for p in pairs} == {"a#0", "a#1"}
    assert {p.meta["rejected_id"] for p in pairs} == {"a#2", "a#3", "a#4"}
    assert pairs[0].prompt == "Q a"


def test_same_text_labeled_both_ways_is_no_pair():
    cands = [cand("a", 0, "same text 3", "3"), cand("a", 1, "same text 3", "3")]
    pairs, stats = build_pairs(cands, {"a#0": True, "a#1": False})
    assert pairs == [] and stats["dropped_duplicate"] == 2


def test_no_pairs_message_names_counts():
    cands = [cand("a", i, f"answer {i}", str(i)) for i in range(4)]
    pairs, stats = build_pairs(cands, {c["id"]: True for c in cands})
    msg = no_pairs_message(stats)
    assert (
        pairs == []
        and "one class" in msg
        and "4 labeled True, 0 False" in msg
        and "1 problems" in msg
    )
    pairs, stats = build_pairs(
        [cand("a", 0, "x 1", "1"), cand("b", 0, "y 2", "2")], {"a#0": True, "b#0": False}
    )
    assert "no problem has both" in no_pairs_message(stats)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 5), st.booleans()), min_size=1, max_size=40
    ),
    st.integers(1, 6),
)
def test_build_pairs_invariants(spec, cap):
    cands, labels = [], {}
    for j, (pid, text_id, label) in enumerate(spec):
        c = cand(f"p{pid}", j, f"solution text {text_id}", str(text_id))
        cands.append(c)
        labels[c["id"]] = label
    pairs, stats = build_pairs(cands, labels, cap=cap)
    per = Counter(p.meta["problem_id"] for p in pairs)
    assert all(n <= cap for n in per.values())
    for p in pairs:
        assert (
            labels[p.meta["chosen_id"]]
            and not labels[p.meta["rejected_id"]]
            and p.chosen != p.rejected
        )
    assert len({(p.chosen, p.rejected, p.meta["problem_id"]) for p in pairs}) == len(pairs)
    assert stats["pairs"] == len(pairs) <= stats["pairs_possible"]


def test_is_degenerate():
    assert is_degenerate("") and is_degenerate("  a ") and is_degenerate("aaaaaaa")
    assert is_degenerate("the the the the the the the the the")
    assert not is_degenerate("2 + 3 = 5. The answer is 5.")


# ---- evaluation and splits ---------------------------------------------------------------
def test_compare_paired_known():
    a = {"items": {"1": [0.0, 0.0], "2": [1.0, 1.0], "3": [0.0, 1.0], "4": [1.0, 1.0]}}
    b = {"items": {"1": [1.0, 0.0], "2": [1.0, 1.0], "3": [1.0, 1.0], "4": [0.0, 1.0]}}
    d = compare(a, b, 0)
    assert d["mean"] == pytest.approx(0.25) and d["n"] == 4 and d["lo"] <= 0.25 <= d["hi"]
    assert compare(a, b, 1)["mean"] == 0.0


def test_split_needs_answers_for_eval(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text("".join(json.dumps({"question": f"q{i}"}) + "\n" for i in range(5)))
    with pytest.raises(
        SelfteachError, match="eval split needs 3 problems with gold answers, found 0"
    ):
        split_problems(ImproveConfig(problems=str(f), eval_size=3))
    e = tmp_path / "e.jsonl"
    e.write_text(
        json.dumps({"question": "q", "answer": "1"}) + "\n" + json.dumps({"question": "r"}) + "\n"
    )
    with pytest.raises(SelfteachError, match="evaluation split needs answers"):
        split_problems(ImproveConfig(problems=str(f), eval_problems=str(e), eval_size=3))
    train, evals = split_problems(ImproveConfig(problems=str(f), eval_problems=str(e), eval_size=1))
    assert len(train) == 5 and len(evals) == 1  # unlabeled training problems are fine


def test_sft_rows_gold_and_icm():
    c = [
        cand("a", 0, "so 3", "3", True),
        cand("a", 1, "so 4", "4", False),
        cand("a", 2, "so 3", "3", True),
    ]
    round1 = {"candidates": c, "labels": {"a#0": False, "a#1": True, "a#2": False}}
    probs = [Problem(id="a", question="q", answer="3")]
    # deduplicated
    assert sft_rows("sft-gold", probs, round1) == [{"prompt": "Q a", "completion": "so 3"}]
    assert sft_rows("sft-icm", probs, round1) == [{"prompt": "Q a", "completion": "so 4"}]
    probs[0].solution = "3 because."
    assert sft_rows("sft-gold", probs, round1) == [{"prompt": "Q a", "completion": "3 because."}]


# ---- the loop end to end -----------------------------------------------------------------
def parity_labeler(claims, backend, run):
    """Deterministic stand-in for ICM: even-numbered candidates True, odd False."""
    return {c.id: int(c.id.rsplit("#", 1)[1]) % 2 == 0 for c in claims}, {"labeler": "parity"}


def tiny_config(**kw):
    base = dict(
        model="tiny-random",
        problems="builtin:arithmetic",
        train_size=4,
        eval_size=3,
        samples=4,
        max_new_tokens=8,
        dpo=DPOArgs(max_steps=2, batch_size=2),
        grpo=GRPOArgs(max_steps=1),
        grpo_prompts_per_step=1,
        eval_samples=2,
        baselines=["grpo", "sft-icm"],
    )
    return ImproveConfig(**(base | kw))


def test_loop_end_to_end_two_rounds_and_resume(tmp_path):
    out = tmp_path / "run"
    summary = run_improve(tiny_config(rounds=2), out, labeler=parity_labeler, progress=False)
    names = [r[0] for r in summary["tables"][0]["rows"]]
    assert names == [
        "base model",
        "ICM+DPO round 1",
        "ICM+DPO round 2",
        "GRPO (gold-answer reward)",
        "SFT on ICM-True candidates",
    ]
    # round 2 is labeled by the improved model
    assert summary["tables"][1]["rows"][1][1] == "round 1 model"
    assert (out / "round1" / "dpo" / "model" / "config.json").exists()
    assert (out / "round2" / "candidates.jsonl").exists()
    pairs = [json.loads(x) for x in (out / "round1" / "pairs.jsonl").read_text().splitlines()]
    assert pairs and set(pairs[0]) == {"prompt", "chosen", "rejected", "meta"}
    for f in (
        "summary.json",
        "accuracy.png",
        "curves_dpo_round1.png",
        "curves_grpo.png",
        "results.json",
    ):
        assert (out / f).exists(), f
    split = json.loads((out / "split.json").read_text())
    assert not set(split["train"]) & set(split["eval"])
    # resume re-runs nothing: no new stage events in metrics.jsonl
    before = (out / "metrics.jsonl").read_text().count('"stage"')
    again = run_improve(
        tiny_config(rounds=2), out, labeler=parity_labeler, progress=False, resume=True
    )
    assert again["tables"][0]["rows"] == summary["tables"][0]["rows"]
    assert (out / "metrics.jsonl").read_text().count('"stage"') == before
    with pytest.raises(SelfteachError, match="--resume"):
        run_improve(tiny_config(rounds=2), out, labeler=parity_labeler, progress=False)


def test_loop_no_pairs_is_a_clear_error(tmp_path):
    def all_true(claims, backend, run):
        return {c.id: True for c in claims}, {}

    with pytest.raises(
        SelfteachError, match=r"no preference pairs: ICM put every candidate in one class \(True 16"
    ):
        run_improve(tiny_config(baselines=[]), tmp_path / "r", labeler=all_true, progress=False)
    assert not (tmp_path / "r" / "round1" / "dpo").exists()  # no empty training run


def test_cli_improve_transfer(tmp_path, monkeypatch):
    from selfteach import cli
    from selfteach.improve import loop

    monkeypatch.setattr(loop, "icm_labeler", lambda cfg, progress=True: parity_labeler)
    out = tmp_path / "cli"
    res = CliRunner().invoke(
        cli.app,
        [
            "improve",
            "--model",
            "tiny-random",
            "--label-model",
            "tiny-random",
            "--train-size",
            "3",
            "--eval-size",
            "2",
            "--samples",
            "2",
            "--max-new-tokens",
            "6",
            "--epochs",
            "1",
            "--batch-size",
            "2",
            "--baselines",
            "none",
            "--eval-samples",
            "1",
            "--out",
            str(out),
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert [r[0] for r in summary["tables"][0]["rows"]] == ["base model", "ICM+DPO round 1"]
    cfg = (out / "config.yaml").read_text()
    assert "label_model: tiny-random" in cfg


@pytest.mark.parametrize(
    "args,message",
    [
        (["--baselines", "ppo"], "--baselines 'ppo': choose from grpo, sft-icm, sft-gold"),
        (
            ["--temperatures", "hot"],
            "--temperatures 'hot': expected comma-separated numbers, e.g. 0.3,0.6,0.9",
        ),
        (["--icm", "alpha"], "--icm 'alpha': expected KEY=VALUE, e.g. alpha=30"),
    ],
)
def test_cli_improve_bad_input_exits_2(tmp_path, selfteach_main, args, message):
    """Bad input: exactly one error line naming the option and value, exit 2, and no run
    directory (validation happens before anything is written or loaded)."""
    code, out, err = selfteach_main("improve", *args, "--out", tmp_path / "x")
    assert (code, out, err) == (2, "", f"error: {message}\n")
    assert not (tmp_path / "x").exists()


def test_icm_labeler_uses_the_public_api(monkeypatch):
    """The default labeler calls selfteach.elicit.icm(claims, backend, task="math", ...) and
    never passes gold to anything but the claims' reporting field."""
    import sys
    import types

    from selfteach.data.records import Claim
    from selfteach.improve.loop import icm_labeler

    seen = {}

    class ICMConfig(dict):
        def __init__(self, **kw):
            super().__init__(**kw)

    def icm(claims, backend, task="math", config=None, run=None, progress=True):
        seen.update(task=task, config=config, n=len(claims))
        return types.SimpleNamespace(
            labels={c.id: True for c in claims}, margins={}, metrics={"accuracy": 1.0}
        )

    monkeypatch.setitem(
        sys.modules, "selfteach.elicit", types.SimpleNamespace(icm=icm, ICMConfig=ICMConfig)
    )
    labels, metrics = icm_labeler({"alpha": 30}, progress=False)(
        [Claim(id="1", claim="x")], None, None
    )
    assert labels == {"1": True} and seen == {"task": "math", "config": {"alpha": 30}, "n": 1}


def test_margin_median_labels_known():
    labels = {"a": False, "b": False, "c": False, "d": False}
    assert margin_median_labels(labels, {"a": -3.0, "b": -1.0, "c": 0.5, "d": -2.0}) == \
        {"a": False, "b": True, "c": True, "d": False}
    assert (
        sum(
            margin_median_labels(
                {str(i): True for i in range(5)}, {str(i): float(i) for i in range(5)}
            ).values()
        )
        == 2
    )
    with pytest.raises(SelfteachError, match="no margins"):
        margin_median_labels(labels, {})


def test_loop_one_class_relabels_by_margin(tmp_path):
    def all_false(claims, backend, run):
        return {c.id: False for c in claims}, {
            "margins": {
                c.id: float(c.id.rsplit("#", 1)[1]) + 0.01 * i for i, c in enumerate(claims)
            }
        }

    s = run_improve(
        tiny_config(baselines=[], on_one_class="margin-median", eval_samples=1),
        tmp_path / "r",
        labeler=all_false,
        progress=False,
    )
    stats = json.loads((tmp_path / "r" / "round1" / "pairs_stats.json").read_text())
    assert stats["labeled_true"] == 8 and stats["labeled_false"] == 8 and stats["pairs"] > 0
    assert any("median ICM margin" in n for n in s["notes"])


def test_cli_bad_option_is_one_line(tmp_path):
    from selfteach.cli import app

    res = CliRunner().invoke(
        app, ["improve", "--on-one-class", "maybe", "--out", str(tmp_path / "x")]
    )
    # a Literal field's option: the option parser rejects the value (a usage error, exit 2)
    assert (
        res.exit_code == 2
        and "--on-one-class" in res.output
        and "'maybe' is not one of" in res.output
    )


def read_jsonl(path):
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_cli_improve_with_real_icm_files_agree(tmp_path):
    """`selfteach improve` with the real ICM labeler (no stub) on tiny-random: every file of
    the run directory agrees with the others. ICM on a random model tends to label every
    candidate False (its label read-out prefers "False"), so the run uses the label-free
    margin-median fallback when, and only when, the ICM labeling is one-class."""
    from selfteach.cli import app
    from selfteach.data.loaders import load_claims
    from selfteach.elicit.rules import make_rule

    out = tmp_path / "run"
    args = ["improve", "--model", "tiny-random", "--train-size", "3", "--eval-size", "2",
            "--samples", "4", "--max-new-tokens", "6", "--epochs", "1", "--batch-size", "2",
            "--pairs-per-problem", "2", "--icm", "iters=6", "--on-one-class", "margin-median",
            "--baselines", "none", "--eval-samples", "1", "--out", str(out), "--no-progress"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    r1 = out / "round1"
    split = json.loads((out / "split.json").read_text())
    cands = read_jsonl(r1 / "candidates.jsonl")
    claims = read_jsonl(r1 / "claims.jsonl")
    by_id = {c["id"]: c for c in cands}
    # one claim per candidate: group = problem, key = extracted answer; problems = the train split
    assert [c["id"] for c in claims] == [c["id"] for c in cands] and len(cands) == 3 * 4
    for c in claims:
        assert (c["group"], c["key"]) == (by_id[c["id"]]["problem_id"], by_id[c["id"]]["answer"])
    assert {c["group"] for c in claims} == set(split["train"])
    assert not set(split["train"]) & set(split["eval"])

    # labels: the real ICM run (its own run dir, 6 annealing steps), one label per claim
    labeled = json.loads((r1 / "labels.json").read_text())
    labels, metrics = labeled["labels"], labeled["metrics"]
    assert set(labels) == {c["id"] for c in claims} and len(labels) == len(claims)
    icm_rows = read_jsonl(r1 / "icm" / "labels.jsonl")
    assert {r["id"]: r["label"] for r in icm_rows} == labels
    assert {r["id"]: r["margin"] for r in icm_rows} == metrics["margins"]
    assert metrics["steps"] == 6 and metrics["claims"] == len(claims) and metrics["task"] == "math"
    rule = make_rule("math", load_claims(r1 / "claims.jsonl"))
    assert rule.count({i: labels[c.id] for i, c in enumerate(rule.claims)}) == metrics["I"]

    # the labels the pairs come from: ICM's, or its margins re-split when ICM was one-class
    one_class = len(set(labels.values())) == 1
    used = margin_median_labels(labels, metrics["margins"]) if one_class else labels
    summary = json.loads((out / "summary.json").read_text())
    assert one_class == any("median ICM margin" in n for n in summary["notes"])
    stats = json.loads((r1 / "pairs_stats.json").read_text())
    assert (stats["labeled"], stats["labeled_true"]) == (len(used), sum(used.values()))
    pairs = read_jsonl(r1 / "pairs.jsonl")
    assert pairs and len(pairs) == stats["pairs"]
    per_problem = Counter(p["meta"]["problem_id"] for p in pairs)
    assert max(per_problem.values()) <= 2
    for p in pairs:
        w, lo = by_id[p["meta"]["chosen_id"]], by_id[p["meta"]["rejected_id"]]
        assert used[w["id"]] and not used[lo["id"]]  # True over False ...
        assert w["problem_id"] == lo["problem_id"] == p["meta"]["problem_id"]  # ... same problem
        assert (p["prompt"], p["chosen"]) == (w["prompt"], w["text"].strip())
        assert p["rejected"] == lo["text"].strip()

    # DPO trained on exactly these pairs; base and improved model evaluated on the eval split
    dpo = json.loads((r1 / "dpo" / "result.json").read_text())
    assert dpo["pairs"] == len(pairs) and (r1 / "dpo" / "model" / "config.json").exists()
    for name in ("base", "icm-dpo-r1"):
        ev = json.loads((out / "eval" / name / "result.json").read_text())
        assert sorted(ev["items"]) == sorted(split["eval"]) and ev["greedy"]["n"] == 2
    assert [r[0] for r in summary["tables"][0]["rows"]] == ["base model", "ICM+DPO round 1"]
