"""`train sft` (arXiv 2602.11424 objectives through TRL's SFTTrainer) on tiny-random."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import typer
from typer.testing import CliRunner

from selfteach.errors import SelfteachError
from selfteach.train.objectives import entropic_loss, token_stats
from selfteach.train.sft import SFTRunConfig, build_trainer, load_sft_rows, train_sft

ROWS = [{"prompt": f"What is {a} plus {b}?", "completion": f"The answer is {a + b}."}
        for a, b in [(2, 2), (3, 5), (7, 1), (6, 3), (4, 4), (9, 2)]]


@pytest.fixture
def data(tmp_path):
    f = tmp_path / "train.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return f


def _app():
    from selfteach.train.commands import train_app

    app = typer.Typer()
    app.add_typer(train_app, name="train")
    app.command("noop")(lambda: None)  # a second command keeps "train" a group
    return app


# ---- data ---------------------------------------------------------------------------------
def test_load_rows_formats(tmp_path):
    assert load_sft_rows(ROWS[:2]) == ROWS[:2]
    msgs = [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    ]
    assert load_sft_rows(msgs) == [{"prompt": [{"role": "user", "content": "hi"}],
                                    "completion": [{"role": "assistant", "content": "hello"}]}]
    # MAWPS fields
    probs = [{"input": "Tom has 3 apples and eats 1. How many left?", "target": 2.0}]
    assert load_sft_rows(probs) == [
        {"question": probs[0]["input"], "completion": "The answer is 2."}
    ]
    gsm = [{"question": "q?", "answer": "3 + 4 = <<3+4=7>>7\n#### 7"}]
    assert load_sft_rows(gsm)[0]["completion"] == "3 + 4 = 7\n#### 7"
    mapped = load_sft_rows([{"Q": "q?", "A": 5}], fields={"question": "Q", "answer": "A"})
    assert mapped == [{"question": "q?", "completion": "The answer is 5."}]
    assert load_sft_rows([{"question": "q?", "completion": "c"}]) == [
        {"question": "q?", "completion": "c"}
    ]
    rows = load_sft_rows("builtin:arithmetic", limit=3)
    assert len(rows) == 3 and rows[0]["completion"].startswith("The answer is ")


@pytest.mark.parametrize(
    "rows,match",
    [
        ([{"prompt": "p", "completion": ""}], "empty field 'completion'"),
        (
            [{"prompt": "p", "completion": "c"}, {"prompt": "p2"}],
            r"data:2: missing or empty field 'completion'",
        ),
        ([{"question": "q?"}], "no completion"),
        ([{"messages": [{"role": "user", "content": "hi"}]}], "must end with an assistant message"),
        ([{"text": "just text"}], "missing field 'question'"),
    ],
)
def test_data_without_completions(rows, match):
    with pytest.raises(SelfteachError, match=match):
        load_sft_rows(rows)


def test_file_errors_name_the_line(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps({"prompt": "x"}) + "\n")
    with pytest.raises(SelfteachError, match=r"bad.jsonl:2: missing or empty field 'completion'"):
        load_sft_rows(f)


# ---- the trainer --------------------------------------------------------------------------
def _batch(trainer):
    batch = next(iter(trainer.get_train_dataloader()))
    return trainer._prepare_inputs(batch)


def test_fused_head_stats_match_full_logits(tmp_path):
    """TRL's fused head (used in training) gives the same log p, entropy and sum pi^2 as
    the full logits folded by token_stats."""
    tr = build_trainer(
        SFTRunConfig(model="tiny-random", objective="deft", batch_size=3), ROWS, output_dir=tmp_path
    )
    inputs = _batch(tr)
    model = tr.model
    with torch.no_grad():
        out = model(**inputs, fused_lm_head=True)
        logits = model(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
        ).logits
    ref = token_stats(logits, inputs["labels"], chunk_size=1000)
    m = ref.mask
    assert torch.equal(out.label_mask, m) and m.sum() > 0
    torch.testing.assert_close(out.log_probs[m], ref.log_p[m], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.entropy[m], ref.entropy[m], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.log_sum_sq_probs[m], ref.log_sum_sq[m], rtol=1e-4, atol=1e-5)
    # the prompt is not trained: the first label of each row is a completion token
    assert (inputs["labels"][:, 0] == -100).all()


def test_dft_equals_trl_dft_loss(tmp_path):
    """objective=dft reproduces TRL's own `loss_type="dft"` loss and gradient on one batch."""
    from trl import SFTConfig, SFTTrainer

    ours = build_trainer(SFTRunConfig(model="tiny-random", objective="dft", batch_size=3), ROWS,
                         output_dir=tmp_path / "a")
    args = SFTConfig(
        output_dir=str(tmp_path / "b"),
        loss_type="dft",
        per_device_train_batch_size=3,
        use_cpu=True,
        bf16=False,
        activation_checkpointing=False,
        report_to="none",
        max_length=None,
        seed=0,
        completion_only_loss=True,
    )
    import datasets
    from transformers import AutoModelForCausalLM

    from selfteach.backends.models import resolve

    ref_model = AutoModelForCausalLM.from_pretrained(
        str(resolve("tiny-random")), dtype=torch.float32
    )
    trl = SFTTrainer(model=ref_model, args=args, train_dataset=datasets.Dataset.from_list(ROWS),
                     processing_class=ours.processing_class)
    inputs = _batch(ours)
    losses, grads = [], []
    for tr in (ours, trl):
        tr.model.train()
        tr.model.zero_grad()
        loss = tr.compute_loss(tr.model, {k: v.clone() for k, v in inputs.items()})
        loss.backward()
        losses.append(loss.item())
        grads.append(tr.model.model.embed_tokens.weight.grad.clone())
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("objective,alpha", [("nll", None), ("deft", None), ("deformed", 0.5)])
def test_compute_loss_matches_objective_on_full_logits(tmp_path, objective, alpha):
    tr = build_trainer(
        SFTRunConfig(model="tiny-random", objective=objective, alpha=alpha, batch_size=3),
        ROWS,
        output_dir=tmp_path,
    )
    inputs = _batch(tr)
    tr.model.train()
    loss = tr.compute_loss(tr.model, dict(inputs))
    with torch.no_grad():
        logits = tr.model(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
        ).logits
    s = token_stats(logits, inputs["labels"])
    expected = (
        entropic_loss(s.log_p, s.mask, objective, alpha, s.log_sum_sq).loss.sum() / s.mask.sum()
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
    assert tr._metrics["train"]["mean_gate"]  # logged next to TRL's own metrics


# ---- end to end ---------------------------------------------------------------------------
def test_cli_train_sft_deft_end_to_end_and_resume(tmp_path, data):
    out = tmp_path / "run"
    args = [
        "train",
        "sft",
        "--model",
        "tiny-random",
        "--data",
        str(data),
        "--objective",
        "deft",
        "--out",
        str(out),
        "--max-steps",
        "3",
        "--batch-size",
        "2",
        "--diag-every",
        "2",
        "--save-steps",
        "3",
    ]
    res = CliRunner().invoke(_app(), args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    summary = json.loads(res.output[res.output.index("{"):])
    assert summary["steps"] == 3 and summary["objective"] == "deft" and summary["mean_alpha"] > 0
    for f in (
        "config.yaml",
        "env.json",
        "metrics.jsonl",
        "summary.json",
        "diagnostics.png",
        "model/config.json",
        "checkpoints/checkpoint-3",
    ):
        assert (out / f).exists(), f
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    diag = [r for r in rows if r.get("kind") == "diagnostics"]
    assert [r["step"] for r in diag] == [2, 3]
    d = diag[0]
    assert sum(d["hist_p"]) == d["tokens"] == sum(map(sum, d["tokens_p_entropy"])) > 0
    assert 0 <= d["grad_share_confident"] <= 1 and 0 < d["mean_gate"] <= 1
    assert len([r for r in rows if r.get("kind") == "train" and "loss" in r]) == 3
    rep = json.loads((out / "summary.json").read_text())
    assert set(rep) == {"title", "tables", "notes"}
    assert all({"name", "columns", "rows"} <= set(t) for t in rep["tables"])
    assert len(rep["tables"][0]["rows"]) == 2

    # an existing run is not overwritten...
    res2 = CliRunner().invoke(_app(), args)
    assert isinstance(res2.exception, SelfteachError) and "--resume" in str(res2.exception)
    # ...and an interrupted one resumes from its last checkpoint
    (out / "result.json").unlink()
    shutil.rmtree(out / "model")
    res3 = CliRunner().invoke(_app(), args + ["--resume"])
    assert res3.exit_code == 0, res3.output + repr(res3.exception)
    s3 = json.loads(res3.output[res3.output.index("{"):])
    assert s3["resumed_from"].endswith("checkpoint-3") and s3["steps"] == 3


def test_python_api_lora(tmp_path):
    s = train_sft(
        "tiny-random",
        ROWS,
        tmp_path / "lora",
        objective="deformed",
        alpha=0.5,
        lora=True,
        max_steps=2,
        batch_size=2,
        lora_r=4,
    )
    assert s["steps"] == 2 and s["mean_alpha"] == pytest.approx(0.5)
    from transformers import AutoModelForCausalLM

    # merged: a plain model any backend loads
    m = AutoModelForCausalLM.from_pretrained(s["model_dir"])
    assert not any("lora" in n for n, _ in m.named_parameters())


@pytest.mark.parametrize("extra,match", [
    (["--objective", "focal"], "unknown objective"),
    (["--objective", "deformed", "--alpha", "2"], "out of range"),
    (["--objective", "deft", "--alpha", "0.3"], "takes no alpha"),
    (["--max-length", "10"], "longer than --max-length 10"),
])
def test_cli_bad_input_fails_before_training(tmp_path, data, extra, match):
    out = tmp_path / "bad"
    res = CliRunner().invoke(_app(), ["train", "sft", "--model", "tiny-random", "--data", str(data),
                                      "--out", str(out), "--max-steps", "1"] + extra)
    assert isinstance(res.exception, SelfteachError), res.output
    assert match in str(res.exception)
    assert not (out / "config.yaml").exists()  # no run directory left behind


def test_sequence_longer_than_model_context(tmp_path):
    long = [{"prompt": "Repeat:", "completion": " x" * 2100}]  # tiny-random context is 2048
    with pytest.raises(
        SelfteachError, match=r"example 3: \d+ tokens, longer than the model context 2048"
    ):
        train_sft("tiny-random", ROWS[:2] + long, tmp_path / "long", max_steps=1)
    assert not (tmp_path / "long" / "config.yaml").exists()


def test_cli_data_without_completions(tmp_path):
    f = tmp_path / "q.jsonl"
    f.write_text(json.dumps({"question": "what?"}) + "\n")
    res = CliRunner().invoke(
        _app(),
        ["train", "sft", "--model", "tiny-random", "--data", str(f), "--out", str(tmp_path / "o")],
    )
    assert isinstance(res.exception, SelfteachError) and "q.jsonl:1: no completion" in str(
        res.exception
    )
