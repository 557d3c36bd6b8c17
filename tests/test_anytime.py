"""Anytime evaluation: Anytime Index on hand-computed curves, exact truncation, forced-answer
formatting, traces shorter than a budget, bad input before generation, CLI end to end."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from selfteach.backends.base import Generation, SamplingParams, Usage
from selfteach.errors import SelfteachError
from selfteach.evaluate.anytime import (
    PLAIN_SUFFIX,
    THINK_SUFFIX,
    AnytimeConfig,
    anytime_index,
    best_so_far,
    check_template,
    compare_plot,
    default_suffix,
    evaluate_anytime,
    force_answers,
    forced_answer_plan,
    parse_budgets,
)

# ---- Anytime Index ---------------------------------------------------------------------


def test_anytime_index_hand_computed():
    # Q* = Q (monotone): trapezoids (0+1)/2*1 + (1+1)/2*1 = 1.5 over (3-1)*1
    assert anytime_index([1, 2, 3], [0.0, 1.0, 1.0]) == pytest.approx(0.75)
    # uneven spacing: (0.2+0.4)/2*32 + (0.4+0.8)/2*64 = 9.6 + 38.4 = 48 over 96
    assert anytime_index([32, 64, 128], [0.2, 0.4, 0.8]) == pytest.approx(0.5)


def test_anytime_index_uses_best_so_far_on_non_monotone_quality():
    budgets, q = [32, 64, 128, 256], [0.2, 0.6, 0.4, 0.5]
    assert best_so_far(q) == [0.2, 0.6, 0.6, 0.6]
    # Q* areas: 0.4*32 + 0.6*64 + 0.6*128 = 128, over 224
    assert anytime_index(budgets, q) == pytest.approx(128 / 224)
    # the raw curve would give 0.4*32 + 0.5*64 + 0.45*128 = 102.4 / 224: best-so-far matters
    assert anytime_index(budgets, q) != pytest.approx(102.4 / 224)


def test_anytime_index_q_max_and_degenerate_cases():
    assert anytime_index([10, 20], [0.25, 0.25], q_max=0.5) == pytest.approx(0.5)
    assert anytime_index([16, 64, 512], [0.3, 0.3, 0.3]) == pytest.approx(0.3)
    assert anytime_index([64], [0.4]) == pytest.approx(0.4)
    with pytest.raises(SelfteachError, match="3 budgets"):
        anytime_index([1, 2, 3], [0.1, 0.2])
    with pytest.raises(SelfteachError, match="not strictly increasing"):
        anytime_index([2, 1], [0.1, 0.2])


@pytest.mark.parametrize(
    "q",
    [
        [float("nan"), 0.4, 0.6],
        [0.2, float("nan"), 0.6],
        [0.2, 0.4, float("inf")],
        [0.2, None, 0.6],
        [0.2, "0.4", 0.6],
    ],
)
def test_a_nan_quality_is_refused_not_skipped(q):
    """max() skips NaN: a leading NaN gave best-so-far -inf, a later one vanished from the area."""
    t = next(i for i, x in enumerate(q) if not isinstance(x, float) or x != x or x == float("inf"))
    with pytest.raises(SelfteachError, match=rf"quality\[{t}\] \(budget {[32, 64, 128][t]}\)"):
        anytime_index([32, 64, 128], q)
    with pytest.raises(SelfteachError, match="finite"):
        best_so_far(q)


def test_compare_plot_refuses_a_nan_curve(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "anytime.json").write_text(
        '{"budgets": [32, 64], "quality": [NaN, 0.5], "best_so_far": [0.5, 0.5], '
        '"anytime_index": 0.5, "method": "plain"}'
    )
    with pytest.raises(SelfteachError, match=r"anytime.json: quality\[0\] \(budget 32\) is nan"):
        compare_plot([run], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 50), st.floats(0, 1)), min_size=2, max_size=8))
def test_anytime_index_properties(steps):
    budgets = list(__import__("itertools").accumulate(s for s, _ in steps))
    q = [x for _, x in steps]
    ai = anytime_index(budgets, q)
    assert -1e-12 <= ai <= 1 + 1e-12
    qs = best_so_far(q)
    assert min(qs) - 1e-12 <= ai <= max(qs) + 1e-12  # an average of Q* values
    # never below the area of the raw curve, equal to it when quality is monotone
    raw = sum((q[t] + q[t + 1]) / 2 * (budgets[t + 1] - budgets[t]) for t in range(len(q) - 1))
    raw /= budgets[-1] - budgets[0]
    assert ai >= raw - 1e-12
    assert anytime_index(budgets, qs) == pytest.approx(ai)


# ---- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,msg",
    [
        ("64,32", "not strictly increasing"),
        ("32,32", "not strictly increasing"),
        ("0,32", "not positive"),
        ("-8", "not positive"),
        ("a,b", "integers"),
        ("", "empty"),
    ],
)
def test_bad_budgets(text, msg):
    with pytest.raises(SelfteachError, match=msg):
        parse_budgets(text)


def test_budgets_parse():
    assert parse_budgets("32, 64,128") == [32, 64, 128]


def test_templates_need_their_slot():
    with pytest.raises(SelfteachError, match=r"no \{question\} slot"):
        AnytimeConfig(prompt_template="Solve it step by step.")
    with pytest.raises(SelfteachError, match=r"unknown slot \{problem\}"):
        AnytimeConfig(prompt_template="{question} {problem}")
    with pytest.raises(SelfteachError, match="takes no slots"):
        AnytimeConfig(suffix="The answer to {question} is")
    with pytest.raises(SelfteachError, match="bad braces"):
        check_template("{question", {"question"}, "--prompt-template")
    with pytest.raises(SelfteachError, match="not positive"):
        AnytimeConfig(budgets=[0, 8])


class ExplodingBackend:
    """Any generation means a check came too late."""

    name = "exploding"
    usage = Usage()

    def __getattr__(self, item):
        raise AssertionError(f"backend.{item} used before input was validated")


def test_items_without_gold_fail_before_generation(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "1+1?", "answer": "2"}\n{"question": "2+2?"}\n')
    cfg = AnytimeConfig(model="x", data=str(data), budgets=[8, 16])
    with pytest.raises(SelfteachError, match="no gold answer"):
        evaluate_anytime(cfg, tmp_path / "run", backend=ExplodingBackend(), progress=False)
    assert not (tmp_path / "run").exists()


def test_bad_choice_answer_fails_before_generation(tmp_path):
    data = tmp_path / "mc.jsonl"
    data.write_text('{"question": "Pick", "choices": ["a", "b", "c", "d"], "answer": "Z"}\n')
    cfg = AnytimeConfig(model="x", data=str(data), budgets=[8])
    with pytest.raises(
        SelfteachError,
        match=r"mc.jsonl:1: field .answer.: .Z. is not a letter of the 4 choices \(A-D\)",
    ):
        evaluate_anytime(cfg, tmp_path / "run", backend=ExplodingBackend(), progress=False)


# ---- truncation, forced answers, finished traces -----------------------------------------


class FakeBackend:
    """Char-level tokens. Forced-answer calls (max_new_tokens == 100, the answer_tokens
    default) return `answer`, other calls return `trace`. Every answer prompt is recorded."""

    name = "fake"
    continues_token_prompts = True  # TokenContinuation: ids are continued exactly

    def __init__(self, trace: str, finished: bool, answer: str = " 12."):
        self.trace, self.finished, self.answer = trace, finished, answer
        self.usage = Usage()
        self.answer_prompts: list[list[int]] = []
        self.answer_stops: list[list[str]] = []

    def tokenize(self, text):
        return [ord(c) for c in text]

    def detokenize(self, ids):
        return "".join(map(chr, ids))

    def chat_prompt(self, user, system=None):
        return f"<u>{user}</u>"

    def generate(self, prompts, params: SamplingParams):
        out = []
        for p in prompts:
            if params.max_new_tokens == 100:
                self.answer_prompts.append(list(p))
                self.answer_stops.append(params.stop)
                g = Generation(self.answer, self.tokenize(self.answer), "stop")
            else:
                ids = self.tokenize(self.trace)[: params.max_new_tokens]
                done = self.finished and len(ids) == len(self.trace)
                g = Generation(self.detokenize(ids), ids, "stop" if done else "length")
            out.append([g] * params.n)
        return out


def test_truncation_at_exact_token_counts():
    be = FakeBackend("abcdefghijklmnopqrstuvwxyz0123456789", finished=False)
    prompt = be.tokenize("<u>Q</u>")
    trace = be.generate([prompt], SamplingParams(max_new_tokens=32))[0][0]
    suffix = be.tokenize(PLAIN_SUFFIX)
    answers = force_answers(
        be, [prompt], [trace], [4, 16, 32], suffix, SamplingParams(max_new_tokens=100)
    )
    assert [a.text for a in answers[0]] == [" 12."] * 3
    assert be.answer_prompts == [prompt + trace.token_ids[:b] + suffix for b in (4, 16, 32)]
    assert [len(p) - len(prompt) - len(suffix) for p in be.answer_prompts] == [4, 16, 32]


def test_forced_answer_plan_and_short_trace():
    done = Generation("so 12", [1] * 10, "stop")
    assert forced_answer_plan(done, [4, 10, 16]) == [4, None, None]
    running = Generation("...", [1] * 32, "length")
    assert forced_answer_plan(running, [8, 16, 32]) == [8, 16, 32]


def test_short_trace_answered_as_is_and_forced_answer_scored(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"id": "a", "question": "What is 5+7?", "answer": "12"}\n')
    be = FakeBackend("5+7=12. The answer is 12", finished=True, answer=" 13.")
    cfg = AnytimeConfig(model="fake", data=str(data), budgets=[8, 64], suffix=PLAIN_SUFFIX)
    res = evaluate_anytime(cfg, tmp_path / "run", backend=be, progress=False)
    row = json.loads((tmp_path / "run" / "outputs.jsonl").read_text())
    b8, b64 = row["samples"][0]["budgets"]
    # budget 8: truncated, forced answer "...final answer is 13." (wrong); 64: finished trace, right
    assert b8 == {
        "budget": 8,
        "forced": True,
        "answer": PLAIN_SUFFIX + " 13.",
        "pred": "13",
        "score": 0.0,
    }
    assert b64["forced"] is False and b64["pred"] == "12" and b64["score"] == 1.0
    assert len(be.answer_prompts) == 1  # no forced answer for the finished budget
    assert res["curve"]["quality"] == [0.0, 1.0]
    assert res["curve"]["anytime_index"] == pytest.approx(0.5)


def test_trip_item_scored_by_csr_without_blank_line_stop(tmp_path):
    from test_anytime_scorers import GOLD, TRIP  # pytest puts tests/ on sys.path

    data = tmp_path / "trip.jsonl"
    data.write_text(json.dumps({"id": "t1", "question": TRIP, "answer": GOLD}) + "\n")
    be = FakeBackend("Let me think about the flights first.", finished=False, answer="\n\n" + GOLD)
    res = evaluate_anytime(
        AnytimeConfig(model="fake", data=str(data), budgets=[4, 8]),
        tmp_path / "run",
        backend=be,
        progress=False,
    )
    assert res["curve"]["quality"] == [1.0, 1.0]
    assert be.answer_stops == [[], []]  # a plan has blank lines: no blank-line stop for trip items
    row = json.loads((tmp_path / "run" / "outputs.jsonl").read_text())
    assert row["scorer"] == "trip" and row["samples"][0]["budgets"][0]["pred"].startswith(
        "Florence:1-6"
    )


def test_default_suffix_by_model_family():
    class B:  # a backend with the ChatTemplate capability
        chat_template: str | None = "{% if thinking %}<think>\n{% endif %}"

    assert default_suffix(B()) == THINK_SUFFIX
    B.chat_template = "<|im_start|>user"
    assert default_suffix(B()) == PLAIN_SUFFIX
    B.chat_template = None  # a server that applies its own template
    assert default_suffix(B()) == PLAIN_SUFFIX
    assert default_suffix(FakeBackend("", True)) == PLAIN_SUFFIX


def test_shared_prefix_equals_plain_generation(tiny_backend):
    """The KV-cache path returns exactly the tokens of re-reading each truncated prefix."""
    be = tiny_backend
    prompts = [be.tokenize("Tom has 7 apples."), be.tokenize("What is 3 times 4? Think.")]
    traces = [g[0] for g in be.generate(prompts, SamplingParams(max_new_tokens=24))]
    suffix = be.tokenize(PLAIN_SUFFIX)
    params = SamplingParams(max_new_tokens=6, stop=["\n\n"])
    fast = force_answers(be, prompts, traces, [3, 11, 24], suffix, params, shared_prefix=True)
    slow = force_answers(be, prompts, traces, [3, 11, 24], suffix, params, shared_prefix=False)
    assert [[a.token_ids for a in row] for row in fast] == [
        [a.token_ids for a in row] for row in slow
    ]
    assert be.usage.extra.get("cached_prompt_tokens", 0) > 0


# ---- end to end ------------------------------------------------------------------------


def _app():
    from selfteach.evaluate.commands import eval_app

    return eval_app


def test_cli_end_to_end_resume_and_compare(tmp_path):
    out = tmp_path / "run"
    args = [
        "anytime",
        "--model",
        "tiny-random",
        "--limit",
        "3",
        "--budgets",
        "4,8,16",
        "--answer-tokens",
        "4",
        "--out",
        str(out),
    ]
    r = CliRunner().invoke(_app(), args)
    assert r.exit_code == 0, r.output
    assert "Anytime Index" in r.output
    for f in (
        "outputs.jsonl",
        "summary.json",
        "anytime.json",
        "anytime.png",
        "config.yaml",
        "env.json",
    ):
        assert (out / f).exists(), f
    rows = [json.loads(x) for x in (out / "outputs.jsonl").read_text().splitlines()]
    assert [r_["id"] for r_ in rows] == ["arith-0", "arith-1", "arith-2"]
    s = rows[0]["samples"][0]
    assert s["trace_tokens"] <= 16 and [b["budget"] for b in s["budgets"]] == [4, 8, 16]
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"title", "tables", "notes"}
    table = summary["tables"][0]
    assert table["columns"][:2] == ["budget", "quality"] and [row[0] for row in table["rows"]] == [
        4,
        8,
        16,
    ]
    # rerun without --resume refuses; with --resume nothing is regenerated
    r2 = CliRunner().invoke(_app(), args)
    assert isinstance(r2.exception, SelfteachError) and "--resume" in str(r2.exception)
    r3 = CliRunner().invoke(_app(), args + ["--resume"])
    assert r3.exit_code == 0, r3.output
    assert len((out / "outputs.jsonl").read_text().splitlines()) == 3
    png = compare_plot([out, out], tmp_path / "cmp.png", labels=["a", "b"])
    assert png.stat().st_size > 1000
    with pytest.raises(SelfteachError, match="no anytime.json"):
        compare_plot([tmp_path], tmp_path / "x.png")


@pytest.mark.parametrize("extra,msg", [(["--budgets", "64,32"], "not strictly increasing"),
                                       (["--prompt-template", "Solve."], "no {question} slot"),
                                       (["--method", "best"], "--method"),
                                       (["--suffix", "  "], "empty")])
def test_cli_bad_input(tmp_path, extra, msg):
    args = ["anytime", "--model", "tiny-random", "--out", str(tmp_path / "r")] + extra
    r = CliRunner().invoke(_app(), args)
    if msg == "--method":  # a Literal choice: rejected by the option parser, a usage error (exit 2)
        assert r.exit_code == 2 and msg in r.output
    else:
        assert isinstance(r.exception, SelfteachError) and msg in str(r.exception)
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_smollm2_shared_prefix_matches_token_id_path(smol_backend):
    """On the real model the KV-cache answers equal the re-read-prefix answers token for token."""
    from selfteach.data.builtin import builtin_problems
    from selfteach.evaluate.anytime import build_prompt_ids

    be = smol_backend
    prompts = [build_prompt_ids(be, p.question) for p in builtin_problems("arithmetic", n=2)]
    traces = [g[0] for g in be.generate(prompts, SamplingParams(max_new_tokens=48))]
    suffix = be.tokenize(PLAIN_SUFFIX)
    params = SamplingParams(max_new_tokens=12, stop=["\n\n"])
    fast = force_answers(be, prompts, traces, [8, 24, 48], suffix, params, shared_prefix=True)
    slow = force_answers(be, prompts, traces, [8, 24, 48], suffix, params, shared_prefix=False)
    assert [[a and a.token_ids for a in r] for r in fast] == [
        [a and a.token_ids for a in r] for r in slow
    ]
