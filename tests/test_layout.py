"""The package layout flows one way (docs/architecture.md): every import of a prefalign package
points to a lower layer, so the import graph between packages has no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "prefalign"

#: Top to bottom: a package may import only packages of a lower layer (and itself).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("cli", "config_schema"),
    ("loop",),
    ("finetune",),
    ("reporting",),
    ("pairing",),
    ("learning", "sampling", "acquisition", "oracles"),
    ("domains",),
    ("models",),
    ("io", "settings", "runtime", "provenance", "snakemake_patches", "registry"),
)
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def _package(module: str) -> str:
    """``prefalign.loop.steps`` -> ``loop``; ``prefalign.settings`` -> ``settings``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path) -> set[str]:
    """Every prefalign module a file imports, at module level or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("prefalign"):
            base = node.module or ""
            # `from prefalign import x`: x is the package; `from prefalign.a import b`: a is
            found |= {f"{base}.{a.name}" for a in node.names} if base == "prefalign" else {base}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("prefalign")}
    return found


def _edges() -> list[tuple[str, str, str]]:
    edges = []
    for path in sorted(SRC.rglob("*.py")):
        source = _package("prefalign." + ".".join(path.relative_to(SRC).with_suffix("").parts))
        for module in _imports(path):
            target = _package(module)
            if target and target != source:
                edges.append((source, target, f"{path.relative_to(SRC.parent)} imports {module}"))
    return edges


def test_every_package_has_a_layer() -> None:
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in SRC.glob("*.py") if p.stem != "__init__"}
    assert packages | modules == set(LAYER), "add the new package or module to LAYERS"


@pytest.mark.parametrize("edge", _edges(), ids=lambda e: f"{e[0]}->{e[1]}")
def test_imports_point_down(edge: tuple[str, str, str]) -> None:
    source, target, where = edge
    assert LAYER[target] > LAYER[source], f"{where}: {source} must not depend on {target}"
