"""Run directories: `runs/<name>/` with config.yaml, env.json, metrics.jsonl and outputs.

Every run records its resolved config, seed, library versions, git commit and device, so
a result can be traced to exactly what produced it. Files are written atomically (temp
file + rename); per-item outputs are appended line by line so `--resume` can skip the
items already done after an interruption.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from selfteach.data.jsonl import append_jsonl, atomic_write_text, read_jsonl
from selfteach.errors import SelfteachError

_PACKAGES = ["selfteach", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "openai",
             "math-verify", "pydantic", "gguf", "xllamacpp"]


def environment(seed: int | None = None, device: str | None = None) -> dict[str, Any]:
    """Versions, git commit, seed and device: what a result depends on."""
    versions = {}
    for p in _PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).parent).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                    text=True, timeout=5, cwd=Path(__file__).parent).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {"python": sys.version.split()[0], "platform": platform.platform(), "versions": versions,
            "git_commit": commit, "git_dirty": dirty, "seed": seed, "device": device,
            "command": " ".join(sys.argv), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


class RunDir:
    """A run directory. `RunDir.create(path, config, resume=...)` refuses to overwrite a
    finished run's config unless resuming with the same config."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def create(cls, path: str | Path, config: BaseModel | dict, resume: bool = False, seed: int | None = None,
               device: str | None = None) -> RunDir:
        run = cls(path)
        cfg = config.model_dump(mode="json") if isinstance(config, BaseModel) else dict(config)
        cfg_file = run.path / "config.yaml"
        if cfg_file.exists() and resume:
            old = yaml.safe_load(cfg_file.read_text())
            changed = sorted(k for k in set(old) | set(cfg) if old.get(k) != cfg.get(k) and k not in ("resume",))
            if changed:
                raise SelfteachError(f"{cfg_file}: cannot resume, config differs in {', '.join(changed)}")
        elif run.path.exists() and any(run.path.iterdir()) and not resume:
            if (run.path / "config.yaml").exists():
                raise SelfteachError(f"{run.path}: run directory exists; pass --resume to continue it "
                                     "or choose another --out")
        run.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cfg_file, yaml.safe_dump(cfg, sort_keys=False))
        from selfteach.backends.models import run_weights

        env = environment(seed, device) | {"weights": run_weights(cfg)}  # quantization of each model
        atomic_write_text(run.path / "env.json", json.dumps(env, indent=2))
        return run

    def file(self, name: str) -> Path:
        return self.path / name

    def log_metrics(self, row: dict[str, Any]) -> None:
        append_jsonl(self.path / "metrics.jsonl", {"time": round(time.time(), 3), **row})

    def append(self, name: str, row: Any) -> None:
        append_jsonl(self.path / name, row)

    def read(self, name: str) -> list[dict[str, Any]]:
        f = self.path / name
        if not f.exists() or f.stat().st_size == 0:
            return []
        return read_jsonl(f)

    def done_rows(self, name: str, key: str = "id") -> dict[str, dict[str, Any]]:
        """Rows already written to an outputs file, by `key` (for --resume). A torn last
        line left by an interruption is dropped (and the file repaired) instead of failing."""
        f = self.path / name
        if not f.exists():
            return {}
        lines = [ln for ln in f.read_text(encoding="utf-8").splitlines() if ln.strip()]
        rows: dict[str, dict[str, Any]] = {}
        good = []
        for line in lines:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            rows[str(row[key])] = row
            good.append(line)
        if len(good) != len(lines):
            atomic_write_text(f, "".join(g + "\n" for g in good))
        return rows

    def done_ids(self, name: str, key: str = "id") -> set[str]:
        return set(self.done_rows(name, key))

    def write_json(self, name: str, obj: Any) -> Path:
        return atomic_write_text(self.path / name, json.dumps(obj, indent=2, default=str))

    def write_text(self, name: str, text: str) -> Path:
        return atomic_write_text(self.path / name, text)
