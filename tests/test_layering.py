"""The layering of src/ganprint, read from the source with `ast` (nothing is imported).

Every `import` / `from ... import` of a ganprint module, at module level or inside a function, is an edge of the
import graph. The floors below are the architecture: a module may import its own package or a lower floor, never a
higher floor or a sibling package of its own floor (data must not import nets, artificial must not import scalable).
A new package must be given a floor here before its modules pass.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "ganprint"

# Floor of each part of ganprint, bottom (0) to top. Keys are the first name below `ganprint`.
FLOORS: dict[str, int] = {
    "core": 0,
    "data": 1, "perturb": 1, "nets": 1,
    "training": 2,
    "artificial": 3, "gan": 3, "scalable": 3, "diffusion": 3,
    "evaluation": 4,
    "demo": 5,
    "api": 6,
    "service": 7,
    "cli": 8,
    "__main__": 9,  # `python -m ganprint` runs the CLI
}
# Sideways imports between sibling packages of one floor that the architecture allows (importer, imported).
ALLOWED_SIDEWAYS: set[tuple[str, str]] = set()
# `ganprint/__init__.py` re-exports the public API lazily (its `__getattr__` imports ganprint.api on first use), so
# that `import ganprint` stays light. Every module imports the root package implicitly, so edges into it are not
# part of the graph; its one lazy import is the documented exception to the no-function-level-imports rule.
LAZY_FACADE = {(ROOT, f"{ROOT}.api")}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / ROOT).rglob("*.py"))}


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The ganprint module that importing `name` loads (the longest known prefix), or None if not ganprint."""
    parts = name.split(".")
    if parts[0] != ROOT:
        return None
    while parts and ".".join(parts) not in known:
        parts.pop()
    return ".".join(parts) if parts else None


def _targets(node: ast.AST, module: str, is_pkg: bool, known: dict[str, Path]) -> list[str]:
    """The ganprint modules one Import / ImportFrom node loads."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative import: resolve against the importing package
            pkg = module.split(".") if is_pkg else module.split(".")[:-1]
            pkg = pkg[:len(pkg) - node.level + 1]
            base = ".".join(pkg + ([base] if base else []))
        # `from pkg import name` loads pkg.name when that is a module, else pkg itself
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    return [t for t in (_resolve(n, known) for n in names) if t is not None]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(tree: ast.AST, in_function: bool = False):
    """Yield (import node, inside a function?) for every import, skipping `if TYPE_CHECKING:` blocks."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.If) and _is_type_checking(child):
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, in_function
        yield from _walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))


def _graph() -> dict[str, list[tuple[str, bool, int]]]:
    """{module: [(imported ganprint module, at function level?, line)]}, edges into the root package left out."""
    known = _modules()
    graph: dict[str, list[tuple[str, bool, int]]] = {}
    for mod, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges = set()  # one edge per import statement and module, however many names it takes
        for node, in_fn in _walk(tree):
            for target in _targets(node, mod, path.name == "__init__.py", known):
                if target not in (mod, ROOT):
                    edges.add((target, in_fn, node.lineno))
        graph[mod] = sorted(edges)
    return graph


GRAPH = _graph()


def _part(module: str) -> str:
    return module.split(".")[1] if module != ROOT else "api"  # the root package is the API's facade


def _cycles(graph: dict[str, list[tuple[str, bool, int]]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w, _, _ in graph.get(v, []):
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


def test_the_graph_sees_the_package():
    # Guards the checks below against passing on an empty or misread tree.
    assert len(GRAPH) > 30 and f"{ROOT}.core.errors" in GRAPH
    assert any(t == f"{ROOT}.core.errors" for edges in GRAPH.values() for t, _, _ in edges)
    assert _cycles({"a": [("b", False, 1)], "b": [("c", True, 1)], "c": [("a", False, 1)], "d": []}) == [
        ["a", "b", "c"]]


def test_every_part_has_a_floor():
    unplaced = sorted({m for m in GRAPH if m != ROOT and _part(m) not in FLOORS})
    assert not unplaced, f"give these a floor in FLOORS (tests/test_layering.py): {unplaced}"


def test_no_import_cycles():
    cycles = _cycles(GRAPH)
    assert not cycles, f"import cycles (module-level and function-level imports): {cycles}"


def test_nothing_below_the_cli_imports_it():
    bad = sorted(f"{m}:{line} imports {t}" for m, edges in GRAPH.items() for t, _, line in edges
                 if _part(t) == "cli" and _part(m) not in ("cli", "__main__"))
    assert not bad, bad


def test_imports_go_down_the_floors():
    bad = []
    for m, edges in GRAPH.items():
        src = _part(m)
        for t, _, line in edges:
            dst = _part(t)
            if dst == src or (src, dst) in ALLOWED_SIDEWAYS or src not in FLOORS or dst not in FLOORS:
                continue
            if FLOORS[dst] >= FLOORS[src]:
                way = "sideways" if FLOORS[dst] == FLOORS[src] else "upward"
                bad.append(f"{m}:{line} imports {t} ({way}: {src} is floor {FLOORS[src]}, {dst} floor {FLOORS[dst]})")
    assert not bad, "\n".join(sorted(bad))


def test_no_function_level_imports_of_ganprint():
    bad = sorted(f"{m}:{line} imports {t} inside a function" for m, edges in GRAPH.items()
                 for t, in_fn, line in edges if in_fn and (m, t) not in LAZY_FACADE)
    assert not bad, "import these at module level (only optional third-party packages may be imported late):\n" + \
        "\n".join(bad)
