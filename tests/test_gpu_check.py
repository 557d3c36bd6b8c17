"""scripts/gpu_check.sh: what can be checked without a GPU: its arguments (bad ones: one line,
exit 2, nothing started), and the commands it would run (--dry-run). The full script has
not run end to end: not with vLLM (no GPU here), nor yet in its CPU mode `--engine llamacpp`
(docs/backends.md, "GPU recipe")."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


@pytest.mark.parametrize(
    "args, msg",
    [
        (["--engine", "tgi"], "--engine 'tgi': choose vllm or llamacpp"),
        (["--port", "0"], "--port '0': expected 1-65535"),
        (["--port", "80a"], "--port '80a': expected 1-65535"),
        (["--size", "huge"], "--size 'huge': choose small or tiny"),
        (["--frobnicate"], "unknown argument '--frobnicate'"),
        (["--model"], "--model needs a value"),
    ],
)
def test_bad_arguments_are_one_line_exit_2(args, msg, tmp_path):
    p = run("--out", str(tmp_path / "o"), *args)
    assert p.returncode == 2 and p.stderr.startswith(f"gpu_check: {msg}") and not p.stdout
    assert len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_dry_run_prints_the_server_and_every_step():
    p = run("--dry-run", "--model", "org/model", "--port", "8123")
    assert p.returncode == 0, p.stderr
    lines = dict(line.split(": ", 1) for line in p.stdout.splitlines())
    assert list(lines) == ["server", "elicit", "improve", "judge", "throughput"]
    assert lines["server"].startswith("vllm serve org/model --host 127.0.0.1 --port 8123")
    url = "http://127.0.0.1:8123/v1?tokenizer=org/model"  # vLLM has no chat-template endpoint
    assert all(f"--model {url}" in lines[s] for s in ("elicit", "judge", "throughput"))
    assert f"--label-model {url}" in lines["improve"] and "--model org/model" in lines["improve"]
    cpu = dict(
        line.split(": ", 1) for line in run("--dry-run", "--engine", "llamacpp").stdout.splitlines()
    )
    assert "selfteach.backends.llama_server smollm2-135m --port 8000" in cpu["server"]
    assert "--model tiny-random --label-model http://127.0.0.1:8000/v1 " in cpu["improve"]


def test_existing_out_is_refused(tmp_path):
    p = run("--engine", "llamacpp", "--out", str(tmp_path))
    assert p.returncode == 2 and "exists" in p.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_shellcheck_clean():
    assert subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True).returncode == 0
