"""The layering of src/ganprint, read from the source with `ast` (nothing is imported).

Every `import` / `from ... import` of a ganprint module, at module level or inside a function, is an edge of the
import graph, and so is every `importlib.import_module(...)` / `__import__(...)` whose name the test can read (a
literal, an f-string of literals, `__name__` and loop variables over literal tuples); a dynamic import whose name it
cannot read is refused. The floors below are the architecture: a module may import its own package or a lower floor,
never a higher floor or a sibling package of its own floor (data must not import nets, artificial must not import
scalable), and nothing imports the package root (`import ganprint`, `from ganprint import X` where X is no module):
the root is the API's facade, above everything. A new package must be given a floor here before its modules pass.
Every check runs on a small synthetic tree too (test_the_checks_refuse_a_bad_tree), so that it is seen to fail.
"""

from __future__ import annotations

import ast
import itertools
import re
import subprocess
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
ROOT = "ganprint"

# Floor of each part of ganprint, bottom (0) to top. Keys are the first name below `ganprint`.
FLOORS: dict[str, int] = {
    "_version": -1,  # the version, written once; imports nothing
    "core": 0,
    "data": 1, "perturb": 1, "nets": 1,
    "training": 2, "registry": 2, "inference": 2,  # the kits every method shares
    "artificial": 3, "gan": 3, "scalable": 3, "diffusion": 3, "verification": 3, "latent": 3,
    "evaluation": 4, "provenance": 4,
    "demo": 5,
    "api": 6,
    "service": 7,
    "cli": 8,
    "__main__": 9,  # `python -m ganprint` runs the CLI
}
# Sideways imports between sibling packages of one floor that the architecture allows (importer, imported).
# Latent diffusion builds on the diffusion kit (its UNet, schedulers and diffusers import).
ALLOWED_SIDEWAYS: set[tuple[str, str]] = {("latent", "diffusion")}
# `ganprint/__init__.py` re-exports the public API lazily (its `__getattr__` imports ganprint.api on first use), so
# that `import ganprint` stays light; that one lazy import is the documented exception to the no-function-level-imports
# rule. Edges into the root are refused (the root sits above the API); Python's implicit import of the parent package
# when a submodule is imported is no edge.
LAZY_FACADE = {(ROOT, f"{ROOT}.api"), (ROOT, f"{ROOT}.verification.detector")}
# Late imports that keep a start-up light (issue 24): the CLI imports a command's module when that command runs
# (`ganprint.cli._Commands`), and the verifier imports the PyTorch decoder adapter and the registry (torch) only for a
# safetensors export or a registry, so that checking with an ONNX graph never loads torch.
LAZY_START = {(f"{ROOT}.cli", f"{ROOT}.cli.{m}") for m in ("artificial", "data", "gan", "scalable", "diffusion",
                                                            "evaluation", "demo", "service", "provenance",
                                                            "verification", "latent", "latent_fingerprint")} | {
    (f"{ROOT}.verification.detector", f"{ROOT}.inference.decoders"),
    (f"{ROOT}.verification.detector", f"{ROOT}.registry.store")}
# Builder discovery: `load_export` rebuilds a model from the kind named in a file's metadata, so on first use it
# imports, by name, the modules that register builders with `@register_kind` (they import core.artifacts, not the
# reverse). These late imports are the one upward edge allowed; they stay out of the cycle check because they run
# after every module has loaded. test_the_exceptions_are_still_needed fails when one of them is gone.
BUILDER_DISCOVERY = {(f"{ROOT}.core.artifacts", f"{ROOT}.{m}")
                     for m in ("nets.stega", "nets.stylegan2", "nets.scalable", "diffusion.model",
                                   "latent.autoencoder", "latent.modulated", "latent.model")}

Edge = tuple[str, bool, int]  # (imported ganprint module, at function level?, line)


def _module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(src: Path = SRC) -> dict[str, Path]:
    return {_module_name(p, src): p for p in sorted((src / ROOT).rglob("*.py"))}


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The ganprint module that importing `name` loads (the longest known prefix), or None if not ganprint."""
    parts = name.split(".")
    if parts[0] != ROOT:
        return None
    while parts and ".".join(parts) not in known:
        parts.pop()
    return ".".join(parts) if parts else None


def _absolute(base: str, level: int, module: str, is_pkg: bool) -> str:
    """`from <level dots><base> import ...` inside `module`, as an absolute name."""
    if not level:
        return base
    pkg = module.split(".") if is_pkg else module.split(".")[:-1]
    pkg = pkg[:len(pkg) - level + 1]
    return ".".join(pkg + ([base] if base else []))


def _targets(node: ast.AST, module: str, is_pkg: bool, known: dict[str, Path]) -> list[str]:
    """The ganprint modules one Import / ImportFrom node loads (the root itself for `from ganprint import X`)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = _absolute(node.module or "", node.level, module, is_pkg)
        # `from pkg import name` loads pkg.name when that is a module, else pkg itself
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    return [t for t in (_resolve(n, known) for n in names) if t is not None]


