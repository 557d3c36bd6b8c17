"""The package's layering, read from the source (ast): no import cycle, methods that do not
reach into each other, backends used through declared capabilities (no getattr probing)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "selfteach"
METHODS = ("elicit", "improve", "train", "judge", "evaluate", "report")


def _modules() -> dict[str, Path]:
    out = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        parts = list(f.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


MODULES = _modules()


def _type_checking_only(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST):
    """Every import statement, at module level or inside functions (a lazy import is still
    a dependency), except those under `if TYPE_CHECKING:` (annotations only, never run)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _type_checking_only(node):
            for other in node.orelse:
                yield from _import_nodes(ast.Module(body=[other], type_ignores=[]))
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        else:
            yield from _import_nodes(node)


def imports_of(name: str) -> dict[str, set[str]]:
    """{selfteach module imported by `name`: names imported from it}."""
    f = MODULES[name]
    out: dict[str, set[str]] = {}
    for node in _import_nodes(ast.parse(f.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in MODULES:
                    out.setdefault(a.name, set())
            continue
        base = node.module or ""
        if node.level:  # relative import
            pkg = name.split(".") if f.name == "__init__.py" else name.split(".")[:-1]
            pkg = pkg[: len(pkg) - (node.level - 1)]
            base = ".".join(pkg + ([base] if base else []))
        for a in node.names:
            sub = f"{base}.{a.name}"
            if sub in MODULES:  # `from selfteach.backends import hf_prefix`
                out.setdefault(sub, set())
            elif base in MODULES:
                out.setdefault(base, set()).add(a.name)
    out.pop(name, None)
    return out


GRAPH = {m: imports_of(m) for m in MODULES}


def cycles(graph: dict[str, set[str]] | dict[str, dict[str, set[str]]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_walker_sees_lazy_imports_and_finds_a_cycle():
    # known answer: the walker must see imports inside functions, or it would miss the
    # anytime -> pdp kind of cycle this test exists for
    assert "selfteach.backends.hf" in GRAPH["selfteach.backends"]  # load_backend imports it lazily
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_selfteach_modules():
    found = cycles(GRAPH)
    assert not found, "import cycles (make the dependency go one way): " + "; ".join(
        " <-> ".join(c) for c in found)


def _method(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in METHODS else None


def _is_cli_glue(module: str) -> bool:
    return module.rsplit(".", 1)[-1].endswith("commands")


def test_methods_do_not_import_each_others_private_names():
    bad = [
        f"{m} imports {', '.join(sorted(n for n in names if n.startswith('_')))} from {d}"
        for m, deps in GRAPH.items()
        for d, names in deps.items()
        if _method(m)
        and _method(d)
        and _method(m) != _method(d)
        and any(n.startswith("_") for n in names)
    ]
    assert not bad, bad


def test_method_packages_depend_one_way():
    """Apart from the command modules (CLI glue, which may print with `report`), the method
    packages form a one-way graph: improve builds on elicit, train and evaluate, never
    the reverse."""
    packages: dict[str, set[str]] = {p: set() for p in METHODS}
    for m, deps in GRAPH.items():
        if _method(m) and not _is_cli_glue(m):
            packages[_method(m)] |= {
                _method(d) for d in deps if _method(d) and _method(d) != _method(m)
            }
    assert not cycles(packages), packages
    assert "improve" not in packages["elicit"] | packages["train"] | packages["evaluate"]


def _probes_a_backend(call: ast.Call) -> bool:
    if not (
        isinstance(call.func, ast.Name) and call.func.id in ("getattr", "hasattr") and call.args
    ):
        return False
    target = call.args[0]
    name = (
        target.attr
        if isinstance(target, ast.Attribute)
        else target.id
        if isinstance(target, ast.Name)
        else ""
    )
    return "backend" in name.lower()


def test_no_getattr_probing_of_backends():
    """Methods ask for a capability (`require`, `isinstance(backend, Capability)`,
    selfteach.backends.base); they never guess with getattr/hasattr."""
    bad = [f"{f.relative_to(PACKAGE.parent)}:{node.lineno}" for f in MODULES.values()
           for node in ast.walk(ast.parse(f.read_text(encoding="utf-8")))
           if isinstance(node, ast.Call) and _probes_a_backend(node)]
    assert not bad, bad
    assert _probes_a_backend(ast.parse('getattr(self.backend, "max_length", None)').body[0].value)  # type: ignore[attr-defined]
