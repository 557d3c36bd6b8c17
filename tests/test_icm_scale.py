"""ICM beyond one context (`ICMConfig.context_claims`): bounded prompts, O(1) bookkeeping
per step, resume, and labels close to the full-context search where both fit.

Uses the deterministic `SyntheticBackend` (selfteach.elicit.synthetic): its prompts are
plain text we can count, and its read-out rewards truthful context labels.
"""

from __future__ import annotations

import json
import math
import random
import statistics

import pytest
from pydantic import ValidationError

from selfteach.data.builtin import builtin_claims
from selfteach.elicit import ICMConfig, icm
from selfteach.elicit.rules import make_rule
from selfteach.elicit.search import _Search
from selfteach.elicit.synthetic import SyntheticBackend, synthetic_backend_for, synthetic_task
from selfteach.errors import SelfteachError
from selfteach.runs import RunDir


def _blocks(prompt: str) -> int:
    return sum(1 for b in prompt.split("\n\n") if b.strip())


def test_bounded_prompts_hold_at_most_k_examples_whatever_n():
    for n in (40, 400):
        cl, truth, strength = synthetic_task(n, seed=1)
        be = SyntheticBackend(truth, strength)
        res = icm(cl, be, config=ICMConfig(context_claims=4, iters=n, seed=0), progress=False)
        assert max(_blocks(p) for p in be.prompts_seen) == 5  # 4 examples + the scored claim
        assert res.metrics["context_claims"] == 4
        # a claim never sees itself: its text is not among its context's claims
        for p in be.prompts_seen[-50:]:
            blocks = [b for b in p.split("\n\n") if b.strip()]
            assert blocks[-1].splitlines()[0] not in [b.splitlines()[0] for b in blocks[:-1]]


def test_bounded_cost_per_claim_does_not_grow_with_n():
    per_claim = {}
    for n in (
        500,
        2000,
    ):  # beyond 256 labeled claims a step costs at most ~4 scorings (refresh period ~ |D|)
        cl, truth, strength = synthetic_task(n, seed=2)
        res = icm(
            cl,
            SyntheticBackend(truth, strength),
            config=ICMConfig(context_claims=8, seed=0),
            progress=False,
        )
        per_claim[n] = res.metrics["tokens_per_claim"]
    assert per_claim[2000] < 1.2 * per_claim[500]
    # the full-context search on the same sets reads ~n/2 examples per claim: it grows
    cl, truth, strength = synthetic_task(200, seed=2)
    full = icm(cl, SyntheticBackend(truth, strength), config=ICMConfig(seed=0), progress=False)
    assert full.metrics["tokens_per_claim"] > 3 * per_claim[500]


def test_running_tally_equals_a_fresh_count():
    """The bounded search updates U's parts per changed claim; after many random changes
    they equal a computation from scratch (I, True count, zero-shot agreement exactly; the
    P sum up to rounding)."""
    cl = builtin_claims("planets", seed=0)  # groups of 4, at most one True: violations happen
    be = synthetic_backend_for(cl, seed=0)
    rule = make_rule("exclusive", cl)
    s = _Search(cl, be, rule, ICMConfig(context_claims=6, seed=0))
    zs = s.scorer.zero_shot()
    s.zs_label = {i: v[0] >= v[1] for i, v in zs.items()}
    labels = s.init_labels(zs)
    s.scorer.refresh(labels)
    labels = s.retally(labels)
    rng = random.Random(0)
    for _ in range(300):
        i, j = rng.randrange(len(cl)), rng.randrange(len(cl))
        labels = s.change(labels, {i: rng.random() < 0.5, j: rng.random() < 0.5})
        fresh = s.retally(dict(labels))
        t, f = labels.tally, fresh.tally
        assert (t.icount, t.ntrue, t.nagree, t.moved, t.bad) == (
            f.icount,
            f.ntrue,
            f.nagree,
            f.moved,
            f.bad,
        )
        assert t.icount == rule.count(labels)
        assert sorted(s.violations(labels)) == sorted(rule.violations(labels))
        assert t.psum == pytest.approx(f.psum, abs=1e-9)


def test_rejection_sampling_draws_the_weighted_distribution():
    cl = builtin_claims("planets", seed=0)
    s = _Search(
        cl,
        synthetic_backend_for(cl),
        make_rule("exclusive", cl),
        ICMConfig(context_claims=4, seed=3),
    )
    labels = {0: True, 5: False}
    w = s.weights(labels)
    draws = 20000
    counts = [0] * len(cl)
    for _ in range(draws):
        counts[s.sample(labels)] += 1
    related = [i for i, x in enumerate(w) if x > 1]
    assert related  # the partners of the two labeled claims
    share = sum(counts[i] for i in related) / draws
    expected = sum(w[i] for i in related) / sum(w)
    assert share == pytest.approx(expected, abs=4 * math.sqrt(expected * (1 - expected) / draws))


