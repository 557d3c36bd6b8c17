"""`train dpo|sft|grpo` under `accelerate launch` with 2 CPU processes (gloo), against one process.

"Equal" means: the same global batch (1 process x batch B vs 2 processes x B/2, no gradient
accumulation, every step on the whole data set, so the order of examples cannot matter),
the same number of optimizer steps, per-step losses equal to 1e-4 relative, and final
weights equal to 1e-4 absolute (fp32; what differs is the order of float sums: the
all-reduce adds two half-batch gradients, one process adds them in one pass).

Note: on a machine without GPUs, `accelerate launch --num_processes 2` WITHOUT a config starts
one process (accelerate's simple launcher: multi-CPU needs mpirun); the config
examples/accelerate/multi_cpu.yaml (`distributed_type: MULTI_GPU`, started with torchrun)
gives 2 processes, which find no GPU and join with gloo on CPU.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "examples" / "accelerate"
ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONPATH": str(ROOT),
}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(processes: int, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`selfteach ARGS` in one plain process, or under accelerate with `processes` CPU processes."""
    if processes == 1:
        cmd = [sys.executable, "-m", "selfteach", *args]
    else:
        cmd = [
            str(Path(sys.executable).parent / "accelerate"),
            "launch",
            "--config_file",
            str(CONFIGS / "multi_cpu.yaml"),
            "--num_processes",
            str(processes),
            "--main_process_port",
            str(_port()),
            "-m",
            "selfteach",
            *args,
        ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def weights(run: Path) -> dict:
    return load_file(str(run / "model" / "model.safetensors"))


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def losses(log: Path) -> list[float]:
    rows = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
    return [r["loss"] for r in rows if "loss" in r and "train_loss" not in r]


def pairs_file(tmp_path: Path) -> Path:
    f = tmp_path / "pairs.jsonl"
    f.write_text(
        "".join(
            json.dumps(
                {
                    "prompt": f"Question: what is 2 + {i}?\nAnswer:",
                    "chosen": f" 2 + {i} = {2 + i}. The answer is {2 + i}.",
                    "rejected": f" 2 + {i} = {3 + i}. The answer is {3 + i}.",
                }
            )
            + "\n"
            for i in range(8)
        )
    )
    return f


@pytest.mark.slow
@pytest.mark.ci
def test_dpo_two_processes_equal_one(tmp_path):
    pairs = pairs_file(tmp_path)
    # --no-precompute-ref: with the default precomputed reference, 2 processes failed 1 run
    # in 2 on a datasets temp file the other rank had not written (FileNotFoundError
    # /tmp/hf_datasets-*/cache-*.arrow; a known gap, docs/backends.md); the frozen
    # reference copy gives the same numbers
    common = [
        "train",
        "dpo",
        "--pairs",
        str(pairs),
        "--model",
        "tiny-random",
        "--max-steps",
        "3",
        "--lr",
        "3e-3",
        "--device",
        "cpu",
        "--no-precompute-ref",
    ]
    launch(1, common + ["--out", str(tmp_path / "one"), "--batch-size", "8"], tmp_path)
    two = launch(2, common + ["--out", str(tmp_path / "two"), "--batch-size", "4"], tmp_path)
    assert two.stdout.count('"model_dir"') == 1  # rank 0 alone reports and saves
    l1, l2 = (
        losses(tmp_path / "one" / "train_log.jsonl"),
        losses(tmp_path / "two" / "train_log.jsonl"),
    )
    assert len(l1) == len(l2) == 3 and l2 == pytest.approx(l1, rel=1e-4)
    assert l1[2] != pytest.approx(
        l1[0], rel=1e-3
    )  # it trained: the comparison is not of two no-ops
    assert max_diff(weights(tmp_path / "one"), weights(tmp_path / "two")) < 1e-4


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="train sft creates its run directory on every rank: rank 1 "
                   "stops with 'run directory exists; pass --resume' (found 2026-12-02, not fixed "
                   "here: train/sft.py is being refactored on another branch)")
