"""The package's structure: no import circles, and methods' names read only by their registries
(docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

from prefalign import acquisition
from prefalign.loop.learners import LEARNERS
from prefalign.loop.selectors import SCORES

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "prefalign"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules ``path`` imports, wherever the import stands (module level, inside a
    function, or under TYPE_CHECKING: each is an arrow of the structure)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [
                f"{node.module}.{alias.name}"
                if f"{node.module}.{alias.name}" in modules
                else node.module
                for alias in node.names
            ]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

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
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_module_imports_itself_through_others() -> None:
    modules = _modules()
    graph = {
        name: {m for m in _imports(path, modules) if m != name and not name.startswith(m + ".")}
        for name, path in modules.items()
    }
    assert _circles(graph) == []


#: Where a method's learner, selection, score and exploring arm are read: their registries and
#: the one place that resolves a method.
REGISTRIES = {
    "acquisition.py",
    "loop/learners.py",
    "loop/selectors.py",
    "loop/spec.py",
    "loop/campaign_settings.py",
}
METHOD_NAMES = {"learner", "selection", "score", "explore_from", "tilt_member"}


def _method_reads(tree: ast.AST) -> list[str]:
    """``method.<name>`` / ``spec.method.<name>`` reads of a method's behaviour names."""
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in METHOD_NAMES:
            owner = node.value
            if (isinstance(owner, ast.Name) and owner.id in {"method", "meth"}) or (
                isinstance(owner, ast.Attribute) and owner.attr == "method"
            ):
                hits.append(f"line {node.lineno}: .{node.attr}")
    return hits


def _name_comparisons(tree: ast.AST, names: set[str]) -> list[str]:
    """Comparisons with one of ``names`` as a string (``x == "eps_greedy"``, ``in ("papa",)``)."""
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for side in [node.left, *node.comparators]:
                for const in ast.walk(side):
                    if isinstance(const, ast.Constant) and const.value in names:
                        hits.append(f"line {node.lineno}: {const.value!r}")
    return hits


def test_method_names_are_read_only_by_their_registries() -> None:
    """No learner, selection, score or exploring-arm name is compared as a string, and no
    method's behaviour setting is read, outside the registries: a new learner or rule is one
    file, and the steps never branch on a method's name."""
    names = set(LEARNERS) | set(acquisition.RULES) | set(SCORES)
    names -= {"random"}  # also the label of random picks (selected_by), compared as such
    offenders = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in REGISTRIES:
            continue
        tree = ast.parse(path.read_text())
        hits = _method_reads(tree) + _name_comparisons(tree, names)
        if hits:
            offenders[rel] = hits
    assert offenders == {}


def test_the_checks_find_what_they_look_for() -> None:
    """The two scans above are not vacuous: they flag the patterns they forbid."""
    tree = ast.parse('if spec.method.learner != "surrogate" and rule in ("ucb", "x"):\n    pass\n')
    assert _method_reads(tree) == ["line 1: .learner"]
    assert _name_comparisons(tree, {"surrogate", "ucb"}) == ["line 1: 'surrogate'", "line 1: 'ucb'"]
    assert _circles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
