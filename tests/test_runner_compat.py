"""Run directories written before the item runner (tests/fixtures/main_runs, made by main at
c60b8133 on tiny-random, see its README) still read, resume and report: every row reads back
through its record and is written again byte for byte, and a run cut short anywhere and
resumed by today's code ends with exactly the file the old code wrote uninterrupted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from selfteach.data.records import AccuracyRow, AnytimeRow, Candidate, Judgment

FIXTURES = Path(__file__).parent / "fixtures" / "main_runs"
FILES = {
    "accuracy": ("outputs.jsonl", AccuracyRow),
    "anytime": ("outputs.jsonl", AnytimeRow),
    "judge": ("judgments.jsonl", Judgment),
    "candidates": ("candidates.jsonl", Candidate),
}


@pytest.mark.parametrize("kind", sorted(FILES))
def test_old_rows_read_back_and_write_byte_identical(kind):
    name, record = FILES[kind]
    lines = (FIXTURES / kind / name).read_text(encoding="utf-8").splitlines()
    assert lines
    for line in lines:
        again = json.dumps(record.model_validate(json.loads(line)).to_row(), ensure_ascii=False)
        assert again == line


def cut_short(src: Path, dst: Path, name: str, keep: int, torn: bool) -> Path:
    """A copy of run dir `src` as an interruption leaves it: `keep` whole rows of `name`,
    then (torn) half of the next one."""
    shutil.copytree(src, dst)
    lines = (src / name).read_text(encoding="utf-8").splitlines(keepends=True)
    tail = lines[keep][: len(lines[keep]) // 2] if torn else ""
    (dst / name).write_text("".join(lines[:keep]) + tail, encoding="utf-8")
    return dst


def resume(kind: str, out: Path, tiny_backend) -> None:
    """Resume `out` with today's code, from its own config.yaml."""
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    if kind == "accuracy":
        from selfteach.evaluate.accuracy import AccuracyConfig, run_accuracy

        run_accuracy(AccuracyConfig.model_validate(cfg), out, resume=True, progress=False)
    elif kind == "anytime":
        from selfteach.evaluate.anytime import AnytimeConfig, evaluate_anytime

        evaluate_anytime(AnytimeConfig.model_validate(cfg), out, resume=True, progress=False)
    elif kind == "judge":
        from selfteach.judge.runner import JudgeRunConfig, run_judge

        run_judge(
            JudgeRunConfig.model_validate(cfg),
            out,
            resume=True,
            progress=False,
            need_best=True,
            backend=tiny_backend,
        )
    else:
        from selfteach.data.loaders import load_problems
        from selfteach.improve.candidates import generate_candidates
        from selfteach.runs import RunDir

        generate_candidates(
            tiny_backend,
            load_problems(cfg["data"], limit=cfg["limit"]),
            n=cfg["n"],
            temperatures=cfg["temperatures"],
            max_new_tokens=cfg["max_new_tokens"],
            batch_size=cfg["batch_size"],
            seed=cfg["seed"],
            run=RunDir(out),
            progress=False,
        )


# (rows kept, torn next row): mid-batch, at a batch boundary, nothing written
CUTS = {
    "accuracy": [(1, True), (2, False), (0, True)],
    "anytime": [(1, True), (2, False)],
    "judge": [(1, True), (2, False)],
    "candidates": [(3, True), (6, True), (8, False)],
}


@pytest.mark.parametrize(
    "kind,keep,torn", [(k, n, t) for k, cuts in sorted(CUTS.items()) for n, t in cuts]
)
def test_old_run_dir_resumes_to_the_uninterrupted_file(kind, keep, torn, tmp_path, tiny_backend):
    name, _ = FILES[kind]
    out = cut_short(FIXTURES / kind, tmp_path / kind, name, keep, torn)
    resume(kind, out, tiny_backend)
    assert (out / name).read_bytes() == (FIXTURES / kind / name).read_bytes()


@pytest.mark.parametrize("kind", ["accuracy", "anytime", "judge"])
def test_old_run_dir_reports(kind, tmp_path):
    from selfteach.cli import app

    out = shutil.copytree(FIXTURES / kind, tmp_path / kind)
    r = CliRunner().invoke(app, ["report", str(out)])
    assert r.exit_code == 0, r.output
    assert "<table>" in (out / "report.html").read_text()