def test_sft_two_processes_equal_one(tmp_path):
    data = tmp_path / "sft.jsonl"
    data.write_text(
        "".join(
            json.dumps(
                {
                    "prompt": f"What is {i} + {i}? ",
                    "completion": f"{2 * i}, since {i} + {i} = {2 * i}.",
                }
            )
            + "\n"
            for i in range(8)
        )
    )
    common = [
        "train",
        "sft",
        "--data",
        str(data),
        "--model",
        "tiny-random",
        "--objective",
        "deft",
        "--max-steps",
        "3",
        "--lr",
        "3e-3",
        "--diag-every",
        "100",
    ]
    launch(1, common + ["--out", str(tmp_path / "one"), "--batch-size", "8"], tmp_path)
    launch(2, common + ["--out", str(tmp_path / "two"), "--batch-size", "4"], tmp_path)

    def train_losses(run: str) -> list[float]:
        rows = [json.loads(x) for x in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        return [r["loss"] for r in rows if r.get("kind") == "train" and "loss" in r]

    l1, l2 = train_losses("one"), train_losses("two")
    assert len(l1) == len(l2) == 3 and l2 == pytest.approx(l1, rel=1e-4)
    assert max_diff(weights(tmp_path / "one"), weights(tmp_path / "two")) < 1e-4


@pytest.mark.slow
def test_grpo_two_processes_runs_the_same_global_batch(tmp_path):
    """GRPO samples its completions, and each process draws from its own stream, so two
    processes cannot equal one sample for sample; what must hold is the global batch (8
    completions = 2 prompts x G=4 per step), the step count, and a finite loss. (On the
    random tiny model every reward is 0, so both runs leave the weights where they were.)"""
    common = [
        "train",
        "grpo",
        "--problems",
        "builtin:arithmetic",
        "--limit",
        "4",
        "--model",
        "tiny-random",
        "--max-steps",
        "2",
        "--num-generations",
        "4",
        "--max-completion-length",
        "8",
        "--device",
        "cpu",
    ]
    launch(1, common + ["--out", str(tmp_path / "one"), "--batch-size", "8"], tmp_path)
    launch(2, common + ["--out", str(tmp_path / "two"), "--batch-size", "4"], tmp_path)
    for run in ("one", "two"):
        rows = [
            json.loads(x) for x in (tmp_path / run / "train_log.jsonl").read_text().splitlines()
        ]
        steps = [r for r in rows if "loss" in r and "train_loss" not in r]
        assert len(steps) == 2 and all(r["rewards/gold_answer/mean"] == 0.0 for r in steps)
        assert all(abs(r["loss"]) < 1e3 for r in steps)
    assert max_diff(weights(tmp_path / "one"), weights(tmp_path / "two")) < 1e-6


# ---- the example configs -----------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_example_configs_parse_with_accelerate(name, monkeypatch):
    """Every example loads with accelerate's own config parser (the one `accelerate launch`
    uses); the GPU ones cannot run here, their fields are checked against what they claim."""
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import DistributedType

    cfg = load_config_from_file(str(CONFIGS / name))
    # the launcher's own cross-field checks (a private function: what `accelerate launch` runs)
    args, _, _ = _validate_launch_command(
        launch_command_parser().parse_args(["--config_file", str(CONFIGS / name), "train.py"])
    )
    want = {
        "cpu.yaml": DistributedType.NO,
        "multi_cpu.yaml": DistributedType.MULTI_GPU,
        "zero2.yaml": DistributedType.DEEPSPEED,
        "fsdp.yaml": DistributedType.FSDP,
    }[name]
    assert cfg.distributed_type == want
    if name == "zero2.yaml":
        assert cfg.deepspeed_config["zero_stage"] == 2 and cfg.mixed_precision == "bf16"
    if name == "fsdp.yaml":  # the plugin built from the environment the launcher would set
        from accelerate.utils import FullyShardedDataParallelPlugin
        from accelerate.utils.launch import prepare_multi_gpu_env

        env = prepare_multi_gpu_env(args)
        monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
        for k, v in env.items():
            if k.startswith(("FSDP_", "ACCELERATE_")):
                monkeypatch.setenv(k, v)
        plugin = FullyShardedDataParallelPlugin()
        assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
        assert (
            env["ACCELERATE_MIXED_PRECISION"] == "bf16"
            and plugin.state_dict_type.name == "FULL_STATE_DICT"
        )


def test_bad_accelerate_config_is_refused_by_accelerate(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (CONFIGS / "multi_cpu.yaml")
        .read_text()
        .replace("distributed_type: MULTI_GPU", "distributed_type: MULTI_GPUS")
    )
    from accelerate.commands.config.config_args import load_config_from_file

    with pytest.raises(ValueError, match="MULTI_GPUS"):
        load_config_from_file(str(bad))
