"""The one resumable loop over work items: `run_items`.

Accuracy, candidates, anytime evaluation and the judge all do the same thing: cut a list
of items into batches, let a method turn each batch into output rows, append the rows to
the run directory as items finish, and on `--resume` skip the items already written. The
loop owns what makes a resumed run equal an uninterrupted one:

- batches sit at fixed positions of the full item list (`runs.fixed_batches`), never of
  the shrinking to-do list, and a partly written batch is regenerated whole (its written
  items are not written again), so every batch has the same members in both runs;
- every generate call is seeded by the ids of the items it serves (`Batch.seed`, crc32
  `runs.item_seed`), never by a position or a counter;
- rows are appended and flushed item by item; on resume the rows already there are read
  back through their record type (a damaged row is a one-line error naming file:line; a
  torn last line is dropped and redone; an item with fewer rows than it writes is
  removed and redone);
- `runs.crash_point("<name>:<id>")` after each item's rows lets tests kill the loop at
  any item.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from pydantic import ValidationError

from selfteach.data.records import Row
from selfteach.errors import SelfteachError
from selfteach.progress import ProgressBar
from selfteach.runs import RunDir, crash_point, fixed_batches, item_seed

T = TypeVar("T")
R = TypeVar("R", bound=Row)


@dataclass(frozen=True)
class Batch(Generic[T]):
    """One fixed batch: all its items (written ones included) and the run seed."""

    items: list[T]
    ids: list[str]
    done: frozenset[str]
    run_seed: int

    def seed(self, *stream: str, ids: Sequence[str] | None = None) -> int:
        """The sampling seed of a generate call serving `ids` (default: the whole batch).
        `stream` names one of several calls for the same items (e.g. a temperature)."""
        return item_seed(self.run_seed, *(self.ids if ids is None else ids), *stream)


@dataclass(frozen=True)
class Outputs(Generic[R]):
    """Where and how a method's rows lie in a run directory: `file` holds rows of type
    `record`, each naming its item in field `key`; an item is complete with `per_item` rows."""

    file: str
    record: type[R]
    key: str = "id"
    per_item: int = 1

    def load(self, run: RunDir | None) -> dict[str, list[R]]:
        """The complete items already in the file, as records by item id. Repairs a torn
        last line; removes the rows of an incomplete item (so it is redone whole)."""
        if run is None or not run.file(self.file).exists():
            return {}
        run.done_rows(self.file, key=None)  # drops a torn last line; names other damage
        raw = run.read(self.file)
        rows: dict[str, list[R]] = {}
        for line, row in enumerate(raw, start=1):
            rec = self._parse(run, line, row)
            rows.setdefault(str(row[self.key]), []).append(rec)
        if self.per_item == 1:
            return {k: v[-1:] for k, v in rows.items()}  # a repeated id: the last row wins
        complete = {k: v for k, v in rows.items() if len(v) >= self.per_item}
        if len(complete) < len(rows):
            from selfteach.data.jsonl import write_jsonl

            write_jsonl(run.file(self.file), [r for r in raw if str(r[self.key]) in complete])
        return complete

    def _parse(self, run: RunDir, line: int, row: dict) -> R:
        where = f"{run.file(self.file)}:{line}"
        fix = "(fix or remove the line, or start a new --out)"
        if row.get(self.key) is None or isinstance(row[self.key], dict | list):
            raise SelfteachError(f"{where}: row has no valid {self.key!r}; the run directory is "
                                 f"damaged {fix}")
        try:
            return self.record.model_validate(row)
        except ValidationError as e:
            err = e.errors()[0]
            field = ".".join(str(x) for x in err["loc"]) or "row"
            raise SelfteachError(f"{where}: field {field!r}: {err['msg']}; not a "
                                 f"{self.record.__name__} row {fix}") from None


Work = Callable[[Batch[T]], Sequence[R | Sequence[R] | None]]


def _id_of(item: Any) -> str:
    return item.id


def run_items(items: Sequence[T], work: Work, outputs: Outputs[R], *, seed: int, batch_size: int,
              run: RunDir | None = None, item_id: Callable[[T], str] = _id_of,
              label: str = "working", progress: bool = True, transient: bool = True,
              crash: str | None = None) -> list[R]:
    """Run `work` over `items` in fixed batches of `batch_size`; returns every item's rows
    in item order (rows written before an interruption included).

    `work(batch)` returns, for each item of `batch.items`, its row or its `per_item` rows
    (anything, e.g. None, for an item in `batch.done`: it is not written again). With
    `run`, rows are appended to `outputs.file` as items finish and the items already
    complete there are skipped; `crash` names the test hook `crash_point("<crash>:<id>")`,
    reached after an item's rows are written."""
    done = outputs.load(run)
    ids = [item_id(it) for it in items]
    with ProgressBar(progress, len(items), sum(i in done for i in ids), label, transient) as bar:
        for batch_items in fixed_batches(list(items), batch_size):
            batch_ids = [item_id(it) for it in batch_items]
            if all(i in done for i in batch_ids):
                continue
            written = frozenset(i for i in batch_ids if i in done)
            results = work(Batch(batch_items, batch_ids, written, seed))
            if len(results) != len(batch_items):
                raise RuntimeError(f"{label}: work returned {len(results)} results "
                                   f"for {len(batch_items)} items")
            for i, result in zip(batch_ids, results, strict=True):
                if i in written:  # regenerated only to keep the batch as it was
                    continue
                done[i] = cast(list[R], [result] if isinstance(result, Row) else list(result or ()))
                if run is not None:
                    for row in done[i]:
                        run.append(outputs.file, row.to_row())
                    if crash:
                        crash_point(f"{crash}:{i}")
                bar.advance(1)
    return [r for i in ids if i in done for r in done[i]]