class _Strings:
    """The values that string expressions of one module can take: literals, f-strings and `+` of them, `__name__`,
    and names bound to literal tuples or looping over them (scopes are merged: over-approximation only adds edges)."""

    def __init__(self, tree: ast.AST, module: str):
        self.env: dict[str, set[str]] = {"__name__": {module}}
        for _ in range(3):  # a loop over a name bound to a tuple needs a second pass
            for node in ast.walk(tree):
                if isinstance(node, (ast.For, ast.comprehension)) and isinstance(node.target, ast.Name):
                    target, values = node.target.id, self.values(node.iter)
                elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    target, values = node.targets[0].id, self.values(node.value)
                else:
                    continue
                if values is not None and target != "__name__":
                    self.env[target] = self.env.get(target, set()) | values

    def values(self, node: ast.AST) -> set[str] | None:
        """Every string `node` may evaluate to, or None if the test cannot tell."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value}
        if isinstance(node, ast.Name):
            return self.env.get(node.id)
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            parts = [self.values(e) for e in node.elts]
            return None if any(p is None for p in parts) else set().union(*parts)
        if isinstance(node, ast.FormattedValue) and node.format_spec is None and node.conversion == -1:
            return self.values(node.value)
        pieces = node.values if isinstance(node, ast.JoinedStr) else \
            [node.left, node.right] if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add) else None
        if pieces is None:
            return None
        options = [self.values(p) for p in pieces]
        if any(o is None for o in options):
            return None
        return {"".join(combo) for combo in itertools.product(*options)}


_IMPORT_FUNCTIONS = {"import_module", "__import__"}


def _dynamic_names(node: ast.Call, strings: _Strings, module: str, is_pkg: bool) -> set[str] | None:
    """Names an `importlib.import_module(...)` / `__import__(...)` call loads, or None if it cannot be read."""
    if not node.args:
        return None
    names = strings.values(node.args[0])
    if names is None:
        return None
    fn = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
    out = set()
    for name in names:
        if name.startswith("."):  # import_module(".x", package): relative to `package`
            if fn != "import_module":
                return None
            package = node.args[1] if len(node.args) > 1 else next(
                (k.value for k in node.keywords if k.arg == "package"), None)
            bases = strings.values(package) if package is not None else None
            if bases is None:
                return None
            level = len(name) - len(name.lstrip("."))
            out |= {_absolute(name[level:], level, base, True) for base in bases}
        else:
            out.add(name)
    return out


def _is_import_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    f = node.func
    return (isinstance(f, ast.Name) and f.id in _IMPORT_FUNCTIONS) or (
        isinstance(f, ast.Attribute) and f.attr in _IMPORT_FUNCTIONS and isinstance(f.value, ast.Name)
        and f.value.id in ("importlib", "builtins"))


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(tree: ast.AST, in_function: bool = False):
    """Yield (import node or import call, inside a function?) for every import, skipping `if TYPE_CHECKING:`."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.If) and _is_type_checking(child):
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)) or _is_import_call(child):
            yield child, in_function
        yield from _walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))


def _graph(src: Path = SRC) -> tuple[dict[str, list[Edge]], list[str]]:
    """({module: sorted edges}, dynamic imports whose name cannot be read), for the tree under `src`."""
    known = _modules(src)
    graph: dict[str, list[Edge]] = {}
    unreadable: list[str] = []
    for mod, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_pkg = path.name == "__init__.py"
        strings = _Strings(tree, mod)
        edges = set()  # one edge per import statement and module, however many names it takes
        for node, in_fn in _walk(tree):
            if isinstance(node, ast.Call):
                names = _dynamic_names(node, strings, mod, is_pkg)
                if names is None:
                    unreadable.append(f"{mod}:{node.lineno}: {ast.unparse(node)}")
                    continue
                targets = [t for t in (_resolve(n, known) for n in names) if t is not None]
            else:
                targets = _targets(node, mod, is_pkg, known)
            edges |= {(t, in_fn, node.lineno) for t in targets if t != mod}
        graph[mod] = sorted(edges)
    return graph, unreadable


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


