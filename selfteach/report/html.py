"""An HTML report of one run directory (or several, compared).

Generic on purpose: each method writes `summary.json`
({"title", "tables": [{"name", "columns", "rows"}], "notes"}) and PNG plots into its run
directory; the report shows those, the config, the environment (versions, commit, seed)
and the tail of metrics.jsonl. One self-contained file: images are embedded.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import yaml

from selfteach.data.jsonl import atomic_write_text
from selfteach.errors import SelfteachError

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee;margin:.5em 0}pre{background:#f8f8f8;padding:1em;
overflow:auto;font-size:12px}.note{color:#555}h2{border-bottom:1px solid #ddd}"""


def _table(t: dict) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in t.get("columns", []))
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in r) + "</tr>" for r in t.get("rows", []))
    return f"<h3>{html.escape(str(t.get('name', '')))}</h3><table><tr>{head}</tr>{body}</table>"


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f"<figure><img src='data:image/png;base64,{data}'><figcaption>{html.escape(path.name)}</figcaption></figure>"


def run_section(run: Path) -> str:
    if not run.is_dir():
        raise SelfteachError(f"{run}: not a run directory")
    parts = [f"<h2>{html.escape(str(run))}</h2>"]
    summary_file = run / "summary.json"
    if summary_file.exists():
        try:
            s = json.loads(summary_file.read_text())
        except json.JSONDecodeError as e:
            raise SelfteachError(f"{summary_file}: malformed JSON ({e.msg})") from None
        parts.append(f"<h3>{html.escape(str(s.get('title', '')))}</h3>")
        parts += [_table(t) for t in s.get("tables", [])]
        parts += [f"<p class=note>{html.escape(str(n))}</p>" for n in s.get("notes", [])]
    parts += [_img(p) for p in sorted(run.glob("*.png"))]
    for name in ("config.yaml", "env.json"):
        f = run / name
        if f.exists():
            text = f.read_text()
            if name == "env.json":
                text = yaml.safe_dump(json.loads(text), sort_keys=False)
            parts.append(f"<details><summary>{name}</summary><pre>{html.escape(text)}</pre></details>")
    metrics = run / "metrics.jsonl"
    if metrics.exists():
        lines = metrics.read_text().splitlines()[-30:]
        parts.append(f"<details><summary>metrics.jsonl (last {len(lines)} lines)</summary>"
                     f"<pre>{html.escape(chr(10).join(lines))}</pre></details>")
    return "\n".join(parts)


def write_report(runs: list[Path], out: Path | None = None, extra_images: list[Path] | None = None) -> Path:
    """Write report.html for one run (into the run dir) or a comparison of several."""
    if not runs:
        raise SelfteachError("no run directory given")
    out = out or (runs[0] / "report.html" if len(runs) == 1 else Path("runs") / "compare.html")
    title = "selfteach report" if len(runs) == 1 else f"selfteach comparison of {len(runs)} runs"
    body = [f"<h1>{title}</h1>"] + [_img(p) for p in extra_images or []] + [run_section(r) for r in runs]
    page = f"<!doctype html><meta charset=utf-8><title>{title}</title><style>{_CSS}</style>" + "\n".join(body)
    return atomic_write_text(out, page)
