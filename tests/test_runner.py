"""The item runner (selfteach/runner.py) on a toy method: killed after any item, with or
without a torn last row, and resumed, it ends with exactly the rows and file of an
uninterrupted run; damaged rows are one-line errors naming file:line."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfteach.data.records import Row
from selfteach.errors import SelfteachError
from selfteach.runner import Batch, Outputs, run_items
from selfteach.runs import RunDir, SimulatedCrash, item_seed


class Toy(Row):
    id: str
    item: str
    draw: float


def toy_work(per_item: int, calls: list[list[str]] | None = None):
    """A toy method whose rows depend on the batch seed, as sampled generations do: a
    batch of other members or another seed would give other draws."""

    def work(batch: Batch[str]) -> list[list[Toy]]:
        if calls is not None:
            calls.append(batch.ids)
        rng = random.Random(batch.seed("toy"))
        return [
            [Toy(id=f"{it}#{j}", item=it, draw=rng.random()) for j in range(per_item)]
            for it in batch.items
        ]

    return work


def run_toy(items, out: Path | None, per_item: int, batch_size: int, calls=None) -> list[Toy]:
    return run_items(
        items,
        toy_work(per_item, calls),
        Outputs("out.jsonl", Toy, key="item", per_item=per_item),
        seed=7,
        batch_size=batch_size,
        run=RunDir(out) if out else None,
        item_id=lambda it: it,
        progress=False,
        crash="toy",
    )


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 9), batch_size=st.integers(1, 4), per_item=st.integers(1, 3), data=st.data()
)
def test_any_kill_point_then_resume_equals_uninterrupted(n, batch_size, per_item, data):
    items = [f"p{i}" for i in range(n)]
    kill = data.draw(st.integers(0, n - 1), label="killed after item")
    torn = data.draw(st.booleans(), label="torn last row")
    with tempfile.TemporaryDirectory() as tmp:
        full_dir, cut_dir = Path(tmp, "full"), Path(tmp, "cut")
        full = run_toy(items, full_dir, per_item, batch_size)
        assert full == run_toy(
            items, None, per_item, batch_size
        )  # without a run dir: the same rows
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SELFTEACH_CRASH_AT", f"toy:{items[kill]}")
            mp.setenv("SELFTEACH_CRASH_HOW", "raise")
            with pytest.raises(SimulatedCrash):
                run_toy(items, cut_dir, per_item, batch_size)
        f = cut_dir / "out.jsonl"
        if torn:  # the kill came in the middle of the last row's append
            raw = f.read_bytes()
            last = raw.splitlines(keepends=True)[-1]
            f.write_bytes(raw[: len(raw) - len(last) + len(last) // 2])
        calls: list[list[str]] = []
        again = run_toy(items, cut_dir, per_item, batch_size, calls)
        assert again == full
        assert f.read_bytes() == (full_dir / "out.jsonl").read_bytes()
        # only the batches holding an unfinished item ran again, each whole, at its fixed place
        complete = kill if torn else kill + 1  # items whose rows are all on disk
        assert calls == [
            items[i : i + batch_size]
            for i in range(0, n, batch_size)
            if min(i + batch_size, n) > complete
        ]


def test_batch_seed_is_the_crc32_of_its_ids():
    b = Batch(["a", "b"], ["a", "b"], frozenset(), run_seed=3)
    assert b.seed() == item_seed(3, "a", "b")
    assert b.seed("t0") == item_seed(3, "a", "b", "t0") != b.seed("t1")
    assert b.seed(ids=["a"]) == item_seed(3, "a")


def test_damaged_rows_name_file_and_line(tmp_path):
    items = ["p0", "p1", "p2"]
    run_toy(items, tmp_path, per_item=1, batch_size=2)
    f = tmp_path / "out.jsonl"
    good = f.read_text().splitlines()
    f.write_text(
        good[0] + "\n" + good[1].replace('"draw": ', '"draw": "x", "was": ') + "\n" + good[2] + "\n"
    )
    with pytest.raises(SelfteachError, match=r"out\.jsonl:2: field 'draw'"):
        run_toy(items, tmp_path, per_item=1, batch_size=2)
    f.write_text(good[0] + "\n" + good[1].replace('"item": "p1"', '"item": null') + "\n")
    with pytest.raises(SelfteachError, match=r"out\.jsonl:2: row has no valid 'item'"):
        run_toy(items, tmp_path, per_item=1, batch_size=2)
    f.write_text(good[0] + "\n{not json\n" + good[2] + "\n")  # not the last line: not a torn append
    with pytest.raises(SelfteachError, match=r"out\.jsonl:2"):
        run_toy(items, tmp_path, per_item=1, batch_size=2)


def test_an_incomplete_item_is_removed_and_redone(tmp_path):
    items = ["p0", "p1", "p2"]
    ref = run_toy(items, tmp_path / "full", per_item=3, batch_size=3)
    f = tmp_path / "cut" / "out.jsonl"
    f.parent.mkdir()
    lines = (tmp_path / "full" / "out.jsonl").read_text().splitlines(keepends=True)
    f.write_text("".join(lines[:5]))  # p0 whole, two of p1's three rows
    assert run_toy(items, f.parent, per_item=3, batch_size=3) == ref
    assert f.read_text() == "".join(lines)


def test_work_must_answer_every_item():
    with pytest.raises(RuntimeError, match="1 results for 2 items"):
        run_items(
            ["a", "b"],
            lambda b: [Toy(id="a", item="a", draw=0.0)],
            Outputs("x", Toy),
            seed=0,
            batch_size=2,
            item_id=lambda it: it,
            progress=False,
        )