def _root_edges(graph: dict[str, list[Edge]]) -> list[str]:
    return sorted(f"{m}:{line} imports the package root ({ROOT}); import the module that defines the name, e.g. "
                  f"{ROOT}._version for __version__" for m, edges in graph.items() for t, _, line in edges if t == ROOT)


def _cli_edges(graph: dict[str, list[Edge]]) -> list[str]:
    return sorted(f"{m}:{line} imports {t}" for m, edges in graph.items() for t, _, line in edges
                  if _part(t) == "cli" and _part(m) not in ("cli", "__main__"))


def _upward_edges(graph: dict[str, list[Edge]]) -> list[str]:
    bad = []
    for m, edges in graph.items():
        src = _part(m)
        for t, _, line in edges:
            dst = _part(t)
            if dst == src or (src, dst) in ALLOWED_SIDEWAYS or (m, t) in BUILDER_DISCOVERY or t == ROOT \
                    or src not in FLOORS or dst not in FLOORS:
                continue
            if FLOORS[dst] >= FLOORS[src]:
                way = "sideways" if FLOORS[dst] == FLOORS[src] else "upward"
                bad.append(f"{m}:{line} imports {t} ({way}: {src} is floor {FLOORS[src]}, {dst} floor {FLOORS[dst]})")
    return sorted(bad)


def _late_edges(graph: dict[str, list[Edge]]) -> list[str]:
    return sorted(f"{m}:{line} imports {t} inside a function" for m, edges in graph.items()
                  for t, in_fn, line in edges if in_fn and (m, t) not in LAZY_FACADE | BUILDER_DISCOVERY | LAZY_START)


def _import_cycles(graph: dict[str, list[Edge]]) -> list[list[str]]:
    return _cycles({m: [e for e in edges if (m, e[0]) not in BUILDER_DISCOVERY] for m, edges in graph.items()})


GRAPH, UNREADABLE = _graph()


def test_the_graph_sees_the_package():
    # Guards the checks below against passing on an empty or misread tree.
    assert len(GRAPH) > 30 and f"{ROOT}.core.errors" in GRAPH
    assert any(t == f"{ROOT}.core.errors" for edges in GRAPH.values() for t, _, _ in edges)
    # the CLI loads its command modules by f-string: those are edges too
    assert {f"{ROOT}.cli.artificial", f"{ROOT}.cli.service"} <= {t for t, _, _ in GRAPH[f"{ROOT}.cli"]}
    assert _cycles({"a": [("b", False, 1)], "b": [("c", True, 1)], "c": [("a", False, 1)], "d": []}) == [
        ["a", "b", "c"]]


def test_every_part_has_a_floor():
    unplaced = sorted({m for m in GRAPH if m != ROOT and _part(m) not in FLOORS})
    assert not unplaced, f"give these a floor in FLOORS (tests/test_layering.py): {unplaced}"


def test_no_import_cycles():
    cycles = _import_cycles(GRAPH)
    assert not cycles, f"import cycles (module-level and function-level imports): {cycles}"


def test_nothing_imports_the_package_root():
    bad = _root_edges(GRAPH)
    assert not bad, "\n".join(bad)


def test_dynamic_imports_are_readable():
    assert not UNREADABLE, "import by a name the layering test can read (a literal, or an f-string over a " \
        "literal tuple), so that the edge is checked:\n" + "\n".join(UNREADABLE)


def test_nothing_below_the_cli_imports_it():
    bad = _cli_edges(GRAPH)
    assert not bad, bad


def test_imports_go_down_the_floors():
    bad = _upward_edges(GRAPH)
    assert not bad, "\n".join(bad)


def test_no_function_level_imports_of_ganprint():
    bad = _late_edges(GRAPH)
    assert not bad, "import these at module level (only optional third-party packages may be imported late):\n" + \
        "\n".join(bad)


def test_the_exceptions_are_still_needed():
    edges = {(m, t) for m, es in GRAPH.items() for t, _, _ in es}
    stale = sorted((LAZY_FACADE | BUILDER_DISCOVERY | LAZY_START) - edges)
    assert not stale, f"these exceptions no longer match an import; remove them from tests/test_layering.py: {stale}"


# --- the checks, fed a small tree that breaks each rule once ---------------------------------------

