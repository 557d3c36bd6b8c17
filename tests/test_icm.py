"""ICM (selfteach.elicit): formulas, rules, search invariants, resume, bad input, CLI.

Most tests use `SyntheticBackend` (selfteach.elicit.synthetic), whose P(label | context) we
control: a weak, noisy latent-truth signal per claim plus a context-consistency effect.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from typer.testing import CliRunner

from selfteach.data.records import Claim
from selfteach.elicit import (
    ICMConfig,
    acceptance_probability,
    comparison_claims,
    exclusive_claims,
    icm,
    temperature,
)
from selfteach.elicit.rules import make_rule
from selfteach.elicit.scoring import ExactScorer, FastScorer, normalise
from selfteach.elicit.search import _Search
from selfteach.elicit.synthetic import SyntheticBackend, synthetic_task
from selfteach.elicit.templates import Template
from selfteach.errors import SelfteachError
from selfteach.runs import RunDir


# ---- formulas --------------------------------------------------------------------------
def test_temperature_schedule_matches_formula():
    cfg = ICMConfig()
    assert temperature(1, cfg) == pytest.approx(10.0)
    assert temperature(3, cfg) == pytest.approx(10.0 / (1 + 0.99 * math.log(3)))
    assert temperature(10**300, ICMConfig(t0=1.0, t_min=0.5)) == 0.5
    assert temperature(100, ICMConfig(beta=0.0)) == pytest.approx(10.0)


def test_reference_schedule_cools_over_accepted_flips():
    cfg = ICMConfig(schedule="reference")
    assert temperature(1, cfg, flips=0) == pytest.approx(10.0)
    assert temperature(500, cfg, flips=0) == pytest.approx(10.0)  # no flip, no cooling
    assert temperature(7, cfg, flips=3) == pytest.approx(10.0 / (1 + 2 * math.log(4)))
    assert temperature(7, cfg, flips=3) == temperature(9999, cfg, flips=3)  # steps do not matter
    assert temperature(1, ICMConfig(schedule="reference", t0=1.0, t_min=0.5), flips=10**6) == 0.5
    assert temperature(3, ICMConfig(schedule="paper"), flips=50) == pytest.approx(
        10.0 / (1 + 0.99 * math.log(3))
    )


@given(st.floats(-50, 50, allow_nan=False), st.floats(0.01, 10))
def test_acceptance_probability_matches_metropolis(delta, t):
    p = acceptance_probability(delta, t)
    assert p == (1.0 if delta > 0 else pytest.approx(math.exp(delta / t)))
    assert 0.0 <= p <= 1.0


def test_normalise_over_two_labels():
    a, b = normalise({"True": math.log(0.2), "False": math.log(0.6)})
    assert math.exp(a) == pytest.approx(0.25) and math.exp(b) == pytest.approx(0.75)


@pytest.mark.parametrize("bad", [-math.inf, math.nan, math.inf])
def test_normalise_floors_an_unread_label_and_stays_finite(bad):
    a, b = normalise({"True": math.log(0.4), "False": bad})
    assert math.isfinite(a) and math.isfinite(b)
    assert a - b == pytest.approx(math.log(0.4) - math.log(1e-5))  # floored at the authors' eps
    # the floor never exceeds the label that was read
    a, b = normalise({"True": bad, "False": -30.0})
    assert a == b == pytest.approx(math.log(0.5))
    assert normalise({"True": bad, "False": bad}) == (math.log(0.5), math.log(0.5))


def test_missing_label_floor_known_answers():
    from selfteach.backends.openai import missing_label_floor

    # the rest
    assert missing_label_floor([math.log(0.5), math.log(0.3)]) == pytest.approx(math.log(0.2))
    assert missing_label_floor([math.log(0.9)] + [math.log(0.0049)] * 20) == pytest.approx(
        math.log(0.002)
    )
    # k-th prob
    assert missing_label_floor([math.log(0.6), math.log(0.01)]) == pytest.approx(math.log(0.01))
    # all mass read: the eps floor
    assert missing_label_floor([0.0]) == pytest.approx(math.log(1e-5))
    assert missing_label_floor([]) == pytest.approx(0.0)


def test_icm_over_a_server_whose_top20_lacks_false():
    """A real HTTP server (the fake OpenAI-compatible one of test_openai_backend, chat mode, so
    no forced exact score): for one claim the top 20 holds " True" but no " False". Before
    the floor its margin was +inf, U inf, every delta-U NaN and no proposal was accepted."""
    import threading
    from http.server import ThreadingHTTPServer

    from test_openai_backend import Fake, _handler

    from selfteach.backends.openai import OpenAIBackend

    class OneMissing(Fake):
        def completion(self, body, chat):
            query = body["messages"][-1]["content"].split("Claim: ")[-1]
            k = int(query.split()[1])  # "item K holds": the synthetic task's claim text
            self.top = [(" True", math.log(0.5)), ("x", math.log(0.3))] if k == 3 else \
                [(" True", math.log(0.1 + 0.05 * (k % 5))), (" False", math.log(0.3))]
            return super().completion(body, chat)

    state = OneMissing()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        be = OpenAIBackend(f"http://127.0.0.1:{httpd.server_address[1]}/v1", mode="chat")
        cl, _, _ = synthetic_task(12, seed=0)
        res = icm(cl, be, config=ICMConfig(iters=13, seed=0, init_k=0), progress=False)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert res.metrics["accepted"] > 0
    assert all(math.isfinite(r["U"]) for r in res.trajectory) and math.isfinite(res.metrics["U"])
    assert all(math.isfinite(m) for m in res.margins.values())
    # floor: the rest, 0.2
    assert res.margins["c3"] == pytest.approx(math.log(0.5) - math.log(0.2), abs=1e-4)


# ---- rules -----------------------------------------------------------------------------
def test_math_rule_known_cases():
    cl = [Claim(id=str(i), claim=f"s{i}", group="p", key=k) for i, k in enumerate(["4", "4", "5"])]
    r = make_rule("math", cl)
    assert r.violates(0, True, 2, True) and not r.violates(0, True, 2, False)
    assert r.violates(0, True, 1, False) and not r.violates(0, False, 1, False)
    assert set(r.consistent_assignments(0, 2)) == {(True, False), (False, True), (False, False)}
    assert set(r.consistent_assignments(0, 1)) == {(True, True), (False, False)}
    assert r.count({0: True, 1: False, 2: True}) == 2  # (0,1) differ on same key; (0,2) both True


def test_math_rule_derives_key_from_text_not_gold():
    cl = [Claim(id="a", claim="so the answer is \\boxed{12}", group="p", gold=True),
          Claim(id="b", claim="so the answer is \\boxed{13}", group="p", gold=False)]
    r = make_rule("math", cl)
    assert r.keys[0] == "12" and r.keys[1] == "13"
    assert r.violates(0, True, 1, True)


def test_comparison_and_exclusive_rules():
    cmp_ = make_rule(
        "comparison", comparison_claims("p1", "Say hi", "Hello!", "go away", gold_a_better=True)
    )
    assert cmp_.violates(0, True, 1, True) and cmp_.violates(0, False, 1, False)
    assert set(cmp_.consistent_assignments(0, 1)) == {(True, False), (False, True)}
    ex = make_rule("exclusive", exclusive_claims("q", "2+2?", ["3", "4", "5"], gold_index=1))
    assert (
        ex.count({0: True, 1: True, 2: True}) == 3 and ex.count({0: False, 1: True, 2: False}) == 0
    )
    assert (False, False) in ex.consistent_assignments(0, 1)


def test_zero_shot_rule_known_answers():
    ex = make_rule(
        "exclusive",
        exclusive_claims("q1", "?", ["a", "b", "c"])
        + exclusive_claims("q2", "?", ["d", "e"])
        + exclusive_claims("q3", "?", ["f"]),
    )
    labels, scores = ex.zero_shot_rule(dict(enumerate([-3.0, -1.0, -2.0, 2.0, 0.5, -0.5])))
    # the highest margin of each group is True even when negative; a lone candidate is thresholded
    assert labels == dict(enumerate([False, True, False, True, False, False]))
    assert scores == pytest.approx(dict(enumerate([-2.0, 1.0, -1.0, 1.5, -1.5, -0.5])))
    cmp_ = make_rule("comparison", comparison_claims("p", "q", "A", "B"))
    assert cmp_.zero_shot_rule({0: -4.0, 1: -1.0})[0] == {0: False, 1: True}
    mcl = [
        Claim(id=f"m{i}", claim=f"s{i}", group=g, key=k)
        for i, (g, k) in enumerate(
            [("p", "4"), ("p", "4"), ("p", "5"), ("p", "6"), ("r", "7"), ("r", "8")]
        )
    ]
    math_ = make_rule("math", mcl)
    labels, scores = math_.zero_shot_rule(dict(enumerate([1.0, -0.5, 0.8, -2.0, -1.0, -2.0])))
    # p: summed margins 4 -> 0.5, 5 -> 0.8, 6 -> -2: answer 5 True; r: every sum < 0, all False
    assert labels == dict(enumerate([False, False, True, False, False, False]))
    assert scores == pytest.approx(dict(enumerate([-0.3, -0.3, 0.3, -2.8, -1.0, -2.0])))
    binary = make_rule("binary", mcl)
    assert binary.zero_shot_rule({0: 0.2, 1: -0.1}) == ({0: True, 1: False}, {0: 0.2, 1: -0.1})


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_zero_shot_rule_labels_are_consistent_and_scores_agree(data):
    n = data.draw(st.integers(2, 10))
    task = data.draw(st.sampled_from(["math", "exclusive", "comparison"]))
    grp = [f"p{i // 2}" for i in range(n - n % 2)] if task == "comparison" else \
        data.draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=n, max_size=n))
    keys = data.draw(
        st.lists(st.sampled_from(["1", "2", "3"]), min_size=len(grp), max_size=len(grp))
    )
    rule = make_rule(
        task, [Claim(id=str(i), claim=f"x{i}", group=g, key=keys[i]) for i, g in enumerate(grp)]
    )
    margins = dict(
        enumerate(
            data.draw(
                st.lists(st.floats(-20, 20), min_size=len(grp), max_size=len(grp), unique=True)
            )
        )
    )
    labels, scores = rule.zero_shot_rule(margins)
    assert rule.count(labels) == 0
    assert all(labels[i] == (scores[i] >= 0) for i in labels if abs(scores[i]) > 1e-9)


def test_binary_rule_relates_nothing_even_with_groups():
    cl, truth, strength = synthetic_task(8, groups=True)
    s = _Search(cl, SyntheticBackend(truth, strength), make_rule("binary", cl), ICMConfig())
    assert s.weights({0: True}) == [1.0] * 8  # no generic all-pairs rule: weights stay meaningful
    ex = _Search(
        cl,
        SyntheticBackend(truth, strength),
        make_rule("exclusive", cl),
        ICMConfig(related_weight=100),
    )
    w = ex.weights({0: True})
    # claim 1 shares group g0 with labeled 0
    assert w[1] == 100.0 and w[0] == 1.0 and w[2:] == [1.0] * 6
    assert ex.weights({0: True, 1: False})[:2] == [1.0, 1.0]  # labeled claims are not boosted


# ---- objective -------------------------------------------------------------------------
@pytest.mark.parametrize("objective", ["sum", "mean", "margin"])
def test_U_equals_brute_force_on_tiny_set(objective):
    cl, truth, strength = synthetic_task(4, seed=3, groups=True)
    be = SyntheticBackend(truth, strength)
    cfg = ICMConfig(alpha=7.0, scoring="exact", objective=objective)
    rule = make_rule("exclusive", cl)
    s = _Search(cl, be, rule, cfg)
    tpl = Template()
    for ys in itertools.product([True, False], repeat=4):
        labels = dict(enumerate(ys))
        p = 0.0
        for i in range(4):  # leave-one-out context, in claim order (groups g0, g1 in order)
            ctx = "\n\n".join(
                f"Claim: {cl[j].claim}\nI think this claim is {'True' if labels[j] else 'False'}"
                for j in range(4)
                if j != i
            )
            prompt = ctx + "\n\n" + f"Claim: {cl[i].claim}\nI think this claim is"
            row = be.label_logprobs([prompt], tpl.labels())[0]
            z = math.log(math.exp(row["True"]) + math.exp(row["False"]))
            mine, other = (row["True"], row["False"]) if labels[i] else (row["False"], row["True"])
            p += (mine - other) if objective == "margin" else mine - z
        if objective != "sum":
            p /= 4
        i_count = sum(labels[a] and labels[b] for a, b in [(0, 1), (2, 3)])
        assert s.U(labels) == pytest.approx(7.0 * p - i_count, rel=1e-9, abs=1e-9)


def test_summed_objective_stalls_growth_mean_does_not():
    """Why P is averaged by default: with the printed sum, adding a claim always lowers U."""
    cl, truth, strength = synthetic_task(24, seed=1)
    grown = {}
    for obj in ("sum", "margin"):
        res = icm(
            cl,
            SyntheticBackend(truth, strength),
            config=ICMConfig(iters=60, objective=obj),
            progress=False,
        )
        grown[obj] = res.metrics["labeled_by_search"]
    assert grown["sum"] <= 12 < 20 <= grown["margin"]


class _StubScorer:
    """Per-claim fixed log-probs (no context effect): U is cheap and fully known."""

    def __init__(self, lps):
        self.lps = lps

    def total_logp(self, labels, margin=False):
        return sum(
            self.lps[i][0 if y else 1] - margin * self.lps[i][1 if y else 0]
            for i, y in labels.items()
        )


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_consistency_fix_never_increases_I_and_never_lowers_U(data):
    n = data.draw(st.integers(2, 9))
    keys = data.draw(st.lists(st.sampled_from(["1", "2", "3"]), min_size=n, max_size=n))
    grp = data.draw(st.lists(st.sampled_from(["a", "b"]), min_size=n, max_size=n))
    task = data.draw(st.sampled_from(["math", "exclusive", "comparison"]))
    if task == "comparison":
        n -= n % 2
        grp = [f"p{i // 2}" for i in range(n)]
    cl = [Claim(id=str(i), claim=f"x{i}", group=grp[i], key=keys[i]) for i in range(n)]
    rule = make_rule(task, cl)
    s = _Search(cl, None, rule, ICMConfig(seed=data.draw(st.integers(0, 99)), fix="paper"))
    probs = data.draw(st.lists(st.floats(0.01, 0.99), min_size=n, max_size=n))
    s.scorer = _StubScorer([(math.log(p), math.log(1 - p)) for p in probs])
    labels = {i: data.draw(st.booleans()) for i in range(n)}
    u0, i0 = s.U(labels), rule.count(labels)
    before = dict(labels)
    fixed, u1 = s.consistency_fix(labels, u0)
    assert rule.count(fixed) <= i0
    assert u1 >= u0 and u1 == pytest.approx(s.U(fixed))
    assert labels == before  # the input state is never mutated


def test_consistency_fix_can_choose_both_false():
    cl = exclusive_claims("q", "capital of France?", ["Lyon", "Nice"])
    rule = make_rule("exclusive", cl)
    s = _Search(cl, None, rule, ICMConfig())
    s.scorer = _StubScorer([(math.log(0.3), math.log(0.7)), (math.log(0.2), math.log(0.8))])
    fixed, _ = s.consistency_fix({0: True, 1: True}, s.U({0: True, 1: True}))
    assert fixed == {0: False, 1: False}


def test_reference_fix_applies_a_U_lowering_best_assignment():
    """Both candidates read as very likely True: the violating (True, True) has the higher U,
    so the paper's fix keeps it and the authors' code replaces it by the best consistent
    assignment anyway (I drops to 0, U drops)."""
    cl = exclusive_claims("q", "capital of France?", ["Paris", "Lyon"])
    rule = make_rule("exclusive", cl)
    both = {0: True, 1: True}
    out = {}
    for fix in ("paper", "reference"):
        s = _Search(cl, None, rule, ICMConfig(fix=fix))
        s.scorer = _StubScorer([(math.log(0.99), math.log(0.01)), (math.log(0.98), math.log(0.02))])
        out[fix] = s.consistency_fix(both, s.U(both))
    assert out["paper"][0] == both
    labels, u = out["reference"]
    # the best of the consistent ones
    assert labels == {0: True, 1: False} and rule.count(labels) == 0
    assert u < out["paper"][1] and u == pytest.approx(s.U(labels))


# ---- search ----------------------------------------------------------------------------
@pytest.mark.parametrize("scoring", ["fast", "exact"])
def test_search_recovers_latent_labels(scoring):
    cl, truth, strength = synthetic_task(24, seed=1)
    accs = []
    for seed in (0, 1, 2):
        res = icm(cl, SyntheticBackend(truth, strength), task="binary",
                  config=ICMConfig(iters=120, seed=seed, scoring=scoring), progress=False)
        m = res.metrics
        assert m["zero_shot_accuracy"] < 0.7
        assert m["accuracy"] > m["zero_shot_accuracy"] + 0.1
        accs.append(m["accuracy"])
    assert sorted(accs)[1] >= 0.95  # the median run recovers the latent labels
    assert set(res.labels) == {c.id for c in cl} and set(res.margins) == set(res.labels)
    assert m["model_calls"] > 0 and m["prompt_tokens"] > 0 and m["calls_per_claim"] > 0
    assert res.trajectory and {
        "U",
        "P",
        "I",
        "T",
        "acceptance",
        "balance",
        "agree_zero_shot",
    } <= set(res.trajectory[0])


def test_fast_scoring_is_much_cheaper_than_exact():
    cl, truth, strength = synthetic_task(48, seed=2)
    costs, accs = {}, {}
    for scoring in ("exact", "fast"):
        be = SyntheticBackend(truth, strength)
        res = icm(cl, be, config=ICMConfig(iters=96, seed=0, scoring=scoring), progress=False)
        costs[scoring], accs[scoring] = res.metrics["prompt_tokens"], res.metrics["accuracy"]
        assert accs[scoring] > res.metrics["zero_shot_accuracy"] + 0.1
    assert costs["fast"] * 5 <= costs["exact"]


def test_gold_is_never_read_by_the_search():
    cl, truth, strength = synthetic_task(20, seed=4, groups=True)
    perm = [c.gold for c in cl]
    random.Random(9).shuffle(perm)
    flipped = [c.model_copy(update={"gold": g}) for c, g in zip(cl, perm, strict=True)]
    assert [c.gold for c in flipped] != [c.gold for c in cl]
    cfg = ICMConfig(iters=40, seed=5)
    a = icm(cl, SyntheticBackend(truth, strength), task="exclusive", config=cfg, progress=False)
    be = SyntheticBackend(truth, strength)
    b = icm(flipped, be, task="exclusive", config=cfg, progress=False)
    assert a.labels == b.labels and a.margins == b.margins
    assert a.metrics["accuracy"] != b.metrics["accuracy"]  # gold is used, but only for the report


def test_same_seed_same_labels_and_no_labels_in_query():
    cl, truth, strength = synthetic_task(16, seed=6)
    runs = [
        icm(
            cl,
            SyntheticBackend(truth, strength),
            config=ICMConfig(iters=30, seed=1),
            progress=False,
        )
        for _ in range(2)
    ]
    assert runs[0].labels == runs[1].labels and runs[0].trajectory == runs[1].trajectory
    be = SyntheticBackend(truth, strength)
    icm(cl, be, config=ICMConfig(iters=10, seed=1, scoring="exact"), progress=False)
    for p in be.prompts_seen:  # the scored claim never appears in its own context
        q = SyntheticBackend._claim(p.split("\n\n")[-1])
        assert p.count(f"Claim: {q}\n") == 1


def _metrics(path) -> list[dict]:
    """metrics.jsonl without the fields a clock sets."""
    rows = [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("time", "seconds")} for r in rows]


@pytest.mark.parametrize("scoring", ["fast", "exact"])
def test_resume_after_interrupt_gives_identical_labels(tmp_path, scoring):
    cl, truth, strength = synthetic_task(20, seed=7, groups=True)
    cfg = ICMConfig(iters=40, seed=2, scoring=scoring)
    full_run = RunDir.create(tmp_path / "full", cfg, seed=2)
    full_run.log_metrics({"event": "before"})  # a caller's row (improve): kept, not rewritten
    full = icm(
        cl,
        SyntheticBackend(truth, strength),
        task="exclusive",
        config=cfg,
        run=full_run,
        progress=False,
    )
    run = RunDir.create(tmp_path / "r", cfg, seed=2)
    run.log_metrics({"event": "before"})
    at = [0]
    # interrupted three times, at different points (model calls into each try; exact makes ~6x more)
    for fail_after in (6, 3, 3) if scoring == "fast" else (20, 30, 30):
        with pytest.raises(KeyboardInterrupt):
            icm(
                cl,
                SyntheticBackend(truth, strength, fail_after=fail_after),
                task="exclusive",
                config=cfg,
                run=run,
                progress=False,
            )
        ck = json.loads((tmp_path / "r" / "icm_checkpoint.json").read_text())
        assert at[-1] < ck["step"] < 40 and not ck["done"]
        at.append(ck["step"])
    # a kill between the checkpoint and its log line, and one in the middle of a line
    lines = (tmp_path / "r" / "metrics.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "r" / "metrics.jsonl").write_text("".join(lines[:-2]) + lines[-1][:17])
    resumed = icm(
        cl, SyntheticBackend(truth, strength), task="exclusive", config=cfg, run=run, progress=False
    )
    assert resumed.labels == full.labels and resumed.margins == full.margins
    rows = [json.loads(x) for x in (tmp_path / "r" / "labels.jsonl").read_text().splitlines()]
    assert {r["id"]: r["label"] for r in rows} == full.labels
    assert resumed.trajectory == full.trajectory
    assert _metrics(tmp_path / "r") == _metrics(tmp_path / "full")
    steps = [r["step"] for r in _metrics(tmp_path / "r") if r.get("stage") == "icm"]
    assert steps == list(range(1, 41))  # no gap, no duplicate
    icm(
        cl, SyntheticBackend(truth, strength), task="exclusive", config=cfg, run=run, progress=False
    )
    # resuming a finished run: no second final row
    assert _metrics(tmp_path / "r") == _metrics(tmp_path / "full")
    run.log_metrics({"event": "after"})  # a caller's row after ICM finished survives another resume
    icm(
        cl, SyntheticBackend(truth, strength), task="exclusive", config=cfg, run=run, progress=False
    )
    again = _metrics(tmp_path / "r")
    assert {"event": "after"} in again and [
        r for r in again if r != {"event": "after"}
    ] == _metrics(tmp_path / "full")


def test_warnings_for_degenerate_labeling():
    cl, truth, strength = synthetic_task(12, seed=8)
    allfalse = {k: False for k in truth}
    be = SyntheticBackend(allfalse, {k: 5.0 for k in truth}, w_ctx=0.0)  # always predicts False
    res = icm(cl, be, config=ICMConfig(iters=20, init_k=0), progress=False)
    assert any("degenerate" in w for w in res.metrics["warnings"])
    assert res.metrics["balance"] == 0.0


def test_zero_shot_rule_baseline_in_icm_known_answer():
    """Synthetic zero-shot margin = +-strength (no context); the baseline takes each pair's
    larger one, with no model call beyond zero-shot."""
    cl, truth, strength = synthetic_task(24, seed=1, groups=True)
    res = icm(
        cl,
        SyntheticBackend(truth, strength),
        task="exclusive",
        config=ICMConfig(iters=10, baselines=True),
        progress=False,
    )
    m = [(1 if truth[c.claim] else -1) * strength[c.claim] for c in cl]
    want = [m[i] == max(m[i - i % 2], m[i - i % 2 + 1]) for i in range(24)]
    acc = sum(w == c.gold for w, c in zip(want, cl, strict=True)) / 24
    zr = res.baselines["zero_shot_rule"]
    assert zr["accuracy"] == pytest.approx(acc) and zr["I"] == 0 and zr["balance"] == 0.5
    assert res.metrics["baselines"]["zero_shot_rule"] == zr["accuracy"]
    assert "baseline_zero_shot_rule" not in res.metrics["cost"]  # one pass: the zero-shot one
    plain = icm(
        cl,
        SyntheticBackend(truth, strength),
        config=ICMConfig(iters=10, baselines=True),
        progress=False,
    )
    assert "zero_shot_rule" not in plain.baselines  # binary: no rule, nothing to add
    assert "golden_rule" not in plain.baselines
    # the rule on the golden-context margins (whose signs are all right here): one True per pair,
    # so exactly the pairs whose gold is not one-True-one-False cost one claim each
    gr = res.baselines["golden_rule"]
    assert res.baselines["golden"]["accuracy"] == 1.0
    mixed = sum(cl[k].gold != cl[k + 1].gold for k in range(0, 24, 2))
    assert (
        gr["I"] == 0
        and gr["balance"] == 0.5
        and gr["accuracy"] == pytest.approx((24 - (12 - mixed)) / 24)
    )


def test_init_from_zero_shot_rule_starts_at_the_baseline_and_only_raises_U():
    """init="zero_shot_rule": with 0 steps the labels are exactly the zero-shot + rule labels
    of every claim; with steps, the search moves from there (first row labels every claim)."""
    cl, truth, strength = synthetic_task(24, seed=1, groups=True)
    cfg = {"init": "zero_shot_rule", "baselines": True}
    res0 = icm(
        cl,
        SyntheticBackend(truth, strength),
        task="exclusive",
        config=ICMConfig(iters=0, **cfg),
        progress=False,
    )
    m = [(1 if truth[c.claim] else -1) * strength[c.claim] for c in cl]
    want = {c.id: m[i] == max(m[i - i % 2], m[i - i % 2 + 1]) for i, c in enumerate(cl)}
    assert res0.labels == want
    assert res0.metrics["accuracy"] == res0.baselines["zero_shot_rule"]["accuracy"]
    assert res0.metrics["labeled_by_final_argmax"] == 0
    res = icm(cl, SyntheticBackend(truth, strength, w_ctx=1.0), task="exclusive",
              config=ICMConfig(iters=48, **cfg), progress=False)
    assert res.trajectory[0]["labeled"] == 24
    assert res.metrics["accuracy"] >= res0.metrics["accuracy"]
    random_init = icm(
        cl,
        SyntheticBackend(truth, strength),
        task="exclusive",
        config=ICMConfig(iters=0),
        progress=False,
    )
    # the paper's K=8 start is still the default
    assert random_init.metrics["labeled_by_search"] <= 8


def test_keep_best_returns_the_best_freshly_scored_labeling():
    """keep_best: the returned labeling's fresh U is the largest fresh U of the run (start,
    refreshes, end); without it the last labeling is returned, whatever its fresh U."""
    # a run whose last labeling is not its best
    cl, truth, strength = synthetic_task(24, seed=0, groups=True)
    cfg = dict(iters=60, init="zero_shot_rule", refresh_every=8)
    last = icm(
        cl,
        SyntheticBackend(truth, strength, w_ctx=0.3),
        task="comparison",
        config=ICMConfig(**cfg),
        progress=False,
    )
    best = icm(cl, SyntheticBackend(truth, strength, w_ctx=0.3), task="comparison",
               config=ICMConfig(keep_best=True, **cfg), progress=False)

    def fresh_u(res, keep_best):
        s = _Search(cl, SyntheticBackend(truth, strength, w_ctx=0.3), make_rule("comparison", cl),
                    ICMConfig(keep_best=keep_best, **cfg))
        labels = {i: res.labels[c.id] for i, c in enumerate(cl)}
        s.scorer.refresh(labels)
        return s.U(labels)

    assert fresh_u(best, True) > fresh_u(last, False) + 0.1
    assert best.labels != last.labels


def test_label_words_reach_the_prompts():
    cl, truth, strength = synthetic_task(6, seed=2)
    tpl = Template(true_word="correct", false_word="incorrect")
    be = SyntheticBackend(truth, strength)
    seen: list[dict] = []
    orig = be.label_logprobs

    def spy(prompts, labels):
        seen.append(labels)
        return orig(prompts, labels)

    be.label_logprobs = spy
    icm(cl, be, config=ICMConfig(iters=4, template=tpl), progress=False)
    assert seen and all(" correct" in x["True"] and " incorrect" in x["False"] for x in seen)


def test_baselines_bracket_icm():
    cl, truth, strength = synthetic_task(24, seed=1)
    res = icm(
        cl,
        SyntheticBackend(truth, strength),
        config=ICMConfig(iters=60, baselines=True),
        progress=False,
    )
    b = res.baselines
    assert set(b) == {"zero_shot", "random_fewshot", "golden"}
    assert b["golden"]["accuracy"] == 1.0  # gold context -> the synthetic model reads truth
    assert b["zero_shot"]["accuracy"] == res.metrics["zero_shot_accuracy"]


# ---- contexts ---------------------------------------------------------------------------
def test_context_groups_related_claims_and_cuts_far_end():
    cl = [Claim(id=str(i), claim=f"claim number {i}", group=f"g{i % 3}") for i in range(6)]
    sc = ExactScorer(cl, SyntheticBackend({}, {}), Template(), max_context_tokens=10_000)
    ctx = sc.context({i: True for i in range(6)}, exclude=[5])
    order = [int(b.split("claim number ")[1].split("\n")[0]) for b in ctx.split("\n\n")]
    assert order == [0, 3, 1, 4, 2]  # g0, g1, g2 together; 5 left out
    small = ExactScorer(
        cl, SyntheticBackend({}, {}), Template(), max_context_tokens=sc.example_len[0] * 2
    )
    kept = small.context({i: True for i in range(6)}, exclude=[5])
    # nearest-to-query examples survive
    assert kept.count("Claim:") == 2 and "claim number 2" in kept


def test_fast_blocks_exclude_own_block():
    cl, truth, strength = synthetic_task(12, seed=1)
    sc = FastScorer(cl, SyntheticBackend(truth, strength), Template(), 10_000, blocks=3)
    labels = {i: True for i in range(12)}
    sc.refresh(labels)
    for i in range(12):
        ctx = sc._prefix(sc.block[i])
        assert f"Claim: {cl[i].claim}\n" not in ctx
        assert ctx.count("Claim:") == sum(sc.block[j] != sc.block[i] for j in range(12))


@pytest.mark.parametrize("leave_out", ["claim", "group"])
def test_leave_out_group_keeps_a_claims_group_out_of_its_context(leave_out):
    """leave_out="group": neither scorer shows a claim any claim of its own group (the
    same-question example whose label a small model copies); "claim": only itself is left out."""
    cl, truth, strength = synthetic_task(12, seed=1, groups=True)
    labels = {i: True for i in range(12)}
    be = SyntheticBackend(truth, strength)
    fast = FastScorer(cl, be, Template(), 10_000, blocks=2, leave_out=leave_out)
    fast.refresh(labels)
    exact = ExactScorer(cl, be, Template(), 10_000, leave_out)
    for i in range(12):
        partner = cl[i ^ 1].claim  # synthetic groups are pairs (2k, 2k+1)
        ctx = exact.context(labels, exact.left_out[i])
        assert f"Claim: {cl[i].claim}\n" not in ctx
        assert (f"Claim: {partner}\n" in ctx) == (leave_out == "claim")
        if leave_out == "group":
            assert fast.block[i] == fast.block[i ^ 1]
            assert f"Claim: {partner}\n" not in fast._prefix(fast.block[i])
    res = icm(
        cl,
        be,
        task="comparison",
        config=ICMConfig(iters=12, leave_out=leave_out, baselines=True),
        progress=False,
    )
    assert res.baselines["golden"]["accuracy"] == 1.0  # the ceiling is scored the same way


# ---- bad input -------------------------------------------------------------------------
def test_bad_inputs_raise_clear_errors():
    cl, truth, strength = synthetic_task(4)
    be = SyntheticBackend(truth, strength)
    with pytest.raises(SelfteachError, match="no claims"):
        icm([], be, progress=False)
    with pytest.raises(SelfteachError, match="unknown"):
        icm(cl, be, task="ranking", progress=False)
    with pytest.raises(SelfteachError, match="alpha"):
        icm(cl, be, config={"alpha": 0}, progress=False)
    with pytest.raises(SelfteachError, match="alpha"):
        icm(cl, be, config={"alpha": -3.0}, progress=False)
    # the record rejects it now
    with pytest.raises((SelfteachError, ValidationError), match="empty"):
        icm([Claim(id="x", claim="   ")], be, progress=False)
    with pytest.raises(SelfteachError, match="duplicate"):
        icm([cl[0], cl[0]], be, progress=False)
    lonely = comparison_claims("p", "q", "a", "b")[:1]
    with pytest.raises(SelfteachError, match="refers to nothing"):
        icm(lonely, be, task="comparison", progress=False)
    with pytest.raises(SelfteachError, match="no claim has a 'group'"):
        icm(cl, be, task="exclusive", progress=False)


# ---- real backend (tiny random model) ---------------------------------------------------
def test_shared_prefix_scoring_matches_plain(tiny_backend):
    tpl = Template()
    cl = exclusive_claims("q", "What is the capital of France?", ["Paris", "Lyon", "Nice"])
    prefix = tpl.context([tpl.example(cl[0], True), tpl.example(cl[1], False)])
    sufs = [tpl.suffix(c, True) for c in cl]
    full = [prefix + s for s in sufs]
    single = {
        k: [v for v in vs if len(tiny_backend.tokenize(v)) == 1] for k, vs in tpl.labels().items()
    }
    plain = tiny_backend.label_logprobs(full, single)
    last = tiny_backend.label_logprobs_last(full, tpl.labels())
    tiny_backend.clear_prefix_cache()
    tiny_backend.usage.reset()
    shared = tiny_backend.label_logprobs_shared_prefix(prefix, sufs, tpl.labels())
    first = tiny_backend.usage.prompt_tokens
    again = tiny_backend.label_logprobs_shared_prefix(prefix, sufs, tpl.labels())
    second = tiny_backend.usage.prompt_tokens - first
    for a, b, c, d in zip(plain, last, shared, again, strict=True):
        for k in a:
            assert b[k] == pytest.approx(a[k], abs=1e-4)
            assert c[k] == pytest.approx(a[k], abs=1e-4) and d[k] == pytest.approx(c[k], abs=1e-6)
    n_prefix = len(tiny_backend._prompt_ids(prefix))
    assert first == n_prefix + sum(len(tiny_backend.tokenize(s)) for s in sufs)
    assert second == first - n_prefix  # the cached prefix is not read again


def test_cli_end_to_end_tiny(tmp_path):
    from selfteach.cli import app

    out = tmp_path / "run"
    args = [
        "elicit",
        "--model",
        "tiny-random",
        "--claims",
        "builtin:capitals",
        "--task",
        "exclusive",
        "--limit",
        "12",
        "--iters",
        "6",
        "--out",
        str(out),
        "--baselines",
        "--no-progress",
    ]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "ICM (no labels)" in r.output and "golden-label context" in r.output
    table = r.output[r.output.index("zero-shot"):]
    assert (
        table.index("zero-shot + rule")
        < table.index("random-label")
        < table.index("ICM (no labels)")
    )
    rows = [json.loads(x) for x in (out / "labels.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and {"id", "label", "margin"} <= set(rows[0])
    traj = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [t for t in traj if t.get("stage") == "icm"]
    assert len(steps) == 6 and {
        "U",
        "P",
        "I",
        "T",
        "acceptance",
        "balance",
        "agree_zero_shot",
    } <= set(steps[0])
    again = CliRunner().invoke(app, args + ["--resume"])
    assert again.exit_code == 0, again.output
    rows2 = [json.loads(x) for x in (out / "labels.jsonl").read_text().splitlines()]
    assert rows2 == rows


def test_cli_fix_and_schedule_options_reach_the_search(tmp_path):
    import yaml

    from selfteach.cli import app

    out = tmp_path / "run"
    r = CliRunner().invoke(
        app,
        [
            "elicit",
            "--model",
            "tiny-random",
            "--claims",
            "builtin:capitals",
            "--task",
            "exclusive",
            "--limit",
            "8",
            "--iters",
            "8",
            "--out",
            str(out),
            "--no-progress",
            "--fix",
            "reference",
            "--schedule",
            "reference",
        ],
    )
    assert r.exit_code == 0, r.output
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["fix"] == "reference" and cfg["schedule"] == "reference"
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [x for x in rows if x.get("stage") == "icm"]
    for n, row in enumerate(steps):  # T follows the accepted flips before the step, not the step
        flips = sum(x["accepted"] for x in steps[:n])
        assert row["T"] == pytest.approx(10 / (1 + 2 * math.log(1 + flips)), abs=1e-5)


def test_cli_defaults_are_the_config_defaults():
    """The options are generated from ICMConfig: every field's option defaults to the field's
    default."""
    from selfteach.elicit.commands import elicit

    defaults = {f.key: f.default for f in elicit.spec.fields}
    assert {"schedule", "fix", "init", "leave_out", "objective", "t0", "keep_best"} <= set(defaults)
    assert defaults == {
        k: ICMConfig.model_fields[k].get_default(call_default_factory=True) for k in defaults
    }


def test_cli_init_and_label_words_reach_the_search(tmp_path):
    import yaml

    from selfteach.cli import app

    out = tmp_path / "run"
    r = CliRunner().invoke(
        app,
        [
            "elicit",
            "--model",
            "tiny-random",
            "--claims",
            "builtin:capitals",
            "--task",
            "exclusive",
            "--limit",
            "8",
            "--iters",
            "4",
            "--out",
            str(out),
            "--no-progress",
            "--init",
            "zero_shot_rule",
            "--label-words",
            "correct,incorrect",
            "--leave-out",
            "group",
        ],
    )
    assert r.exit_code == 0, r.output
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["init"] == "zero_shot_rule" and cfg["leave_out"] == "group"
    assert (cfg["template"]["true_word"], cfg["template"]["false_word"]) == ("correct", "incorrect")
    first = next(json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()
                 if json.loads(x).get("stage") == "icm")
    assert first["labeled"] == 8  # every claim labeled from the start


def _kill_when(args: list[str], out, rows: int) -> None:
    """Run the CLI in a subprocess and kill -9 it once metrics.jsonl holds `rows` ICM steps."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "selfteach", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    f, deadline = out / "metrics.jsonl", time.time() + 300
    try:
        while proc.poll() is None and time.time() < deadline:
            if f.exists() and f.read_text().count('"stage": "icm"') >= rows:
                break
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def test_cli_killed_twice_then_resumed_equals_an_uninterrupted_run(tmp_path):
    """kill -9 mid-run at two points, --resume: labels.jsonl and the metrics.jsonl trajectory
    equal those of an uninterrupted run with the same seed (tiny random model, real CLI)."""
    from selfteach.cli import app

    base = [
        "elicit",
        "--model",
        "tiny-random",
        "--claims",
        "builtin:capitals",
        "--task",
        "exclusive",
        "--limit",
        "12",
        "--iters",
        "40",
        "--no-progress",
    ]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert CliRunner().invoke(app, base + ["--out", str(full)]).exit_code == 0
    _kill_when(base + ["--out", str(cut)], cut, 5)
    ck1 = json.loads((cut / "icm_checkpoint.json").read_text())
    _kill_when(base + ["--out", str(cut), "--resume"], cut, 20)
    ck2 = json.loads((cut / "icm_checkpoint.json").read_text())
    assert 0 < ck1["step"] < ck2["step"] < 40 and not ck2["done"]  # both kills landed mid-run
    r = CliRunner().invoke(app, base + ["--out", str(cut), "--resume"])
    assert r.exit_code == 0, r.output
    assert (cut / "labels.jsonl").read_text() == (full / "labels.jsonl").read_text()
    a, b = _metrics(cut), _metrics(full)
    assert [r.get("step") for r in a] == [r.get("step") for r in b] == list(range(1, 41)) + [None]
    # cost counters are what this process really spent: a restarted backend re-reads the
    # contexts its prefix cache held, so they may only be higher; everything else is equal
    cost = ("calls", "prompt_tokens", "model_calls", "calls_per_claim", "tokens_per_claim")
    assert all(x.get(k, 0) >= y.get(k, 0) for x, y in zip(a, b, strict=True) for k in cost)
    assert [{k: v for k, v in r.items() if k not in cost} for r in a] == \
        [{k: v for k, v in r.items() if k not in cost} for r in b]
    assert a[:ck1["step"]] == b[:ck1["step"]]


