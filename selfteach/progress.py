"""One progress bar for every long loop (rich), or nothing when disabled."""

from __future__ import annotations

from typing import Literal


class ProgressBar:
    """`with ProgressBar(enabled, total, completed, label) as bar: ... bar.advance(n)`."""

    def __init__(self, enabled: bool, total: int, completed: int = 0, label: str = "working",
                 transient: bool = True):
        self.enabled = enabled and total > 0
        self.total, self.completed, self.label, self.transient = total, completed, label, transient

    def __enter__(self) -> ProgressBar:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                transient=self.transient,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total, completed=self.completed)
        return self

    def advance(self, n: int = 1) -> None:
        if self.enabled:
            self._bar.advance(self._task, n)

    def describe(self, text: str) -> None:
        """Replace the label (a trainer shows its latest loss there)."""
        if self.enabled:
            self._bar.update(self._task, description=text)

    def __exit__(self, *exc) -> Literal[False]:
        if self.enabled:
            self._bar.stop()
        return False
