"""Shared fixtures. Real-model tests are marked `slow`: they run when SELFTEACH_SLOW is set
(`make test-all`), except those also marked `ci`, which always run (a few, for coverage of
the real path)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def pytest_collection_modifyitems(config, items):
    if os.environ.get("SELFTEACH_SLOW"):
        return
    skip = pytest.mark.skip(
        reason="slow real-model test: run with SELFTEACH_SLOW=1 (make test-all)"
    )
    for item in items:
        if "slow" in item.keywords and "ci" not in item.keywords:
            item.add_marker(skip)


def pytest_configure(config):
    config.addinivalue_line("markers", "ci: a slow test that still runs in CI")


@pytest.fixture(scope="session")
def tiny_backend():
    from selfteach.backends.hf import HFBackend

    return HFBackend("tiny-random", batch_size=8)


@pytest.fixture(scope="session")
def smol_backend():
    from selfteach.backends.hf import HFBackend

    return HFBackend("smollm2-135m")


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"{SHARED_DATA} not present")
    return SHARED_DATA


@pytest.fixture
def selfteach_main(monkeypatch, capsys):
    """Run `selfteach ARGS` in-process through `selfteach.cli.main`, with its real error
    mapping (a SelfteachError prints one line on stderr and exits 2): returns a function
    args -> (exit code, stdout, stderr)."""
    import sys

    from selfteach.cli import main

    def run(*args) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["selfteach", *map(str, args)])
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            main()
        captured = capsys.readouterr()
        return exit_.value.code, captured.out, captured.err

    return run
