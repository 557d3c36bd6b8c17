"""`--serve` (issue 11, item 2): a llama.cpp server started on the model's GGUF, used through
the OpenAI backend, and always stopped: on close, normal exit, an error, Ctrl-C, and when the
caller is killed outright. Runs on the real SmolLM2-135M GGUF (loads in about a second)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from selfteach.backends import SamplingParams, load_backend
from selfteach.backends.llama_server import LlamaServer, engine_command
from selfteach.errors import SelfteachError

pytestmark = [pytest.mark.slow, pytest.mark.ci, pytest.mark.server]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _engine():
    try:
        engine_command()
    except SelfteachError as e:
        pytest.skip(str(e))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) counts as gone
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def _wait_gone(pid: int, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


def test_serve_generates_scores_and_stops_on_close():
    b = load_backend("smollm2-135m", serve=True, batch_size=8)  # hf-only kwargs are dropped
    pid = b.server.proc.pid
    try:
        assert b.kind == "llamacpp" and b.model == "smollm2-135m" and "xllamacpp" in b.name
        out = b.generate([b.chat_prompt("What is 2+3?")], SamplingParams(max_new_tokens=12))[0][0]
        assert "5" in out.text and out.num_tokens <= 12
        row = b.label_logprobs(
            ["The capital of France is"], {"Paris": [" Paris"], "London": [" London"]}
        )[0]
        assert row["Paris"] > row["London"]
    finally:
        b.close()
    assert _wait_gone(pid)


CHILD = """
import os, sys, time
from selfteach.backends import load_backend
b = load_backend("smollm2-135m", serve=True)
print(b.server.proc.pid, flush=True)
sys.stdin.readline()  # the test has seen the server alive
how = sys.argv[1]
if how == "error":
    raise RuntimeError("boom")
if how == "hang":
    time.sleep(120)
"""


@pytest.mark.parametrize("how", ["exit", "error", "sigint", "sigkill"])
def test_no_orphan_server(how):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, "hang" if how.startswith("sig") else how],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    pid = int(proc.stdout.readline())
    assert _alive(pid)
    proc.stdin.write("go\n")
    proc.stdin.flush()
    if how == "sigint":
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends the foreground process
    elif how == "sigkill":
        proc.kill()  # no Python exit path at all: PR_SET_PDEATHSIG stops the server
    proc.wait(timeout=60)
    assert _wait_gone(pid), f"server {pid} outlived its caller ({how})"
    if how == "error":
        assert "boom" in proc.stderr.read()


def test_port_in_use_and_dead_server_are_one_line_errors():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(SelfteachError, match=r"port \d+ on 127.0.0.1 is in use"):
            LlamaServer("smollm2-135m", port=s.getsockname()[1]).start()
    b = load_backend("smollm2-135m", serve=True, max_retries=0)
    try:
        b.server.proc.kill()
        b.server.proc.wait()
        with pytest.raises(
            SelfteachError, match=r"server for smollm2-135m died mid-run \(exit code -9\)"
        ) as e:
            b.generate(["Hello"], SamplingParams(max_new_tokens=4))
        assert "\n" not in str(e.value)
    finally:
        b.close()


def test_serve_refuses_what_it_cannot_serve(tmp_path):
    with pytest.raises(SelfteachError, match="already a server URL"):
        load_backend("http://127.0.0.1:9/v1", serve=True)
    with pytest.raises(SelfteachError, match="drop --backend hf"):
        load_backend("smollm2-135m", backend="hf", serve=True)
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF but not really")
    with pytest.raises(
        SelfteachError, match=r"xllamacpp exited with code 1 at start \(broken.gguf\)"
    ):
        load_backend(str(bad), serve=True)


def test_cli_eval_accuracy_serve(tmp_path):
    import json

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "selfteach",
            "eval",
            "accuracy",
            "--model",
            "smollm2-135m",
            "--serve",
            "--limit",
            "4",
            "--max-new-tokens",
            "24",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    config = (out / "config.yaml").read_text()
    assert "serve: true" in config
    env = json.loads((out / "env.json").read_text())
    # the quantization computed with
    assert env["weights"] == {"model": "GGUF Q4_1 served by llama.cpp"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["usage"]["calls"] >= 4
