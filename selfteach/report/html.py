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
table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee;margin:.5em 0}
pre{background:#f8f8f8;padding:1em;overflow:auto;font-size:12px}
.note{color:#555}h2{border-bottom:1px solid #ddd}"""


def _table(t: dict) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in t.get("columns", []))
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in r) + "</tr>"
        for r in t.get("rows", [])
    )
    return f"<h3>{html.escape(str(t.get('name', '')))}</h3><table><tr>{head}</tr>{body}</table>"


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (
        f"<figure><img src='data:image/png;base64,{data}'>"
        f"<figcaption>{html.escape(path.name)}</figcaption></figure>"
    )


def run_section(run: Path) -> str:
    if not run.is_dir():
        raise SelfteachError(f"{run}: not a run directory")
    parts = [f"<h2>{html.escape(str(run))}</h2>"]
    summary_file = run / "summary.json"
    if summary_file.exists():
        s = check_summary(read_json(summary_file), summary_file)
        parts.append(f"<h3>{html.escape(str(s.get('title', '')))}</h3>")
        parts += [_table(t) for t in s.get("tables", [])]
        parts += [f"<p class=note>{html.escape(str(n))}</p>" for n in s.get("notes", [])]
    parts += [_img(p) for p in sorted(run.glob("*.png"))]
    for name in ("config.yaml", "env.json"):
        f = run / name
        if f.exists():
            text = read_text(f)
            if name == "env.json":
                text = yaml.safe_dump(read_json(f), sort_keys=False)
            parts.append(f"<details><summary>{name}</summary><pre>{html.escape(text)}</pre></details>")
    metrics = run / "metrics.jsonl"
    if metrics.exists():
        # shown only
        lines = metrics.read_text(encoding="utf-8", errors="replace").splitlines()[-30:]
        parts.append(f"<details><summary>metrics.jsonl (last {len(lines)} lines)</summary>"
                     f"<pre>{html.escape(chr(10).join(lines))}</pre></details>")
    return "\n".join(parts)


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SelfteachError(
            f"{path}: not UTF-8 (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
            "the run directory is damaged"
        ) from None


def read_json(path: Path) -> dict:
    """A run's JSON file (summary.json, env.json) as an object, or a one-line error."""
    try:
        obj = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise SelfteachError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None
    except RecursionError:
        raise SelfteachError(f"{path}: JSON nested too deeply") from None
    if not isinstance(obj, dict):
        raise SelfteachError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def check_summary(s: dict, path: Path) -> dict:
    """summary.json's shape:
    {"title", "tables": [{"name", "columns": [...], "rows": [[...]]}], "notes"}."""
    tables, notes = s.get("tables", []), s.get("notes", [])
    if not isinstance(tables, list) or not isinstance(notes, list):
        raise SelfteachError(
            f"{path}: field {'tables' if not isinstance(tables, list) else 'notes'!r}: "
            "expected a list"
        )
    for i, t in enumerate(tables):
        if not isinstance(t, dict) or not isinstance(t.get("columns", []), list) \
                or not isinstance(t.get("rows", []), list) \
                or not all(isinstance(r, list) for r in t.get("rows", [])):
            raise SelfteachError(
                f"{path}: field 'tables[{i}]': expected {{name, columns: [...], rows: [[...]]}}"
            )
    return s


def write_report(
    runs: list[Path], out: Path | None = None, extra_images: list[Path] | None = None
) -> Path:
    """Write report.html for one run (into the run dir) or a comparison of several."""
    if not runs:
        raise SelfteachError("no run directory given")
    out = out or (runs[0] / "report.html" if len(runs) == 1 else Path("runs") / "compare.html")
    title = "selfteach report" if len(runs) == 1 else f"selfteach comparison of {len(runs)} runs"
    body = (
        [f"<h1>{title}</h1>"]
        + [_img(p) for p in extra_images or []]
        + [run_section(r) for r in runs]
    )
    page = (
        f"<!doctype html><meta charset=utf-8><title>{title}</title><style>{_CSS}</style>"
        + "\n".join(body)
    )
    return atomic_write_text(out, page)