_BAD_TREE = {
    "__init__.py": "__version__ = '9'\n",
    "core/__init__.py": "",
    "core/a.py": "from ganprint import __version__\n",                       # into the root
    "core/b.py": "import ganprint\nimport ganprint.core.a\n",              # into the root (the 2nd is fine)
    "nets/__init__.py": "",
    "nets/c.py": "import importlib\nimportlib.import_module('ganprint.cli.x')\n",  # below the CLI imports it
    "nets/d.py": "def f():\n    __import__('ganprint.data.e')\n",         # sideways and late
    "nets/g.py": "import importlib\nM = 'core'\nimportlib.import_module(f'ganprint.{M}.a')\n",  # fine
    "nets/h.py": "import importlib\ndef f(name):\n    importlib.import_module(name)\n",       # unreadable
    "data/__init__.py": "",
    "data/e.py": "from importlib import import_module\nfor n in ('a', 'b'):\n    import_module(f'ganprint.core.{n}')\n"
                 "import_module('.f', package=__name__.rpartition('.')[0])\n",  # unreadable package
    "core/loop.py": "from ganprint.core import loop2\n",
    "core/loop2.py": "from . import loop\n",                                 # a cycle through a relative import
    "cli/__init__.py": "",
    "cli/x.py": "from ganprint.nets import c\n",
}


def test_the_checks_refuse_a_bad_tree(tmp_path):
    for name, text in _BAD_TREE.items():
        path = tmp_path / ROOT / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    graph, unreadable = _graph(tmp_path)
    assert [p.split(":")[0] for p in _root_edges(graph)] == [f"{ROOT}.core.a", f"{ROOT}.core.b"]
    assert _cli_edges(graph) == [f"{ROOT}.nets.c:2 imports {ROOT}.cli.x"]
    assert [p.split(" (")[0] for p in _upward_edges(graph)] == [
        f"{ROOT}.nets.c:2 imports {ROOT}.cli.x", f"{ROOT}.nets.d:2 imports {ROOT}.data.e"]
    assert _late_edges(graph) == [f"{ROOT}.nets.d:2 imports {ROOT}.data.e inside a function"]
    assert [u.split(":")[0] for u in unreadable] == [f"{ROOT}.data.e", f"{ROOT}.nets.h"]
    assert (f"{ROOT}.core.a", False, 3) in graph[f"{ROOT}.nets.g"]
    assert {t for t, _, _ in graph[f"{ROOT}.data.e"]} == {f"{ROOT}.core.a", f"{ROOT}.core.b"}
    assert _import_cycles(graph) == [[f"{ROOT}.cli.x", f"{ROOT}.nets.c"], [f"{ROOT}.core.loop", f"{ROOT}.core.loop2"]]


# --- the version, written once --------------------------------------------------------------------

# Recorded results (benchmark rows, golden digests) name the version they were made with; they are data, not a copy.
_RECORDS = re.compile(r"\.(json|jsonl|csv|png|npz)$")


def _version() -> str:
    tree = ast.parse((SRC / ROOT / "_version.py").read_text(encoding="utf-8"))
    return next(n.value.value for n in tree.body if isinstance(n, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "__version__" for t in n.targets))


def _files_naming(version: str, repo: Path) -> list[str]:
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=repo,
                                capture_output=True, text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (an sdist): every file
        listed = [str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file() and ".git" not in p.parts]
    pattern = re.compile(rf"(?<![\d.]){re.escape(version)}(?!\.?\d)")  # "v1.2.3." counts, "11.2.3", "1.2.30" do not
    found = []
    for name in sorted(set(listed)):
        path = repo / name
        if _RECORDS.search(name) or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if pattern.search(text):
            found.append(name)
    return found


def test_the_version_is_written_in_one_file():
    assert _files_naming(_version(), REPO) == [f"src/{ROOT}/_version.py"]


def test_the_version_check_sees_a_second_copy(tmp_path):
    (tmp_path / "a.py").write_text('__version__ = "1.2.3"\n')
    (tmp_path / "pyproject.toml").write_text('version = "1.2.3"\n')
    (tmp_path / "rows.jsonl").write_text('{"ganprint_version": "1.2.3"}\n')
    (tmp_path / "b.md").write_text("ganprint 1.2.30, 11.2.3 and 1.2.3.1 are other versions\n")
    (tmp_path / "c.md").write_text("Released as v1.2.3.\n")
    assert _files_naming("1.2.3", tmp_path) == ["a.py", "c.md", "pyproject.toml"]
