"""`improve --serve` (issue 11, item 3: weights synced between rounds): every round's
generation and evaluation run on a llama.cpp server; the DPO-trained checkpoint is converted
to GGUF (llama.cpp's converter) and served for the next round and the final evaluation."""

from __future__ import annotations

import json

import pytest

from selfteach.backends.convert import converter_dir

pytestmark = [pytest.mark.slow, pytest.mark.ci, pytest.mark.server,
              pytest.mark.skipif(not (converter_dir() / "convert_hf_to_gguf.py").is_file(),
                                 reason="llama.cpp's converter not installed: `make converter`")]


def test_improve_two_rounds_on_the_served_path(tmp_path, monkeypatch):
    from test_improve import parity_labeler, tiny_config

    from selfteach.improve.loop import run_improve

    real = converter_dir()
    monkeypatch.setenv("SELFTEACH_CACHE", str(tmp_path / "cache"))  # fresh: see every conversion
    monkeypatch.setattr("selfteach.backends.convert.converter_dir", lambda: real)
    out = tmp_path / "run"
    summary = run_improve(
        tiny_config(rounds=2, baselines=[], serve=True), out, labeler=parity_labeler, progress=False
    )
    assert [r[0] for r in summary["tables"][0]["rows"]] == [
        "base model",
        "ICM+DPO round 1",
        "ICM+DPO round 2",
    ]
    env = json.loads((out / "env.json").read_text())
    assert env["weights"]["model"] == "converted to GGUF Q8_0, served by llama.cpp"
    # the base model and each round's trained checkpoint were converted and served
    ggufs = sorted(p.name for p in (tmp_path / "cache" / "gguf").glob("*.Q8_0.gguf"))
    assert len(ggufs) == 3, ggufs
    assert sum(n.startswith("model-") for n in ggufs) == 2  # round1/dpo/model and round2/dpo/model
