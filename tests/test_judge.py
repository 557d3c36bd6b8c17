"""Tests of the SPCT generative judge: parser, orders, voting, accuracy, data, rewards, CLI."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from selfteach.backends.base import Generation, SamplingParams, Usage
from selfteach.data.records import JudgeItem, judged_item
from selfteach.errors import SelfteachError
from selfteach.judge.data import load_judge_items
from selfteach.judge.parse import FAILURE_REASONS, parse_scores, ranks_best_first
from selfteach.judge.rewards import judge_reward, judge_rule_reward
from selfteach.judge.rft import grpo_rows, rft_rows
from selfteach.judge.voting import (
    JudgeConfig,
    accuracy_at_k,
    credit,
    judge_items,
    sample_orders,
    vote,
)

# ---- a scripted judge --------------------------------------------------------------------
_SHOWN = re.compile(r"\[Response (\d+)\]\n(.*?)\n\[End of response", re.S)


class FakeJudge:
    """Reads the responses as shown in the prompt and scores them: 9 for a response that
    contains GOOD, 2 otherwise (`bias`: +8 to whatever is shown first, capped at 10).
    `broken` makes it write no scores. Records every generate call."""

    name = "fake"

    def __init__(self, bias: bool = False, broken: bool = False, max_length: int = 100_000):
        self.bias, self.broken, self.max_length = bias, broken, max_length
        self.calls: list[tuple[int, int]] = []  # (prompts, n)
        self.usage = Usage()

    def tokenize(self, text: str) -> list[int]:
        return list(range(len(text.split())))

    def chat_prompt(self, user: str, system: str | None = None) -> str:
        return user

    def label_logprobs(self, prompts, labels):
        """Forced score lines (force_scores): 3 is likeliest first, then 8."""
        want = "3" if prompts[0].endswith("{") else "8"
        return [{lab: (-0.1 if lab == want else -5.0) for lab in labels} for _ in prompts]

    def generate(self, prompts, params: SamplingParams):
        self.calls.append((len(prompts), params.n))
        out = []
        for p in prompts:
            shown = [t for _, t in _SHOWN.findall(p)]
            scores = [9 if "GOOD" in t else 2 for t in shown]
            if self.bias:
                scores[0] = min(10, scores[0] + 8)
            text = "Principle 1 (100%): correct.\nCritique: fine.\n"
            text += "no scores today" if self.broken else "Scores: \\boxed{" + ", ".join(map(str, scores)) + "}"
            out.append([Generation(text=text, token_ids=[1, 2, 3], finish_reason="stop") for _ in range(params.n)])
        return out


def _items(n_items: int = 4, n_resp: int = 2) -> list[JudgeItem]:
    items = []
    for i in range(n_items):
        best = i % n_resp
        resp = [f"answer {j} {'GOOD' if j == best else 'bad'}" for j in range(n_resp)]
        items.append(JudgeItem(id=f"q{i}", prompt=f"question {i}?", responses=resp, best=best, subset=f"s{i % 2}"))
    return items


# ---- parsing -----------------------------------------------------------------------------
@given(st.lists(st.integers(1, 10), min_size=1, max_size=6), st.text(max_size=200).filter(lambda s: "\\boxed" not in s))
def test_parse_roundtrip(scores, prefix):
    text = prefix + "\nScores: \\boxed{" + ", ".join(map(str, scores)) + "}\n"
    p = parse_scores(text, len(scores))
    assert p.ok and p.scores == scores


@given(st.text(max_size=300), st.integers(1, 5))
def test_parse_never_raises(text, n):
    p = parse_scores(text, n)
    if p.ok:
        assert len(p.scores) == n and all(1 <= s <= 10 for s in p.scores)
    else:
        assert p.error in FAILURE_REASONS


@given(st.lists(st.integers(1, 10), min_size=2, max_size=4), st.lists(st.integers(1, 10), min_size=2, max_size=4))
def test_parse_last_box_wins(first, last):
    text = "draft \\boxed{" + ", ".join(map(str, first)) + "} final \\boxed{" + ", ".join(map(str, last)) + "}"
    assert parse_scores(text, len(last)).scores == last


@pytest.mark.parametrize("text,n,error", [
    ("Scores: 7, 3", 2, "missing"),
    ("Scores: \\boxed{7, 3", 2, "unterminated"),
    ("Scores: \\boxed{7, three}", 2, "format"),
    ("Scores: \\boxed{}", 2, "format"),
    ("Scores: \\boxed{7, 3, 2}", 2, "count"),
    ("Scores: \\boxed{7}", 2, "count"),
    ("Scores: \\boxed{11, 3}", 2, "range"),
    ("Scores: \\boxed{0, 3}", 2, "range"),
    ("Scores: \\boxed{7, 3} then \\boxed{x}", 2, "format"),  # the last box counts, even when bad
])
def test_parse_failures(text, n, error):
    p = parse_scores(text, n)
    assert not p.ok and p.error == error


def test_parse_accepts_common_variants():
    assert parse_scores("\\boxed {7 ,3}", 2).scores == [7, 3]
    assert parse_scores("\\boxed{[8, 2]}", 2).scores == [8, 2]
    assert parse_scores("\\boxed{8.0; 2}", 2).scores == [8, 2]
    assert parse_scores("Score: \\boxed{6}", 1).scores == [6]


def test_ranks_best_first_is_strict():
    assert ranks_best_first([9, 3], 0)
    assert not ranks_best_first([5, 5], 0)
    assert not ranks_best_first([3, 9], 0)
    assert not ranks_best_first(None, 0)
    assert ranks_best_first([2, 8, 7], 1)


# ---- orders and voting ---------------------------------------------------------------------
def test_balanced_orders_pair():
    import random

    orders, per = sample_orders(2, 8, "balanced", random.Random(0))
    assert sorted(map(tuple, orders)) == [(0, 1), (1, 0)] and per == 4
    orders, per = sample_orders(2, 1, "balanced", random.Random(0))
    assert len(orders) == 1 and per == 1


@given(st.integers(2, 5), st.integers(1, 16), st.integers(0, 100))
@settings(max_examples=60)
def test_balanced_orders_invariants(n, k, seed):
    import math
    import random

    orders, per = sample_orders(n, k, "balanced", random.Random(seed))
    assert len(orders) * per == k
    assert len({tuple(o) for o in orders}) == len(orders)  # distinct
    assert all(sorted(o) == list(range(n)) for o in orders)  # permutations
    assert len(orders) <= math.factorial(n)
    if len(orders) == n:  # rotations: every response once in every position
        assert all(sorted(o[pos] for o in orders) == list(range(n)) for pos in range(n))


def test_vote_known_answer():
    samples = [{"scores": [7, 3]}, {"scores": [4, 6]}, {"scores": None}, {"scores": [5, 5]}]
    v = vote(samples, 2)
    assert v["totals"] == [16, 14] and v["winners"] == [0] and not v["tie"]
    assert v["failed"] == 1 and v["voters"] == 3
    assert credit(v, 0, 2) == 1.0 and credit(v, 1, 2) == 0.0
    tie = vote([{"scores": [5, 5]}], 2)
    assert tie["tie"] and credit(tie, 0, 2) == 0.5
    none = vote([{"scores": None}], 2)
    assert none["winners"] == [] and credit(none, 0, 2) == 0.5 and credit(none, 0, 4) == 0.25


def test_meta_guided_vote_uses_top_rated():
    samples = [{"scores": [2, 9], "meta": -3.0}, {"scores": [8, 3], "meta": 2.0},
               {"scores": [7, 4], "meta": 1.0}, {"scores": None, "meta": 9.0}]
    assert vote(samples, 2)["winners"] == [0]
    v = vote(samples, 2, meta_k=2)  # the failed sample cannot vote even when rated high
    assert v["voters"] == 2 and v["totals"] == [15, 7]
    assert vote(samples, 2, meta_k=1)["totals"] == [8, 3]


def test_accuracy_at_k_averages_disjoint_runs():
    rec = {"responses": ["a", "b"], "best": 0,
           "samples": [{"scores": [9, 1]}, {"scores": [1, 2]}, {"scores": [3, 3]}, {"scores": None}]}
    assert accuracy_at_k(rec, 1) == pytest.approx((1 + 0 + 0.5 + 0.5) / 4)
    assert accuracy_at_k(rec, 2) == pytest.approx((1 + 0.5) / 2)  # [10,3] wins; [3,3] ties
    assert accuracy_at_k(rec, 4) == 1.0
    assert accuracy_at_k(rec, 8) is None


# ---- judging with a scripted model -----------------------------------------------------------
def test_scores_are_mapped_back_and_batched():
    judge = FakeJudge()
    items = _items(4, 2)
    recs = judge_items(judge, items, JudgeConfig(k=8, items_per_call=2))
    assert judge.calls == [(4, 4), (4, 4)]  # 2 items x 2 orders, n=4 each, one call per 2 items
    for it, r in zip(items, recs, strict=True):
        assert r["vote"]["winners"] == [it.best]
        assert all(s["scores"][it.best] == 9 for s in r["samples"])
        assert {tuple(s["order"]) for s in r["samples"]} == {(0, 1), (1, 0)}
        assert accuracy_at_k(r, 8) == 1.0


def test_random_orders_and_three_responses():
    judge = FakeJudge()
    recs = judge_items(judge, _items(3, 3), JudgeConfig(k=6, orders="random"))
    assert all(n == 1 for _, n in judge.calls)
    for r in recs:
        assert r["vote"]["winners"] == [r["best"]] and r["vote"]["totals"][r["best"]] == 54


def test_position_bias_cancels_with_balanced_orders():
    recs = judge_items(FakeJudge(bias=True), _items(4, 2), JudgeConfig(k=2))
    for r in recs:  # the shown-first response gets +8: 10 vs 2 and 10 vs 9 -> best wins every vote
        assert accuracy_at_k(r, 2) == 1.0
    recs = judge_items(FakeJudge(bias=True), [JudgeItem(id="x", prompt="q", responses=["bad", "bad too"], best=0)],
                       JudgeConfig(k=2))
    assert recs[0]["vote"]["tie"] and accuracy_at_k(recs[0], 2) == 0.5
    assert accuracy_at_k(recs[0], 1) == 0.5  # one vote for each order


def test_pointwise_mode():
    judge = FakeJudge()
    recs = judge_items(judge, _items(2, 2), JudgeConfig(k=3, mode="pointwise"))
    assert judge.calls == [(4, 3)]
    for r in recs:
        assert r["vote"]["winners"] == [r["best"]] and r["vote"]["counts"] == [3, 3]


def test_unparsable_and_too_long_are_counted_not_raised():
    recs = judge_items(FakeJudge(broken=True), _items(2), JudgeConfig(k=4))
    assert all(r["vote"]["failed"] == 4 and accuracy_at_k(r, 4) == 0.5 for r in recs)
    assert {s["error"] for r in recs for s in r["samples"]} == {"missing"}
    short = FakeJudge(max_length=300)
    long_item = JudgeItem(id="long", prompt="word " * 400, responses=["a", "b GOOD"], best=1)
    recs = judge_items(short, [long_item, *_items(1)], JudgeConfig(k=2, max_new_tokens=8))
    assert recs[0]["error"] == "too_long" and recs[0]["vote"]["failed"] == 2
    assert recs[1]["error"] is None and short.calls == [(2, 1)]


def test_force_scores_completes_missing_lines():
    judge = FakeJudge(broken=True)
    recs = judge_items(judge, _items(1), JudgeConfig(k=2, force_scores=True))
    assert judge.calls == [(2, 1)]  # sampling; the forced scores come from label_logprobs
    by_order = {tuple(s["order"]): s for s in recs[0]["samples"]}
    assert by_order[(0, 1)]["scores"] == [3, 8] and by_order[(1, 0)]["scores"] == [8, 3]  # mapped back
    assert all(s["forced"] and s["raw_error"] == "missing" and s["text"].endswith("\\boxed{3, 8}")
               for s in recs[0]["samples"])
    assert recs[0]["vote"]["tie"]
    from selfteach.judge.runner import JudgeRunConfig, summarize

    row = summarize(recs, JudgeRunConfig(ks=[2]), "t")["tables"][-1]["rows"][0]
    assert row[2] == 0 and row[6] == 2 and row[7] == "1.000"  # all failed before forcing, none after
    from selfteach.judge.voting import _force

    _force(judge, judged_item(recs[0]), recs[0]["samples"])  # nothing failed any more: a no-op
    assert by_order[(0, 1)]["text"].count("boxed") == 1


def test_summary_reports_failure_rate(tmp_path):
    from selfteach.judge.runner import JudgeRunConfig, summarize

    recs = judge_items(FakeJudge(), _items(2), JudgeConfig(k=2)) + \
        judge_items(FakeJudge(broken=True), _items(4)[2:], JudgeConfig(k=2))
    s = summarize(recs, JudgeRunConfig(ks=[1, 2]), "t")
    assert s["failure_rate"] == 0.5
    acc = s["tables"][0]
    overall = acc["rows"][-1]
    assert overall[0] == "overall" and overall[2].startswith("0.750")


# ---- data -----------------------------------------------------------------------------------
def test_rewardbench_jsonl(tmp_path):
    f = tmp_path / "rb.jsonl"
    f.write_text(json.dumps({"prompt": "p", "chosen": "c", "rejected": "r", "subset": "chat", "id": 7}) + "\n"
                 + json.dumps({"prompt": [{"role": "user", "content": "hi"}],
                               "chosen": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
                               "rejected": [{"role": "assistant", "content": "no"}]}) + "\n")
    items = load_judge_items(f, pairwise=True, need_best=True)
    assert items[0].responses == ["c", "r"] and items[0].best == 0 and items[0].subset == "chat"
    assert items[0].id == "7" and items[1].prompt == "hi" and items[1].responses == ["yo", "no"]


def test_rewardbench_parquet_and_saved_dataset(tmp_path):
    import datasets

    ds = datasets.Dataset.from_list([{"prompt": "p", "chosen": "c", "rejected": "r", "subset": "s"}] * 2)
    ds = ds.add_column("id", ["a", "b"])
    ds.to_parquet(str(tmp_path / "rb.parquet"))
    ds.save_to_disk(str(tmp_path / "rbdir"))
    for spec in (tmp_path / "rb.parquet", tmp_path / "rbdir"):
        items = load_judge_items(spec, pairwise=True)
        assert [it.id for it in items] == ["a", "b"] and items[0].best == 0


def test_builtin_pairs():
    items = load_judge_items("builtin:pairs", pairwise=True, need_best=True)
    assert len(items) == 64 and {it.subset for it in items} == {"gsm8k-slip", "mawps-answer"}
    assert all(it.responses[0] != it.responses[1] and it.best == 0 for it in items)


@pytest.mark.parametrize("row,msg", [
    ({"prompt": "p", "chosen": "", "rejected": "r"}, "bad.jsonl:1: field 'chosen' is empty"),
    ({"prompt": "p", "chosen": "c"}, "missing field 'rejected'"),
    ({"chosen": "c", "rejected": "r"}, "missing field 'prompt'"),
    ({"prompt": "p", "responses": ["a"], "best": 0}, "has 1 response"),
    ({"prompt": "p", "responses": ["a", "b"], "best": 2}, "field 'best': 2"),
    ({"prompt": "p", "responses": ["a", "b"]}, "no field 'best'"),
    ({"prompt": "p", "responses": "ab", "best": 0}, "expected a non-empty list"),
    ({"prompt": 3, "chosen": "c", "rejected": "r"}, "field 'prompt': expected text"),
])
def test_bad_rows(tmp_path, row, msg):
    f = tmp_path / "bad.jsonl"
    f.write_text(json.dumps(row) + "\n")
    with pytest.raises(SelfteachError, match=re.escape(msg)):
        load_judge_items(f, pairwise=True, need_best=True)


def test_duplicate_ids_and_unknown_builtin(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"id": 1, "prompt": "p", "chosen": "c", "rejected": "r"}) + "\n" +
                 json.dumps({"id": 1, "prompt": "q", "chosen": "c", "rejected": "r"}) + "\n")
    with pytest.raises(SelfteachError, match="d.jsonl:2: duplicate id '1'"):
        load_judge_items(f)
    with pytest.raises(SelfteachError, match="unknown built-in"):
        load_judge_items("builtin:nope")


def test_prompt_templates_file(tmp_path):
    from selfteach.judge.prompts import JudgePrompt, build_prompt

    f = tmp_path / "p.yaml"
    f.write_text("system: null\nresponse: '<<{i}>> {response}'\n")
    p = JudgePrompt.from_file(f)
    text = build_prompt("Q?", ["x", "y"], p)
    assert "<<1>> x" in text and "<<2>> y" in text and "Q?" in text and "\\boxed{s1, s2}" in text
    f.write_text("multi: 'oops {nope}'\n")
    with pytest.raises(SelfteachError, match="field 'multi': bad template"):
        JudgePrompt.from_file(f)
    f.write_text("colour: red\n")
    with pytest.raises(SelfteachError, match="colour"):
        JudgePrompt.from_file(f)


# ---- SPCT data and rewards -------------------------------------------------------------------
def _rec(rid, scores_list, best=0):
    return {"id": rid, "prompt": "q", "responses": ["a", "b"], "best": best, "mode": "multi",
            "samples": [{"order": [0, 1], "text": f"t{i}", "scores": s} for i, s in enumerate(scores_list)]}


def test_rft_rows_keep_right_drop_easy():
    recs = [_rec("easy", [[9, 1], [8, 2]]), _rec("mixed", [[9, 1], [1, 9], None, [5, 5]]),
            _rec("hard", [[1, 9], [2, 8]]), {**_rec("nobest", [[9, 1]]), "best": None}]
    rows, counts = rft_rows(recs)
    assert counts["dropped_all_right"] == 1 and counts["dropped_none_right"] == 1
    assert counts["kept_items"] == 1 and counts["skipped_no_best"] == 1
    assert len(rows) == 1 and rows[0]["completion"][0]["content"] == "t0"
    assert rows[0]["prompt"][-1]["role"] == "user" and "[Response 2]" in rows[0]["prompt"][-1]["content"]


def test_rule_reward_with_grpo_rows():
    items = _items(6, 2)
    rows = grpo_rows(items, seed=1)
    fn = judge_rule_reward()
    good, bad = [], []
    for r in rows:
        n, b = r["judge_n"], r["judge_best"]
        assert "GOOD" in _SHOWN.findall(r["prompt"][-1]["content"])[b][1]
        good.append("\\boxed{" + ", ".join("9" if i == b else "2" for i in range(n)) + "}")
        bad.append("\\boxed{" + ", ".join("5" for _ in range(n)) + "}")
    kw = {"judge_best": [r["judge_best"] for r in rows], "judge_n": [r["judge_n"] for r in rows]}
    prompts = [r["prompt"] for r in rows]
    assert fn(prompts, good, **kw) == [1.0] * len(rows)
    assert fn(prompts, bad, **kw) == [-1.0] * len(rows)  # a tie is not "strictly first"
    conv = [[{"role": "assistant", "content": c}] for c in good]
    assert fn(prompts, conv, **kw) == [1.0] * len(rows)
    assert fn(prompts, ["garbage"] * len(rows), **kw) == [-1.0] * len(rows)


def test_judge_reward_pointwise_batched():
    judge = FakeJudge()
    fn = judge_reward(backend=judge, k=2)
    r = fn(["q1", [{"role": "user", "content": "q2"}]], ["it is GOOD", [{"role": "assistant", "content": "meh"}]])
    assert r == [pytest.approx(8 / 9), pytest.approx(1 / 9)]
    assert judge.calls == [(2, 2)]  # both completions in one generate call
    broken = judge_reward(backend=FakeJudge(broken=True), fail_reward=0.25)
    assert broken(["q"], ["x"]) == [0.25]
    afn = judge_reward(backend=FakeJudge(), asynchronous=True)
    assert asyncio.iscoroutinefunction(afn)
    assert asyncio.run(afn(["q"], ["GOOD"])) == [pytest.approx(8 / 9)]


# ---- meta RM (tiny random backbone) --------------------------------------------------------------
def test_meta_rm_train_save_load(tmp_path, tiny_backend):
    from selfteach.judge.meta import MetaConfig, MetaRM, auroc, train_meta

    recs = [_rec(f"i{j}", [[9, 1], [1, 9], [8, 3], [2, 7]]) for j in range(5)]
    for r in recs:  # make right and wrong judgments textually different
        for s in r["samples"]:
            s["text"] = "Response 1 is right. \\boxed{9, 1}" if s["scores"][0] > s["scores"][1] else "nonsense zzz"
    cfg = MetaConfig(backbone="tiny-random", max_tokens=64, epochs=200, val_frac=0.4)
    meta = train_meta(recs, cfg, backend=tiny_backend)
    assert meta.info["metrics"]["n"] == 20 and meta.info["metrics"]["n_right"] == 10
    assert meta.info["metrics"]["train_auroc"] == 1.0
    meta.save(tmp_path)
    again = MetaRM.load(tmp_path, backend=tiny_backend)
    from selfteach.judge.voting import meta_text

    item = judged_item(recs[0])
    texts = [meta_text(item, recs[0]["samples"][0]), meta_text(item, recs[0]["samples"][1])]
    assert again.score(texts) == pytest.approx(meta.score(texts), abs=1e-5)
    assert again.score(texts)[0] > again.score(texts)[1]
    assert auroc([0.1, 0.9, 0.5], [0, 1, 0]) == 1.0 and auroc([1, 1], [1, 0]) == 0.5
    with pytest.raises(SelfteachError, match="needs both right and wrong"):
        train_meta([_rec("x", [[9, 1]])], cfg, backend=tiny_backend)
    with pytest.raises(SelfteachError, match="meta RM not found"):
        MetaRM.load(tmp_path / "nothing")


# ---- CLI end to end (tiny random model) ---------------------------------------------------------
def _cli(args):
    from selfteach.cli import app

    return CliRunner().invoke(app, args)


def test_cli_eval_run_rft_meta(tmp_path, tiny_backend):
    out = tmp_path / "eval"
    res = _cli(["judge", "eval", "--model", "tiny-random", "--limit", "2", "--k", "1,2", "--max-new-tokens", "8",
                "--out", str(out)])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tables"][0]["columns"][:4] == ["subset", "n", "voting@1", "voting@2"]
    assert (out / "accuracy_vs_k.png").stat().st_size > 1000
    assert len((out / "judgments.jsonl").read_text().splitlines()) == 2
    # resume: nothing left to do, same summary
    res = _cli(["judge", "eval", "--model", "tiny-random", "--limit", "2", "--k", "1,2", "--max-new-tokens", "8",
                "--out", str(out), "--resume"])
    assert res.exit_code == 0, res.output
    # rft-data from the run; a run of a scripted judge gives usable meta-RM data
    res = _cli(["judge", "rft-data", "--from-run", str(out), "--limit", "2", "--out", str(tmp_path / "rft")])
    assert res.exit_code == 0, res.output
    grpo = [json.loads(x) for x in (tmp_path / "rft" / "grpo.jsonl").read_text().splitlines()]
    assert len(grpo) == 2 and {"judge_best", "judge_n", "prompt"} <= set(grpo[0])
    recs = judge_items(FakeJudge(), _items(4), JudgeConfig(k=2)) + \
        judge_items(FakeJudge(bias=True), [JudgeItem(id="z", prompt="q", responses=["x", "y GOOD"], best=0)],
                    JudgeConfig(k=2))
    jf = tmp_path / "j.jsonl"
    jf.write_text("".join(json.dumps(r) + "\n" for r in recs))
    res = _cli(["judge", "train-meta", "--judgments", str(jf), "--backbone", "tiny-random", "--max-tokens", "64",
                "--epochs", "20", "--val-frac", "0", "--out", str(tmp_path / "meta")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "meta" / "meta_rm.json").exists()
    res = _cli(["judge", "run", "--model", "tiny-random", "--data", "builtin:pairs", "--limit", "1", "--k", "2",
                "--max-new-tokens", "8", "--meta-rm", str(tmp_path / "meta"), "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "run" / "judgments.jsonl").read_text())
    assert all("meta" in s for s in rec["samples"])
    # post-hoc guided voting on the judgments sampled by the first eval
    res = _cli(["judge", "eval", "--from-run", str(out), "--meta-rm", str(tmp_path / "meta"), "--k", "1,2",
                "--out", str(tmp_path / "eval-meta")])
    assert res.exit_code == 0, res.output
    cols = json.loads((tmp_path / "eval-meta" / "summary.json").read_text())["tables"][0]["columns"]
    assert cols[-1] == "meta@2"


def test_cli_bad_choice_is_a_usage_error(capsys):
    """A Literal field's option rejects a value outside its choices while parsing: one line, exit 2."""
    from selfteach.cli import run

    assert run(["judge", "run", "--data", "builtin:pairs", "--mode", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--mode 'nope': choose 'multi', 'pointwise'" in err


@pytest.mark.parametrize("args,msg", [
    (["judge", "eval", "--k", "1,x"], "--k '1,x'"),
    (["judge", "eval", "--k", "0,2"], "must be >= 1"),
    (["judge", "eval", "--data", "missing.jsonl"], "missing.jsonl: file not found"),
    (["judge", "train-meta", "--judgments", "nothing.jsonl"], "nothing.jsonl: file not found"),
])
def test_cli_bad_input(args, msg):
    res = _cli(args)  # the CLI's main() turns a SelfteachError into one line and exit code 2
    assert isinstance(res.exception, SelfteachError), res.output
    assert msg in str(res.exception)


def test_cli_bad_input_exit_code(tmp_path):
    import subprocess
    import sys

    f = tmp_path / "bad.jsonl"
    f.write_text('{"prompt": "p", "chosen": "c", "rejected": ""}\n')
    p = subprocess.run([sys.executable, "-m", "selfteach", "judge", "eval", "--data", str(f)], capture_output=True,
                       text=True)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "bad.jsonl:1: field 'rejected' is empty" in " ".join(p.stderr.split())


@pytest.mark.slow
def test_smollm2_judges_and_parses(smol_backend):
    items = load_judge_items("builtin:pairs", limit=1, pairwise=True, need_best=True)
    recs = judge_items(smol_backend, items, JudgeConfig(k=2, max_new_tokens=64, force_scores=True))
    assert len(recs[0]["samples"]) == 2 and all(s["text"] for s in recs[0]["samples"])
    assert all(s["scores"] is not None and all(1 <= x <= 10 for x in s["scores"]) for s in recs[0]["samples"])


def test_run_judge_pointwise_without_best_and_resume(tmp_path):
    from selfteach.judge.runner import JudgeRunConfig, run_judge, summarize

    f = tmp_path / "items.jsonl"
    f.write_text(json.dumps({"prompt": "q", "responses": ["one GOOD"]}) + "\n"
                 + json.dumps({"prompt": "r", "responses": ["a", "b GOOD", "c"]}) + "\n")
    cfg = JudgeRunConfig(data=str(f), mode="pointwise", ks=[2])
    judge = FakeJudge()
    recs = run_judge(cfg, tmp_path / "run", backend=judge, progress=False)
    assert [r["vote"]["winners"] for r in recs] == [[0], [1]]
    s = summarize(recs, cfg, "t")
    assert s["tables"][0]["name"].startswith("votes") and s["failure_rate"] == 0.0  # no accuracy without best
    again = run_judge(cfg, tmp_path / "run", backend=FakeJudge(broken=True), resume=True, progress=False)
    assert again == recs  # resumed: nothing re-judged
    with pytest.raises(SelfteachError, match="run directory exists"):
        run_judge(cfg, tmp_path / "run", backend=judge, progress=False)


# ---- output format: prompt styles and the stop after the score box (docs/judge.md) -------------
def _fill(template: str, values: dict[str, str]) -> str:
    return re.sub(r"<([^<>]+)>", lambda m: values.get(m.group(1), "text"), template)


def test_example_style_renders_the_format_and_a_filled_in_example_parses():
    from selfteach.judge.prompts import JudgePrompt, build_prompt

    ex = build_prompt("Q?", ["x", "y"], JudgePrompt.style("example"))
    plain = build_prompt("Q?", ["x", "y"], JudgePrompt.style("paper"))
    assert "Critique of Response 2:" in ex and "Critique of Response" not in plain
    assert ex.startswith(plain[:plain.index("[Query]")].rstrip())  # the paper's instructions, unchanged
    # the instructions, then the format, then the query: the format is not part of a response
    assert ex.index("\\boxed{s1, s2}") < ex.index("\\boxed{<score of Response 1>") < ex.index("[Query]\nQ?")
    # the format with its slots filled in is a judgment that parses
    shape = ex[ex.index("Principle 1 (<weight>%)"):ex.index("[Query]")]
    filled = _fill(shape, {"weight": "50", "score of Response 1": "4", "score of Response 2": "8"})
    assert parse_scores(filled, 2).scores == [4, 8] and "<" not in filled
    one = build_prompt("Q?", ["x"], JudgePrompt.style("example"))
    shape = one[one.index("Principle 1 (<weight>%)"):one.index("[Query]")]
    assert parse_scores(_fill(shape, {"weight": "50", "score": "7"}), 1).scores == [7]
    assert JudgePrompt() == JudgePrompt.style("example")  # the default style (measured on the 1.5B, docs/judge.md)


def test_prompt_style_and_file_compose(tmp_path):
    from selfteach.judge.prompts import JudgePrompt

    f = tmp_path / "p.yaml"
    f.write_text('system: null\nstop: ["}\\n"]\n')
    p = JudgePrompt.from_file(f, "paper")
    assert p.system is None and p.stop == ["}\n"] and p.multi == JudgePrompt.style("paper").multi
    with pytest.raises(SelfteachError, match="--prompt-style 'terse'"):
        JudgePrompt.style("terse")


@pytest.mark.parametrize("text,finish,stop,after", [
    ("Scores: \\boxed{7, 3", "stop", ["}\n"], "Scores: \\boxed{7, 3}"),   # cut by the stop: brace back
    ("Scores: \\boxed{7, 3", "length", ["}\n"], "Scores: \\boxed{7, 3"),  # cut by the token cap: stays cut
    ("Scores: \\boxed{7, 3", "stop", [], "Scores: \\boxed{7, 3"),         # no stop string: EOS, stays cut
    ("Scores: \\boxed{7, 3}", "stop", ["}\n"], "Scores: \\boxed{7, 3}"),  # EOS after a closed box
    ("Scores: 7, 3", "stop", ["}"], "Scores: 7, 3"),                       # no box: nothing to close
])
def test_close_stopped_box(text, finish, stop, after):
    from selfteach.judge.parse import close_stopped_box

    assert close_stopped_box(text, finish, stop) == after


class StopJudge(FakeJudge):
    """Writes a score line followed by chatter and a second, wrong box, and honours stop
    strings as the backends do: the text ends before the stop string, which is dropped."""

    def generate(self, prompts, params: SamplingParams):
        self.calls.append((len(prompts), params.n))
        text = "Principle 1 (100%): right.\nScores: \\boxed{9, 2}\nAlso: \\boxed{1, 1}\n"
        cut = min((text.find(s) for s in params.stop if s in text), default=-1)
        reason = "stop" if cut >= 0 else "length"
        text = text[:cut] if cut >= 0 else text
        return [[Generation(text=text, token_ids=[1], finish_reason=reason)] * params.n for _ in prompts]


def test_stop_after_the_box_keeps_it_parseable():
    from selfteach.judge.prompts import JudgePrompt

    item = [JudgeItem(id="a", prompt="q", responses=["x", "y"], best=0)]
    stopped = judge_items(StopJudge(), item, JudgeConfig(k=2, orders="random"), JudgePrompt(stop=["}\n"]))
    for s in stopped[0]["samples"]:
        assert s["text"].endswith("\\boxed{9, 2}") and s["finish"] == "stop" and s["error"] is None
        assert sorted(s["scores"]) == [2, 9]
    free = judge_items(StopJudge(), item, JudgeConfig(k=2, orders="random"), JudgePrompt(stop=[]))
    assert all(s["scores"] == [1, 1] for s in free[0]["samples"])  # without the stop the later box wins


def test_cli_prompt_style_checked_before_any_model_loads(tmp_path):
    junk = tmp_path / "m.gguf"  # passes the model-spec check, fails to load: the style must come first
    junk.write_bytes(b"not a gguf")
    res = _cli(["judge", "eval", "--model", str(junk), "--prompt-style", "fancy",
                "--out", str(tmp_path / "e")])
    assert res.exit_code == 2 and "'fancy' is not one of" in res.output  # rejected by the option parser
    assert not (tmp_path / "e").exists()
    from pydantic import ValidationError

    from selfteach.judge.runner import JudgeRunConfig

    with pytest.raises(ValidationError, match="prompt_style"):
        JudgeRunConfig(prompt_style="fancy")