@pytest.mark.parametrize("extra,msg", [
    (["--alpha", "0"], "alpha"),
    (["--task", "ranking"], "--task"),
    (["--scoring", "slow"], "--scoring"),
    (["--fix", "always"], "--fix"),
    (["--schedule", "linear"], "--schedule"),
    (["--init", "gold"], "--init"),
    (["--leave-out", "none"], "--leave-out"),
    (["--label-words", "True"], "--label-words"),
    (["--label-words", "yes,yes"], "--label-words"),
    (["--claims", "/nonexistent/claims.jsonl"], "not found"),
])
def test_cli_bad_input_exits_2(tmp_path, extra, msg):
    from selfteach.cli import app

    args = [
        "elicit",
        "--model",
        "tiny-random",
        "--claims",
        "builtin:capitals",
        "--out",
        str(tmp_path / "r"),
    ]
    for i in range(0, len(extra), 2):
        if extra[i] in args:
            args[args.index(extra[i]) + 1] = extra[i + 1]
        else:
            args += extra[i:i + 2]
    r = CliRunner().invoke(app, args)
    assert r.exit_code != 0
    assert (
        isinstance(r.exception, SelfteachError | SystemExit) and msg in str(r.exception) + r.output
    )


def test_cli_bad_jsonl_names_line(tmp_path):
    from selfteach.cli import app

    f = tmp_path / "c.jsonl"
    f.write_text(
        json.dumps({"id": "a", "claim": "x is y"})
        + "\n"
        + json.dumps({"id": "b", "text": "no claim"})
        + "\n"
    )
    r = CliRunner().invoke(
        app, ["elicit", "--model", "tiny-random", "--claims", str(f), "--out", str(tmp_path / "r")]
    )
    assert r.exit_code != 0 and "c.jsonl:2" in str(r.exception)


@pytest.mark.slow
def test_demo_summary_on_gemma(tmp_path):
    """The `selfteach demo` ICM step on the real model (a few minutes on CPU)."""
    from selfteach.elicit import demo_summary

    s = demo_summary(out=tmp_path / "demo", n_countries=8, progress=False)
    for k in ("zero-shot", "random few-shot", "ICM", "golden context"):
        assert 0.0 <= s[k] <= 1.0
    assert s["claims"] == 16 and (tmp_path / "demo" / "labels.jsonl").exists()
