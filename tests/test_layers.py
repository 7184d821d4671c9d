"""The package is built in layers: every import runs down (or within a layer), never in a circle.

The import graph is read from the source with :mod:`ast` (nothing is imported), so a new circle
or an import that runs up a layer fails here before it can bite at import time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lowrank_learning as ll

PACKAGE = Path(ll.__file__).parent

# Layer of each top-level part of the package: a module may import from its own layer and below.
LAYERS = {
    "core": 1,
    "tasks": 2,
    "learn": 3,
    "analysis": 4,
    "experiments": 5,
    "plotting": 6, "results": 6, "sweeps": 6, "named_sweeps": 6, "cli": 6, "reproduce": 6,
    "__init__": 7,
}
# Packages that are optional (an extra, or a platform's standard module: fcntl, POSIX only, for
# the numba kernels' compile lock): the only ones imported outside the module's top level.
OPTIONAL = {"dask", "playwright", "fcntl", "llvmlite"}  # llvmlite: with numba, whose absence the kernels handle


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    """Package-relative targets of a ``from ... import ...`` (modules where a name is a module)."""
    mods = _modules()
    if node.level == 0:
        if not (node.module or "").startswith("lowrank_learning"):
            return []
        base = node.module.split(".")[1:]
    else:
        here = module.split(".") if module != "__init__" else []
        pkg = here if is_package else here[:-1]
        up = node.level - 1
        base = (pkg[: len(pkg) - up] if up else pkg) + (node.module.split(".") if node.module else [])
    out = []
    for alias in node.names:
        candidate = ".".join(base + [alias.name])
        out.append(candidate if candidate in mods else ".".join(base) or "__init__")
    return out


def _imports(module: str, path: Path):
    """(target, line, top-level?) for every package import, and lazy third-party imports."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    top = set(map(id, tree.body))
    internal, lazy_external = [], []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            targets = _resolve(module, is_package, node)
            for t in targets:
                internal.append((t, node.lineno, id(node) in top))
            if not targets and node.level == 0 and id(node) not in top:
                lazy_external.append((node.module.split(".")[0], node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("lowrank_learning"):
                    internal.append((".".join(alias.name.split(".")[1:]) or "__init__", node.lineno, id(node) in top))
                elif id(node) not in top:
                    lazy_external.append((alias.name.split(".")[0], node.lineno))
    return internal, lazy_external


def _layer(module: str) -> int:
    return LAYERS[module.split(".")[0]]


def _graph():
    return {m: _imports(m, p) for m, p in _modules().items()}


def test_every_part_of_the_package_has_a_layer():
    assert {m.split(".")[0] for m in _modules()} <= set(LAYERS)


def test_imports_run_down_the_layers():
    wrong = []
    for module, (internal, _) in _graph().items():
        for target, line, _ in internal:
            if _layer(target) > _layer(module):
                wrong.append(f"{module}:{line} imports {target} (layer {_layer(target)} > {_layer(module)})")
    assert not wrong, "imports that run up a layer:\n" + "\n".join(wrong)


def test_no_lazy_imports_except_optional_dependencies():
    lazy = []
    for module, (internal, external) in _graph().items():
        lazy += [f"{module}:{line} imports {t} inside a function" for t, line, top in internal if not top]
        lazy += [f"{module}:{line} imports {t} inside a function" for t, line in external if t not in OPTIONAL]
    assert not lazy, "\n".join(lazy)


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_circles():
    edges = {m: {t for t, _, _ in internal if t != m} for m, (internal, _) in _graph().items()}
    cycle = _cycle(edges)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_circle_finder_finds_a_planted_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


@pytest.mark.parametrize("source, expected", [
    ("from ..tasks import flip_flop", ["tasks"]),
    ("from ..core import _kernels", ["core._kernels"]),
    ("from .overlaps import flatten", ["core.overlaps"]),
])
def test_relative_imports_resolve(source, expected):
    node = ast.parse(source).body[0]
    here = "learn.vectors" if source.startswith("from ..") else "core.network"
    assert _resolve(here, False, node) == expected
