"""Run directories: `runs/<name>/` with config.yaml, env.json, metrics.jsonl and outputs.

Every run records its resolved config, seed, library versions, git commit and device, so
a result can be traced to exactly what produced it. Files are written atomically (temp
file + rename); per-item outputs are appended line by line so `--resume` can skip the
items already done after an interruption.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from selfteach.data.jsonl import (
    append_jsonl,
    atomic_write_text,
    decode_line,
    parse_line,
    read_jsonl,
)
from selfteach.errors import SelfteachError

_PACKAGES = [
    "selfteach",
    "torch",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "datasets",
    "openai",
    "math-verify",
    "pydantic",
    "gguf",
    "xllamacpp",
]


def environment(seed: int | None = None, device: str | None = None) -> dict[str, Any]:
    """Versions, git commit, seed and device: what a result depends on."""
    versions: dict[str, str | None] = {}
    for p in _PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=Path(__file__).parent,
            ).stdout.strip()
            or None
        )
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=Path(__file__).parent,
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {"python": sys.version.split()[0], "platform": platform.platform(), "versions": versions,
            "git_commit": commit, "git_dirty": dirty, "seed": seed, "device": device,
            "command": " ".join(sys.argv), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def item_seed(seed: int, *keys: str) -> int:
    """A sampling seed for the work item(s) named by `keys` (ids) under the run seed `seed`.

    Resumable loops seed by id, never by position in a to-do list (which shrinks on
    resume), so an interrupted and resumed run samples exactly what an uninterrupted one
    does. crc32 rather than hash(): Python salts str hashes per process."""
    key = "\x1f".join(str(k) for k in keys)
    return (seed * 1_000_003 + zlib.crc32(key.encode())) % (2**31)


def fixed_batches(items: list, size: int) -> list[list]:
    """`items` cut into batches of `size` at fixed positions of the full list: a resumed
    run regenerates a partly finished batch with the same members (and so the same
    samples, since a batch shares one sampling stream), skipping only what is written."""
    return [items[i : i + size] for i in range(0, len(items), size)]


class SimulatedCrash(BaseException):
    """Raised by `crash_point` in raise mode (tests of --resume without a subprocess).
    A BaseException, so no `except Exception` on the way up can swallow it."""


def crash_point(where: str) -> None:
    """Test hook: die at a named point when SELFTEACH_CRASH_AT=`where` (kill -9 of this
    process, or SimulatedCrash with SELFTEACH_CRASH_HOW=raise). Lets tests interrupt a
    long command at an exact step and check that --resume gives the uninterrupted result."""
    if os.environ.get("SELFTEACH_CRASH_AT") != where:
        return
    if os.environ.get("SELFTEACH_CRASH_HOW") == "raise":
        raise SimulatedCrash(where)
    os.kill(os.getpid(), signal.SIGKILL)


# Per-item outputs whose rows `--resume` looks up by id.
ID_FILES = ("outputs.jsonl", "judgments.jsonl")


# ---- where a run may go (`--out`) ----------------------------------------------------
def check_out(
    out: str | Path | None, resume: bool = False, option: str = "--out", kind: str = "dir"
) -> Path:
    """`out` as a Path, after checking it can be a run directory (`kind="dir"`) or an
    output file (`kind="file"`): not empty, not an existing file (resp. directory), not
    under a file, writable, and (for a run directory) not a finished run unless resuming.
    Nothing is created."""
    if out is None or not str(out).strip():
        raise SelfteachError(
            f"{option} {str(out or '')!r}: empty; give a {'directory' if kind == 'dir' else 'file'}"
        )
    path = Path(str(out)).expanduser()
    shown = f"{option} {str(out)}"
    if kind == "dir" and path.exists() and not path.is_dir():
        raise SelfteachError(f"{shown}: is a file, not a run directory")
    if kind == "file" and path.is_dir():
        raise SelfteachError(f"{shown}: is a directory; give a file name")
    parent = path if kind == "dir" else path.parent
    existing = parent
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise SelfteachError(f"{shown}: {existing} is a file, cannot create a directory under it")
    _probe_writable(existing, shown)
    if kind == "dir" and not resume and (path / "config.yaml").exists():
        raise SelfteachError(
            f"{path}: run directory exists; pass --resume to continue it or choose another --out"
        )
    return path


def _probe_writable(folder: Path, shown: str) -> None:
    """os.access says yes to root even on read-only mounts: try a temporary file instead."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise SelfteachError(
            f"{shown}: not writable ({e.strerror or type(e).__name__} in {folder})"
        ) from None


