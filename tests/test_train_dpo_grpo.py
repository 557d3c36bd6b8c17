"""`train dpo` / `train grpo`: TRL glue on tiny-random, rewards, bad input, accelerate launch."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from typer.testing import CliRunner

from selfteach.data.builtin import builtin_problems
from selfteach.data.records import PreferencePair
from selfteach.errors import SelfteachError
from selfteach.train.common import TrainConfig, precision_kwargs, trl_common_kwargs
from selfteach.train.dpo import DPOArgs, read_pairs, train_dpo
from selfteach.train.grpo import GRPOArgs, grpo_config, prompts_dataset, train_grpo
from selfteach.train.rewards import gold_answer_reward, resolve_reward

ROOT = Path(__file__).resolve().parents[1]


def make_pairs(n=8):
    return [
        PreferencePair(
            prompt=f"Question: what is 2 + {i}?\nAnswer:",
            chosen=f" 2 + {i} = {2 + i}. The answer is {2 + i}.",
            rejected=f" 2 + {i} = {3 + i}. The answer is {3 + i}.",
        )
        for i in range(n)
    ]


def write_pairs(path, pairs):
    path.write_text("".join(p.model_dump_json() + "\n" for p in pairs))
    return path


# ---- glue ---------------------------------------------------------------------------------
def test_cpu_precision_and_common_kwargs(tmp_path):
    assert precision_kwargs("cpu") == {"use_cpu": True, "bf16": False, "fp16": False}
    assert precision_kwargs("cuda")["bf16"] is True
    kw = trl_common_kwargs(TrainConfig(warmup_ratio=0.1, max_steps=3), tmp_path, "cpu")
    assert kw["report_to"] == "none" and kw["warmup_steps"] == 0.1 and kw["max_steps"] == 3
    assert kw["activation_checkpointing"] is False
    # for --resume
    assert kw["save_strategy"] == "steps" and kw["save_steps"] == 50 and kw["save_total_limit"] == 2


def test_read_pairs_errors(tmp_path):
    good = make_pairs(2)
    f = tmp_path / "p.jsonl"
    f.write_text(good[0].model_dump_json() + "\n{not json\n")
    with pytest.raises(SelfteachError, match=r"p.jsonl:2: malformed JSON"):
        read_pairs(f)
    f.write_text(
        good[0].model_dump_json() + "\n" + json.dumps({"prompt": "x", "chosen": "a"}) + "\n"
    )
    with pytest.raises(SelfteachError, match=r"p.jsonl:2: field 'rejected'"):
        read_pairs(f)
    f.write_text(json.dumps({"prompt": "x", "chosen": "", "rejected": "b"}) + "\n")
    with pytest.raises(SelfteachError, match=r"p.jsonl:1: field 'chosen'"):
        read_pairs(f)
    f.write_text(json.dumps({"prompt": "x", "chosen": "same", "rejected": "same"}) + "\n")
    with pytest.raises(SelfteachError, match=r"p.jsonl:1: chosen and rejected are identical"):
        read_pairs(f)
    f.write_text(json.dumps({"prompt": "x", "chosen": "a", "rejected": "b", "score": 1}) + "\n")
    # extra columns (TRL datasets have them) are ignored
    assert [p.chosen for p in read_pairs(f)] == ["a"]
    assert len(read_pairs(write_pairs(f, good))) == 2


# ---- rewards ------------------------------------------------------------------------------
def test_gold_answer_reward_known():
    comps = [
        "3 + 4 = 7. The answer is 7.",
        "The answer is \\boxed{\\frac{1}{2}}",
        "I think 12",
        "no idea",
    ]
    assert gold_answer_reward(["p"] * 4, comps, answer=["7", "0.5", "13", "1"]) == [
        1.0,
        1.0,
        0.0,
        0.0,
    ]
    chat = [[{"role": "assistant", "content": "The answer is 9."}]]
    assert gold_answer_reward(["p"], chat, answer=["9"]) == [1.0]
    with pytest.raises(SelfteachError, match="no 'answer' column"):
        gold_answer_reward(["p"], ["x"])


def test_resolve_reward(monkeypatch):
    import types

    assert resolve_reward("gold-answer") is gold_answer_reward
    with pytest.raises(SelfteachError, match="choose gold-answer, judge:MODEL or judge-rule"):
        resolve_reward("accuracy")
    with pytest.raises(SelfteachError, match="missing model"):
        resolve_reward("judge:")
    # judge rewards resolve lazily through the judge package's public functions
    fake = types.SimpleNamespace(judge_reward=lambda model, **kw: ("judge", model),
                                 judge_rule_reward=lambda **kw: ("rule",))
    monkeypatch.setitem(sys.modules, "selfteach.judge.rewards", fake)
    assert resolve_reward("judge:smollm2-135m") == ("judge", "smollm2-135m")
    assert resolve_reward("judge-rule") == ("rule",)


# ---- DPO ----------------------------------------------------------------------------------
@pytest.mark.parametrize("precompute,lora", [(True, False), (False, False), (False, True)])
def test_train_dpo_tiny(tmp_path, precompute, lora):
    from transformers import AutoModelForCausalLM

    from selfteach.backends.models import resolve

    # full batch, constant lr: every step sees the same 8 pairs, so the margin must grow
    args = DPOArgs(
        model="tiny-random",
        max_steps=3,
        batch_size=8,
        learning_rate=3e-3,
        lr_scheduler="constant",
        precompute_ref=precompute,
        lora=lora,
    )
    res = train_dpo(make_pairs(), args, out=tmp_path)
    logs = [h for h in res.log_history if "loss" in h]
    assert len(logs) == 3 and all("rewards/margins" in h for h in logs)
    assert logs[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)  # policy == reference at step 1
    margins = [h["rewards/margins"] for h in logs]
    # towards the chosen answers
    assert margins[0] == pytest.approx(0.0, abs=1e-6) and margins[2] > margins[1] > 0
    assert (tmp_path / "train_curves.png").exists() and (tmp_path / "train_log.jsonl").exists()
    # a plain (merged) model directory
    trained = AutoModelForCausalLM.from_pretrained(str(res.model_dir))
    base = AutoModelForCausalLM.from_pretrained(str(resolve("tiny-random")))
    diff = sum(
        (a - b).abs().sum().item()
        for a, b in zip(trained.parameters(), base.parameters(), strict=True)
    )
    assert diff > 0 and not any("lora" in n for n, _ in trained.named_parameters())


def test_cli_train_dpo(tmp_path):
    from selfteach.cli import app

    f = write_pairs(tmp_path / "pairs.jsonl", make_pairs(4))
    res = CliRunner().invoke(
        app,
        [
            "train",
            "dpo",
            "--pairs",
            str(f),
            "--model",
            "tiny-random",
            "--out",
            str(tmp_path / "o"),
            "--max-steps",
            "1",
            "--batch-size",
            "2",
        ],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o" / "model" / "config.json").exists()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x", "chosen": "a", "rejected": "b"}\n{"prompt": "x"}\n')
    res = CliRunner().invoke(app, ["train", "dpo", "--pairs", str(bad), "--model", "tiny-random"])
    assert res.exit_code != 0 and "bad.jsonl:2" in str(res.exception)


# ---- GRPO ---------------------------------------------------------------------------------
def test_grpo_loss_types_configure_trl(tmp_path):
    cfgs = {
        lt: grpo_config(GRPOArgs(loss_type=lt, num_generations=4, batch_size=4), tmp_path, "cpu")
        for lt in ("grpo", "dr_grpo", "dapo")
    }
    assert {lt: c.loss_type for lt, c in cfgs.items()} == {
        "grpo": "grpo",
        "dr_grpo": "dr_grpo",
        "dapo": "dapo",
    }
    assert cfgs["dr_grpo"].scale_rewards == "none" and cfgs["grpo"].scale_rewards == "group"
    # None = symmetric
    assert cfgs["dapo"].epsilon_high == 0.28 and cfgs["grpo"].epsilon_high in (None, 0.2)
    assert all(c.use_cpu and not c.bf16 for c in cfgs.values())
    with pytest.raises(ValidationError, match="loss_type"):  # checked when the options are read
        GRPOArgs(loss_type="ppo")


def test_grpo_prompts_match_evaluation(tiny_backend):
    from selfteach.evaluate.prompts import solve_prompt

    probs = builtin_problems("arithmetic", n=2)
    ds = prompts_dataset(probs, tiny_backend.tokenizer)
    assert (
        ds[0]["prompt"] == solve_prompt(tiny_backend, probs[0])
        and ds[0]["answer"] == probs[0].answer
    )


def test_train_grpo_tiny(tmp_path):
    probs = builtin_problems("arithmetic", n=4)
    res = train_grpo(
        probs,
        GRPOArgs(
            model="tiny-random",
            max_steps=1,
            batch_size=4,
            num_generations=4,
            max_completion_length=8,
            loss_type="dr_grpo",
        ),
        out=tmp_path,
    )
    step = next(h for h in res.log_history if "reward" in h)
    assert step["rewards/gold_answer/mean"] == 0.0  # a random model never hits the answer
    assert (tmp_path / "model" / "config.json").exists()


def test_grpo_bad_input(tmp_path):
    from selfteach.data.records import Problem

    with pytest.raises(SelfteachError, match="needs gold answers: 1 problems have none"):
        train_grpo([Problem(id="1", question="q")], GRPOArgs(model="tiny-random"), out=tmp_path)
    with pytest.raises(SelfteachError, match="multiple of --num-generations"):
        train_grpo(builtin_problems("arithmetic", n=2), GRPOArgs(model="tiny-random", batch_size=6,
                                                                 num_generations=4), out=tmp_path)
    from selfteach.cli import app

    res = CliRunner().invoke(
        app, ["train", "grpo", "--problems", "builtin:arithmetic", "--reward", "vibes"]
    )
    assert res.exit_code != 0 and "--reward 'vibes'" in str(res.exception)


# ---- accelerate ---------------------------------------------------------------------------
def test_accelerate_launch_single_process_cpu(tmp_path):
    """The training entry point runs under `accelerate launch --num_processes 1` on CPU."""
    f = write_pairs(tmp_path / "pairs.jsonl", make_pairs(4))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [
        str(Path(sys.executable).parent / "accelerate"),
        "launch",
        "--config_file",
        str(ROOT / "examples" / "accelerate" / "cpu.yaml"),
        "--num_processes",
        "1",
        "-m",
        "selfteach",
        "train",
        "dpo",
        "--pairs",
        str(f),
        "--model",
        "tiny-random",
        "--out",
        str(tmp_path / "o"),
        "--max-steps",
        "2",
        "--batch-size",
        "2",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout[proc.stdout.rindex("{\n  \"model_dir\""):])
    assert out["global_step"] == 2 and (tmp_path / "o" / "model" / "model.safetensors").exists()
    assert torch.isfinite(torch.tensor(out["final_loss"]))
