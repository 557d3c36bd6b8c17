"""Crash safety (issue 10): an interrupted command resumed with --resume gives exactly what an
uninterrupted one does. Interruptions come from the `selfteach.runs.crash_point` hook
(SELFTEACH_CRASH_AT=<point>; in-process it raises SimulatedCrash, in a subprocess it is a
real kill -9), and torn writes are reproduced byte for byte: a checkpoint file cut short, a
last JSONL line cut mid-row. Everything runs on tiny-random with a few steps."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from selfteach.data.records import Problem
from selfteach.runs import RunDir, SimulatedCrash, item_seed

ROOT = Path(__file__).resolve().parents[1]
ROWS = [
    {"prompt": f"What is {a} plus {b}?", "completion": f"The answer is {a + b}."}
    for a, b in [(2, 2), (3, 5), (7, 1), (6, 3), (4, 4), (9, 2)]
]


def crash_at(monkeypatch, point: str | None) -> None:
    """Arm (or disarm, with None) the in-process crash hook."""
    if point is None:
        monkeypatch.delenv("SELFTEACH_CRASH_AT", raising=False)
        return
    monkeypatch.setenv("SELFTEACH_CRASH_AT", point)
    monkeypatch.setenv("SELFTEACH_CRASH_HOW", "raise")


def tear_last_line(path: Path, keep_lines: int) -> None:
    """What a kill during an append leaves: `keep_lines` whole lines, then half of the next."""
    lines = path.read_text().splitlines()
    path.write_text(
        "".join(x + "\n" for x in lines[:keep_lines])
        + lines[keep_lines][: len(lines[keep_lines]) // 2]
    )


def weights(model_dir: Path) -> dict:
    return load_file(str(model_dir / "model.safetensors"))


def assert_same_weights(a: Path, b: Path, tol: float = 1e-6) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) <= tol


# ---- seeds ---------------------------------------------------------------------------------
def test_item_seed_is_stable_and_keyed_by_id():
    # crc32, not hash(): the same in every process (str hashes are salted per process)
    assert item_seed(3, "a") == (3 * 1_000_003 + zlib.crc32(b"a")) % 2**31
    code = "from selfteach.runs import item_seed; print(item_seed(7, 'p1', 'p2', 't0'))"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "random"}
    outs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout
        for _ in range(2)
    }
    assert outs == {f"{item_seed(7, 'p1', 'p2', 't0')}\n"}
    assert len({item_seed(0, f"p{i}") for i in range(1000)}) == 1000
    assert item_seed(0, "p1") != item_seed(1, "p1") and item_seed(0, "p1", "p2") != item_seed(
        0, "p1p2"
    )


# ---- issue 10 item 4: record the temperature that ran --------------------------------------
def test_eval_accuracy_records_the_temperature_that_ran(tmp_path):
    from selfteach.cli import app

    base = [
        "eval",
        "accuracy",
        "--model",
        "tiny-random",
        "--limit",
        "2",
        "--samples",
        "2",
        "--max-new-tokens",
        "4",
    ]
    r = CliRunner().invoke(app, base + ["--out", str(tmp_path / "auto")])  # default temperature 0
    assert r.exit_code == 0, r.output
    r2 = CliRunner().invoke(app, base + ["--temperature", "0.7", "--out", str(tmp_path / "t07")])
    assert r2.exit_code == 0, r2.output
    # it sampled at 0.7: the same samples as an explicit --temperature 0.7 ...
    rows = [(tmp_path / d / "outputs.jsonl").read_text() for d in ("auto", "t07")]
    assert rows[0] == rows[1]
    # ... and says so everywhere: config.yaml, summary.json and the printed table
    assert yaml.safe_load((tmp_path / "auto" / "config.yaml").read_text())["temperature"] == 0.7
    notes = json.loads((tmp_path / "auto" / "summary.json").read_text())["notes"]
    assert any(n.startswith("temperature 0.7,") for n in notes), notes
    assert "temperature 0.7," in r.output and "temperature 0.0" not in r.output


# ---- issue 10 item 5: resumed loops sample as uninterrupted ones ---------------------------
def test_improve_candidates_resume_equals_uninterrupted(tiny_backend, tmp_path, monkeypatch):
    from selfteach.improve.candidates import generate_candidates

    probs = [Problem(id=f"p{i}", question=f"What is {i} + 1?", answer=str(i + 1)) for i in range(5)]
    kw = dict(n=2, temperatures=[0.7, 1.0], max_new_tokens=5, batch_size=2, seed=3, progress=False)
    full = generate_candidates(tiny_backend, probs, run=RunDir(tmp_path / "full"), **kw)
    ref = (tmp_path / "full" / "candidates.jsonl").read_text()
    # killed after p0 (mid-batch), after p1 (a batch boundary), after p2; and a torn append
    for point in ("p0", "p1", "p2", "torn"):
        run = RunDir(tmp_path / point)
        crash_at(monkeypatch, f"candidates:{'p3' if point == 'torn' else point}")
        with pytest.raises(SimulatedCrash):
            generate_candidates(tiny_backend, probs, run=run, **kw)
        if point == "torn":
            tear_last_line(run.file("candidates.jsonl"), 7)  # p0-p2 and one of p3's two rows
        crash_at(monkeypatch, None)
        again = generate_candidates(tiny_backend, probs, run=run, **kw)
        assert again == full, point
        assert run.file("candidates.jsonl").read_text() == ref, point


def test_eval_accuracy_resume_equals_uninterrupted(tmp_path, monkeypatch):
    from selfteach.evaluate.accuracy import AccuracyConfig, run_accuracy

    cfg = AccuracyConfig(
        model="tiny-random", limit=5, samples=2, temperature=0.9, max_new_tokens=4, batch_size=2
    )
    run_accuracy(cfg, tmp_path / "full", progress=False)
    ref = (tmp_path / "full" / "outputs.jsonl").read_text()
    ids = [json.loads(x)["id"] for x in ref.splitlines()]
    for point in (ids[0], ids[1], ids[2], "torn"):
        out = tmp_path / f"run-{point}"
        crash_at(monkeypatch, f"accuracy:{ids[3] if point == 'torn' else point}")
        with pytest.raises(SimulatedCrash):
            run_accuracy(cfg, out, progress=False)
        if point == "torn":
            tear_last_line(out / "outputs.jsonl", 3)
        crash_at(monkeypatch, None)
        run_accuracy(cfg, out, resume=True, progress=False)
        assert (out / "outputs.jsonl").read_text() == ref, point
        assert (
            json.loads((out / "metrics.json").read_text())["accuracy"]
            == json.loads((tmp_path / "full" / "metrics.json").read_text())["accuracy"]
        )


def test_eval_anytime_resume_equals_uninterrupted(tmp_path):
    from selfteach.evaluate.anytime import AnytimeConfig, evaluate_anytime

    cfg = AnytimeConfig(
        model="tiny-random", limit=3, budgets=[4, 8], answer_tokens=3, temperature=0.9, batch_size=2
    )
    evaluate_anytime(cfg, tmp_path / "full", progress=False)
    ref = (tmp_path / "full" / "outputs.jsonl").read_text()
    out = tmp_path / "run"
    evaluate_anytime(cfg, out, progress=False)
    tear_last_line(out / "outputs.jsonl", 1)  # killed while writing the 2nd item of the first batch
    evaluate_anytime(cfg, out, resume=True, progress=False)
    assert (out / "outputs.jsonl").read_text() == ref


def test_judge_resume_equals_uninterrupted(tiny_backend, tmp_path):
    from selfteach.judge.runner import JudgeRunConfig, run_judge

    f = tmp_path / "items.jsonl"
    f.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"q{i}",
                    "prompt": f"What is {i}+1?",
                    "responses": [f"{i + 1}", "7"],
                    "best": 0,
                }
            )
            + "\n"
            for i in range(3)
        )
    )
    cfg = JudgeRunConfig(
        model="tiny-random",
        data=str(f),
        mode="multi",
        ks=[2],
        max_new_tokens=8,
        temperature=0.9,
        items_per_call=2,
    )
    full = run_judge(cfg, tmp_path / "full", backend=tiny_backend, progress=False)
    lines = (tmp_path / "full" / "judgments.jsonl").read_text().splitlines()
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(tmp_path / "full" / "config.yaml", out / "config.yaml")
    (out / "judgments.jsonl").write_text(lines[0] + "\n" + lines[1][:40])  # killed while writing q1
    again = run_judge(cfg, out, backend=tiny_backend, resume=True, progress=False)
    assert [s["text"] for r in again for s in r["samples"]] == [
        s["text"] for r in full for s in r["samples"]
    ]
    assert (out / "judgments.jsonl").read_text().splitlines() == lines


# ---- checkpoints -----------------------------------------------------------------------------
SFT = dict(objective="deft", max_steps=4, batch_size=2, save_steps=2, diag_every=2)


@pytest.fixture(scope="module")
def sft_full(tmp_path_factory):
    """An uninterrupted 4-step SFT run (checkpoints at steps 2 and 4)."""
    from selfteach.train.sft import train_sft

    out = tmp_path_factory.mktemp("sft") / "full"
    return out, train_sft("tiny-random", ROWS, out, **SFT)


def _train_rows(out: Path) -> list[tuple]:
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [
        (r.get("kind"), r.get("step"), r.get("loss"), r.get("mean_p"))
        for r in rows
        if "train_runtime" not in r
    ]


@pytest.mark.parametrize(
    "damage,why",
    [
        ("trainer_state.json:rm", "no trainer_state.json"),
        ("trainer_state.json:cut", "trainer_state.json is torn"),
        ("model.safetensors:cut", "model.safetensors is truncated"),
        ("model.safetensors:rm", "no model weights"),
        ("optimizer.pt:cut", "optimizer.pt is truncated"),
        ("scheduler.pt:rm", "no scheduler.pt"),
    ],
)
def test_checkpoint_completeness(sft_full, tmp_path, capsys, damage, why):
    from selfteach.train.common import checkpoint_problem, last_complete_checkpoint

    ckpts = tmp_path / "checkpoints"
    shutil.copytree(sft_full[0] / "checkpoints", ckpts)
    assert checkpoint_problem(ckpts / "checkpoint-4") is None
    name, how = damage.split(":")
    f = ckpts / "checkpoint-4" / name
    if how == "rm":
        f.unlink()
    else:  # what a kill -9 during this file's write leaves behind
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    assert checkpoint_problem(ckpts / "checkpoint-4") == why
    assert last_complete_checkpoint(ckpts) == str(ckpts / "checkpoint-2")
    assert (ckpts / "incomplete-checkpoint-4").is_dir() and not (ckpts / "checkpoint-4").exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoint-4: incomplete" in err[0] and why in err[0]


def test_mean_train_loss_weights_log_intervals():
    from selfteach.train.common import mean_train_loss

    hist = [{"loss": 2.0, "step": 1}, {"loss": 4.0, "step": 3}, {"train_loss": 9.0, "step": 3}]
    assert mean_train_loss(hist) == pytest.approx((2.0 + 4.0 * 2) / 3)
    assert mean_train_loss([]) is None


@pytest.mark.parametrize("point", ["train:step:3", "train:save:4+torn"])
def test_train_sft_kill_and_resume_equals_uninterrupted(sft_full, tmp_path, monkeypatch, point):
    """Killed after step 3 (checkpoint-2 is the last one), or while checkpoint-4 was being written
    (its optimizer.pt cut short): --resume gives the uninterrupted weights, logs and train_loss."""
    from selfteach.train.sft import train_sft

    full_out, full = sft_full
    out = tmp_path / "run"
    crash_at(monkeypatch, point.split("+")[0])
    with pytest.raises(SimulatedCrash):
        train_sft("tiny-random", ROWS, out, **SFT)
    if point.endswith("+torn"):
        opt = out / "checkpoints" / "checkpoint-4" / "optimizer.pt"
        opt.write_bytes(opt.read_bytes()[:1000])
    crash_at(monkeypatch, None)
    res = train_sft("tiny-random", ROWS, out, resume=True, **SFT)
    assert res["resumed_from"].endswith("checkpoint-2")
    assert_same_weights(full_out / "model", out / "model")
    # train_loss averages all 4 steps, not only the 2 resumed ones
    assert res["train_loss"] == pytest.approx(full["train_loss"], abs=1e-6) and res["steps"] == 4
    assert _train_rows(out) == _train_rows(
        full_out
    )  # no duplicate or missing steps in metrics.jsonl


@pytest.mark.slow
def test_train_sft_cli_sigkill_and_resume(sft_full, tmp_path):
    """A real kill -9 of `selfteach train sft` right after step 3, then `--resume`."""
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "selfteach",
        "train",
        "sft",
        "--model",
        "tiny-random",
        "--data",
        str(data),
        "--out",
        str(out),
        "--objective",
        "deft",
        "--max-steps",
        "4",
        "--batch-size",
        "2",
        "--save-steps",
        "2",
        "--diag-every",
        "2",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    p = subprocess.run(
        cmd, capture_output=True, text=True, env={**env, "SELFTEACH_CRASH_AT": "train:step:3"}
    )
    assert p.returncode == -9, p.stderr[-2000:]
    p = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    assert_same_weights(sft_full[0] / "model", out / "model")


@pytest.mark.slow
def test_train_dpo_kill_and_resume_equals_uninterrupted(tmp_path, monkeypatch):
    from selfteach.data.records import PreferencePair
    from selfteach.train.dpo import DPOArgs, train_dpo

    pairs = [
        PreferencePair(
            prompt=f"Question: what is 2 + {i}?\nAnswer:",
            chosen=f" {2 + i}.",
            rejected=f" {3 + i}.",
        )
        for i in range(8)
    ]
    args = DPOArgs(model="tiny-random", max_steps=4, batch_size=2, save_steps=2, learning_rate=1e-3)
    full = train_dpo(pairs, args, out=tmp_path / "full")
    for point in ("train:step:3", "train:save:4+torn"):
        out = tmp_path / point.replace(":", "-")
        crash_at(monkeypatch, point.split("+")[0])
        with pytest.raises(SimulatedCrash):
            train_dpo(pairs, args, out=out)
        if point.endswith("+torn"):
            (out / "trainer" / "checkpoint-4" / "trainer_state.json").write_text('{"global_')
        crash_at(monkeypatch, None)
        res = train_dpo(pairs, args, out=out, resume=True)
        assert_same_weights(full.model_dir, res.model_dir)
        assert res.metrics["train_loss"] == pytest.approx(full.metrics["train_loss"], abs=1e-6)
        assert [h.get("loss") for h in res.log_history] == [h.get("loss") for h in full.log_history]
        assert not list((out / "trainer").glob("checkpoint-*"))  # removed once the model is saved
        assert (
            train_dpo(pairs, args, out=out, resume=True).metrics == res.metrics
        )  # finished: nothing to do


@pytest.mark.slow
def test_train_grpo_kill_and_resume_equals_uninterrupted(tmp_path, monkeypatch):
    """GRPO samples its groups during training, so this also checks the restored RNG state.
    The reward (longer completions score higher) varies within a group: real updates."""
    import selfteach.train.grpo as grpo
    from selfteach.data.builtin import builtin_problems

    def length_reward(prompts, completions, **kw):
        return [float(len(str(c))) for c in completions]

    monkeypatch.setattr(grpo, "resolve_reward", lambda spec: length_reward)
    probs = builtin_problems("arithmetic", n=8)
    args = grpo.GRPOArgs(
        model="tiny-random",
        max_steps=4,
        batch_size=4,
        num_generations=4,
        max_completion_length=6,
        save_steps=2,
        learning_rate=1e-3,
    )
    full = grpo.train_grpo(probs, args, out=tmp_path / "full")
    from selfteach.backends.models import resolve

    with pytest.raises(AssertionError):  # the weights do move
        assert_same_weights(resolve("tiny-random"), full.model_dir)
    out = tmp_path / "run"
    crash_at(monkeypatch, "train:step:3")
    with pytest.raises(SimulatedCrash):
        grpo.train_grpo(probs, args, out=out)
    crash_at(monkeypatch, None)
    res = grpo.train_grpo(probs, args, out=out, resume=True)
    assert_same_weights(full.model_dir, res.model_dir)
    assert [h.get("reward") for h in res.log_history] == [h.get("reward") for h in full.log_history]


def test_train_dpo_grpo_cli_have_resume():
    from selfteach.cli import app

    for cmd in ("dpo", "grpo"):
        out = CliRunner().invoke(app, ["train", cmd, "--help"], env={"COLUMNS": "200"}).output
        assert "--resume" in out and "--save-steps" in out


def test_train_dpo_grpo_leftover_checkpoints_need_resume(tmp_path, capsys):
    """Without --resume, an interrupted run's checkpoints are an error before any model loads;
    with it, an incomplete one is set aside and training starts from the last complete one
    (none)."""
    from selfteach.data.builtin import builtin_problems
    from selfteach.data.records import PreferencePair
    from selfteach.errors import SelfteachError
    from selfteach.train.common import resume_checkpoint
    from selfteach.train.dpo import DPOArgs, train_dpo
    from selfteach.train.grpo import GRPOArgs, train_grpo

    (tmp_path / "trainer" / "checkpoint-2").mkdir(
        parents=True
    )  # a kill before anything was written
    pair = PreferencePair(prompt="q", chosen="a", rejected="b")
    with pytest.raises(SelfteachError, match="pass --resume"):
        train_dpo([pair], DPOArgs(model="no-such-model"), out=tmp_path)
    with pytest.raises(SelfteachError, match="pass --resume"):
        train_grpo(
            builtin_problems("arithmetic", n=4),
            GRPOArgs(model="no-such-model", num_generations=4, batch_size=4),
            out=tmp_path,
        )
    assert resume_checkpoint(tmp_path / "trainer", resume=True) is None
    assert "checkpoint-2: incomplete (no trainer_state.json)" in capsys.readouterr().err
    assert (
        resume_checkpoint(tmp_path / "trainer", resume=False) is None
    )  # set aside: no longer in the way