class RunDir:
    """A run directory. `RunDir.create(path, config, resume=...)` refuses to overwrite a
    finished run's config unless resuming with the same config."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def create(
        cls,
        path: str | Path,
        config: BaseModel | dict,
        resume: bool = False,
        seed: int | None = None,
        device: str | None = None,
    ) -> RunDir:
        """Check `path` (`check_out`), then write config.yaml and env.json.
        Callers validate options, data and the model first, so a failed start leaves no
        directory behind and the retry is not refused."""
        run = cls(check_out(path, resume=resume))
        cfg = config.model_dump(mode="json") if isinstance(config, BaseModel) else dict(config)
        cfg_file = run.path / "config.yaml"
        if cfg_file.exists() and resume:
            old = run.read_config()
            changed = sorted(
                k for k in set(old) | set(cfg) if old.get(k) != cfg.get(k) and k not in ("resume",)
            )
            if changed:
                raise SelfteachError(
                    f"{cfg_file}: cannot resume, config differs in {', '.join(changed)}"
                )
        run.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cfg_file, yaml.safe_dump(cfg, sort_keys=False))
        from selfteach.backends.models import run_weights

        # quantization of each model
        env = environment(seed, device) | {"weights": run_weights(cfg)}
        atomic_write_text(run.path / "env.json", json.dumps(env, indent=2))
        return run

    def read_config(self) -> dict[str, Any]:
        """config.yaml as a mapping; a damaged file is a one-line error, not a traceback."""
        f = self.path / "config.yaml"
        try:
            cfg = yaml.safe_load(f.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise SelfteachError(
                f"{f}: not UTF-8 (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                "the run directory is damaged"
            ) from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            at = f":{mark.line + 1}" if mark is not None else ""
            raise SelfteachError(
                f"{f}{at}: malformed YAML ({getattr(e, 'problem', None) or type(e).__name__}); "
                "the run directory is damaged"
            ) from None
        if not isinstance(cfg, dict):
            raise SelfteachError(f"{f}: expected a mapping of settings, got {type(cfg).__name__}; "
                                 "the run directory is damaged")
        return cfg

    def file(self, name: str) -> Path:
        return self.path / name

    def log_metrics(self, row: dict[str, Any]) -> None:
        append_jsonl(self.path / "metrics.jsonl", {"time": round(time.time(), 3), **row})

    def append(self, name: str, row: Any) -> None:
        append_jsonl(self.path / name, row)

    def check_resumable(self) -> None:
        """Before anything loads: config.yaml is a mapping and every JSONL file reads (only
        a torn last line may be damaged: `done_rows` drops it), with an id in each row of
        the per-item outputs files."""
        if (self.path / "config.yaml").exists():
            self.read_config()
        for f in sorted(self.path.glob("*.jsonl")):
            self.done_rows(f.name, key="id" if f.name in ID_FILES else None, repair=False)

    def read(self, name: str) -> list[dict[str, Any]]:
        f = self.path / name
        if not f.exists() or f.stat().st_size == 0:
            return []
        return read_jsonl(f, finite=False)  # our own rows: NaN metrics are allowed

    def done_rows(
        self, name: str, key: str | None = "id", repair: bool = True
    ) -> dict[str, dict[str, Any]]:
        """Rows already written to an outputs file, by `key` (for --resume). Only a torn
        LAST line (an interrupted append) is dropped, with a note on stderr, and the file
        repaired; any other damage is an error naming file:line, never a silent loss."""
        f = self.path / name
        if not f.exists():
            return {}
        raw = f.read_bytes()
        lines = raw.split(b"\n")
        last = max((i for i, ln in enumerate(lines) if ln.strip()), default=-1)
        rows: dict[str, dict[str, Any]] = {}
        for i, ln in enumerate(lines):
            if not ln.strip():
                continue
            where = f"{f}:{i + 1}"
            try:
                # NaN metrics are ours
                row = parse_line(decode_line(ln, f, i + 1), where, finite=False)
            except SelfteachError:
                if i == last and not raw.endswith(b"\n"):  # torn by an interruption mid-append
                    if repair:
                        _note(
                            f"{where}: dropped a torn last line (interrupted write); it will be "
                            "redone"
                        )
                        atomic_write_bytes(f, b"\n".join(lines[:i]) + b"\n" if i else b"")
                    break
                raise SelfteachError(
                    f"{where}: damaged row in the run directory "
                    f"({_reason(where)}); fix or remove the line, or start a new --out"
                ) from None
            if key is None:
                continue
            if key not in row or isinstance(row[key], dict | list) or row[key] is None:
                raise SelfteachError(
                    f"{where}: row has no valid {key!r}; the run directory is damaged "
                    "(fix or remove the line, or start a new --out)"
                )
            rows[str(row[key])] = row
        return rows

    def done_ids(self, name: str, key: str = "id") -> set[str]:
        return set(self.done_rows(name, key))

    def write_json(self, name: str, obj: Any) -> Path:
        return atomic_write_text(self.path / name, json.dumps(obj, indent=2, default=str))

    def write_text(self, name: str, text: str) -> Path:
        return atomic_write_text(self.path / name, text)


def _note(text: str) -> None:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True).print(
        f"[yellow]note:[/yellow] {escape(text)}", highlight=False, soft_wrap=True
    )


def _reason(where: str) -> str:
    import sys

    e = sys.exc_info()[1]
    return str(e).removeprefix(where + ": ") if e else "unreadable"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.repair.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