def test_bounded_labels_close_to_full_context_where_both_fit():
    """128 capital claims (both searches fit), 6 seeds: the bounded search (8 examples per
    claim) labels about as well as the full one and far above zero-shot."""
    full, bounded, zero = [], [], []
    for seed in range(6):
        cl = builtin_claims("capitals", seed=seed)
        for cfg, out in (
            (ICMConfig(seed=seed), full),
            (ICMConfig(seed=seed, context_claims=8), bounded),
        ):
            res = icm(
                cl,
                synthetic_backend_for(cl, seed=seed, w_ctx=0.5),
                task="comparison",
                config=cfg,
                progress=False,
            )
            out.append(res.metrics["accuracy"])
        zero.append(res.metrics["zero_shot_accuracy"])
    assert statistics.mean(bounded) > statistics.mean(full) - 0.05
    assert statistics.mean(bounded) > statistics.mean(zero) + 0.2


def _metrics(path) -> list[dict]:
    rows = [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("time", "seconds")} for r in rows]


@pytest.mark.parametrize("select", ["random", "related"])
def test_bounded_resume_after_interrupts_gives_identical_results(tmp_path, select):
    cl, truth, strength = synthetic_task(60, seed=7, groups=True)
    cfg = ICMConfig(
        iters=80,
        seed=2,
        context_claims=5,
        context_share=3,
        context_select=select,
        checkpoint_every=4,
    )
    full = icm(
        cl,
        SyntheticBackend(truth, strength),
        task="exclusive",
        config=cfg,
        run=RunDir.create(tmp_path / "full", cfg, seed=2),
        progress=False,
    )
    run = RunDir.create(tmp_path / "r", cfg, seed=2)
    steps = [0]
    for fail_after in (14, 11, 11):  # model calls into each try (the run makes ~50)
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
        assert steps[-1] <= ck["step"] < 80 and ck["step"] % 4 == 0 and not ck["done"]
        steps.append(ck["step"])
    assert steps[-1] > 0
    resumed = icm(
        cl, SyntheticBackend(truth, strength), task="exclusive", config=cfg, run=run, progress=False
    )
    assert resumed.labels == full.labels and resumed.margins == full.margins
    assert resumed.trajectory == full.trajectory
    assert _metrics(tmp_path / "r") == _metrics(tmp_path / "full")


def test_default_checkpoint_interval_is_every_step_and_bounded_scales_with_n(tmp_path):
    cl, truth, strength = synthetic_task(300, seed=1)
    for cfg, every, tries in (
        (ICMConfig(iters=60, seed=0), 1, range(20, 80, 7)),
        (ICMConfig(iters=300, seed=0, context_claims=4), 15, range(20, 200, 15)),
    ):
        seen = set()
        for fail_after in tries:
            run = RunDir.create(tmp_path / f"{every}-{fail_after}", cfg, seed=0)
            with pytest.raises(KeyboardInterrupt):
                icm(
                    cl,
                    SyntheticBackend(truth, strength, fail_after=fail_after),
                    config=cfg,
                    run=run,
                    progress=False,
                )
            ck = json.loads(
                (tmp_path / f"{every}-{fail_after}" / "icm_checkpoint.json").read_text()
            )
            seen.add(ck["step"])
        assert all(step % every == 0 for step in seen) and len(seen) > 1, seen
        if every == 1:
            assert any(step % 15 for step in seen)


def test_bounded_context_needs_fast_scoring_one_line_cli_error(tmp_path, capsys):
    with pytest.raises(ValidationError):
        ICMConfig(scoring="exact", context_claims=4)
    from selfteach.cli import run

    out = tmp_path / "run"
    for args, shown in (
        (["--scoring", "exact", "--context-claims", "4"], "--context-claims"),
        (["--context-claims", "0"], "--context-claims"),
    ):
        argv = ["elicit", "--model", "tiny-random", "--claims", "builtin:planets",
                "--out", str(out), *args]
        assert run(argv) == 2
        lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert len(lines) == 1 and shown in lines[0], lines
        assert not out.exists()


def test_sums_n_extends_sums_and_rejects_bad_sizes():
    small, big = builtin_claims("sums", seed=3), builtin_claims("sums-1000", seed=3)
    assert len(big) == 1000 and big[:128] == small
    assert len({c.id for c in big}) == 1000
    for bad in ("sums-0", "sums-x", "sums-99999999"):
        with pytest.raises(SelfteachError, match="sums-N"):
            builtin_claims(bad)


def test_bounded_scorer_takes_the_refresh_options():
    cl, truth, strength = synthetic_task(12, seed=0)
    s = _Search(
        cl,
        SyntheticBackend(truth, strength),
        make_rule("binary", cl),
        ICMConfig(context_claims=4, refresh_every=7, refresh_frac=0.5, context_share=3),
    )
    assert (s.scorer.refresh_every, s.scorer.refresh_frac, s.scorer.k, s.scorer.n_blocks) == (
        7,
        0.5,
        4,
        4,
    )
