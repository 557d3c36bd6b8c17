"""Print a run's summary ({"title", "tables": [{"name", "columns", "rows"}], "notes"}) as
rich tables: the same content `selfteach report` puts in report.html."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def render_summary(summary: dict, console: Console | None = None) -> None:
    console = console or Console()
    title = summary.get("title", "")
    for t in summary.get("tables", []):
        table = Table(title=f"{title}\n{t['name']}" if title else t["name"])
        for c in t["columns"]:
            table.add_column(str(c))
        for r in t["rows"]:
            table.add_row(*[escape(str(x)) for x in r])
        console.print(table)
    for n in summary.get("notes", []):
        console.print(f"[dim]{escape(str(n))}[/dim]")
