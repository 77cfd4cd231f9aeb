"""The benchmarks' house rules, read from the files (nothing is run or imported).

- No script under benchmarks/ imports the tests (the tests may use benchmarks/perf/service_kit.py, not the reverse).
- No script patches ganprint: no assignment, `del` or `setattr` on a module, class or function imported from ganprint
  (a benchmark that needs another behaviour asks for it with a public parameter).
- Every script a command in a RESULTS file (or benchmarks/README.md) runs exists, and so does every path below
  `benchmarks/`, `tests/` and `src/ganprint/` that the docs, the RESULTS files and the library's comments name (`git show REV:path` citations of
  removed files excepted), and every repository path that a `gpu_*.sh` script names; the scripts parse (`bash -n`).
Each check also runs on a small synthetic tree that breaks it (test_the_checks_refuse_a_bad_tree).
"""

from __future__ import annotations

import ast
import glob
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Scripts that a RESULTS file writes out in full (a code block after the command) instead of keeping a file.
INLINE = {"RESULTS-eval.md": {"distortion.py", "modelatt.py"}, "RESULTS-diffusion.md": {"samplers.sh"}}


def _scripts(root: Path) -> list[Path]:
    return sorted((root / "benchmarks").rglob("*.py"))


def _imports_tests(path: Path) -> list[str]:
    """`file:line` of each import of the tests package (statement or importlib string) in one script."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    bad = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) and (
                getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")):
            names = [str(node.args[0].value)]
        if any(n == "tests" or n.startswith("tests.") for n in names):
            posix = path.as_posix()
            bad.append(f"{posix[posix.rindex('/benchmarks/') + 1:]}:{node.lineno}")
    return bad


def _ganprint_names(tree: ast.AST) -> set[str]:
    """Local names bound to ganprint modules or to objects imported from them."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "ganprint":
                    names.add(a.asname or "ganprint")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "ganprint":
            names |= {a.asname or a.name for a in node.names}
    return names


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _patches(path: Path) -> list[str]:
    """`file:line` of each assignment, deletion or setattr on something imported from ganprint."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    imported = _ganprint_names(tree)
    bad = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Assign):
            targets = [t for tgt in node.targets for t in (tgt.elts if isinstance(tgt, ast.Tuple) else [tgt])]
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = node.targets
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr"):
            targets = [ast.Attribute(value=node.args[0], attr="?")] if node.args else []
        if any(isinstance(t, ast.Attribute) and _root_name(t) in imported for t in targets):
            bad.append(f"{path.name}:{node.lineno}")
    return bad


_COMMAND = re.compile(r"(?:^|[\s`(;|&])(?:python3?|bash|sh)\s+((?:-(?!m\b|c\b)[\w-]+\s+)*)([\w./-]+\.(?:py|sh))\b")


def _missing_commands(root: Path) -> list[str]:
    """Scripts that a command in a RESULTS file or benchmarks/README.md runs, where no such file exists."""
    docs = sorted((root / "benchmarks").rglob("RESULTS-*.md")) + [root / "benchmarks" / "README.md"]
    bad = []
    for doc in (d for d in docs if d.is_file()):
        for m in _COMMAND.finditer(doc.read_text(encoding="utf-8")):
            script = m.group(2)
            if script in INLINE.get(doc.name, ()):
                continue
            found = (root / script).is_file() if "/" in script else (doc.parent / script).is_file()
            if not found:
                bad.append(f"{doc.relative_to(root)} runs {script}")
    return sorted(set(bad))


_PATH = re.compile(r"(?<![\w:/.$-])(?:benchmarks|tests|src/ganprint)/[\w./{},*\[\]-]*[\w*}\]]")


def _expand(path: str) -> list[str]:
    """`a/{x,y}.png` -> both; `a[_seed1].json` -> with and without the optional part."""
    m = re.search(r"\{([^{}]*)\}|\[([^\[\]]*)\]", path)
    if not m:
        return [path]
    options = m.group(1).split(",") if m.group(1) is not None else ["", m.group(2)]
    return [p for o in options for p in _expand(path[:m.start()] + o + path[m.end():])]


def _missing_paths(root: Path) -> list[str]:
    """Paths below benchmarks/, tests/ and src/ganprint/ named in the docs, the RESULTS files and src comments that
    do not exist."""
    texts = [root / "README.md", root / "CONTRIBUTING.md", *sorted((root / "docs").glob("*.md")),
             *sorted((root / "benchmarks").rglob("*.md")), *sorted((root / "src").rglob("*.py")),
             *sorted((root / "benchmarks").glob("*.sh"))]
    bad = []
    for text in (t for t in texts if t.is_file()):
        for m in _PATH.finditer(text.read_text(encoding="utf-8")):
            for path in _expand(m.group(0)):
                if not glob.glob(str(root / path)):
                    bad.append(f"{text.relative_to(root)} names {path}")
    return sorted(set(bad))


_REPO_PATH = re.compile(r"(?<![\w/$.-])(?:benchmarks|tests|src|tools)/[\w./-]*\w")


def _gpu_script_problems(root: Path) -> list[str]:
    """Repository paths that a gpu_*.sh names but that do not exist, and scripts that do not parse."""
    bad = []
    for sh in sorted((root / "benchmarks").glob("gpu_*.sh")):
        text = sh.read_text(encoding="utf-8")
        bad += [f"{sh.name} names {p}" for p in sorted(set(_REPO_PATH.findall(text))) if not (root / p).exists()]
        check = subprocess.run(["bash", "-n", str(sh)], capture_output=True, text=True)
        if check.returncode:
            bad.append(f"{sh.name} does not parse: {check.stderr.strip()}")
    return bad


def test_the_checks_see_the_benchmarks():
    names = {p.relative_to(REPO).as_posix() for p in _scripts(REPO)}
    assert {"benchmarks/perf/bench_service.py", "benchmarks/experiments/scalable/scalable_curve.py"} <= names
    assert len(list((REPO / "benchmarks").glob("gpu_*.sh"))) >= 3
    results = sorted((REPO / "benchmarks").rglob("RESULTS-*.md"))
    commands = [m.group(2) for r in results for m in _COMMAND.finditer(r.read_text(encoding="utf-8"))]
    assert len(results) >= 8 and len(commands) > 30 and "benchmarks/perf/bench_embed_detect.py" in commands


def test_no_benchmark_imports_the_tests():
    bad = [b for p in _scripts(REPO) for b in _imports_tests(p)]
    assert not bad, f"benchmarks import the tests (move what they need into the benchmark or the library): {bad}"


def test_no_benchmark_patches_ganprint():
    bad = [b for p in _scripts(REPO) for b in _patches(p)]
    assert not bad, f"benchmarks assign to ganprint's modules or classes (use a public parameter instead): {bad}"


def test_every_command_in_a_results_file_exists():
    bad = _missing_commands(REPO)
    assert not bad, "\n".join(bad)


def test_every_benchmarks_path_named_in_the_docs_exists():
    bad = _missing_paths(REPO)
    assert not bad, "fix these paths (or cite a removed file as `git show REV:path`):\n" + "\n".join(bad)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_gpu_scripts_name_existing_paths():
    bad = _gpu_script_problems(REPO)
    assert not bad, "\n".join(bad)


def test_the_checks_refuse_a_bad_tree(tmp_path):
    files = {
        "benchmarks/perf/a.py": "import sys\nfrom tests.service.models import make_models\n",
        "benchmarks/perf/b.py": "import importlib\nimportlib.import_module('tests.conftest')\nimport testsuite\n",
        "benchmarks/perf/c.py": "from ganprint.artificial import embed as e\n"
                                "from ganprint.nets.stega import StegaModel\nimport ganprint.core.files\ne.loader = None\nStegaModel.forward = None\n"
                                "ganprint.core.files.atomic_path = None\nsetattr(e, 'x', 1)\nm = StegaModel()\n"
                                "m.fused = False\n",  # an instance's public attribute is no patch
        "benchmarks/perf/RESULTS-x.md": "`python benchmarks/perf/a.py` and `python benchmarks/perf/gone.py --n 1`;\n"
                                        "`PYTHONPATH=src python -u here.py`, `python -m ganprint`, `bash lost.sh`\n"
                                        "see benchmarks/perf/results/{a,b}.json and "
                                        "`git show 1234567:benchmarks/old.py`\n",
        "benchmarks/perf/here.py": "",
        "benchmarks/perf/results/a.json": "{}",
        "benchmarks/gpu_x.sh": "python benchmarks/perf/a.py\npython benchmarks/nope.py\nif then\n",
        "README.md": "run benchmarks/perf/a.py or benchmarks/perf/missing.py.\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    scripts = {p.name: p for p in _scripts(tmp_path)}
    assert _imports_tests(scripts["a.py"]) == ["benchmarks/perf/a.py:2"]
    assert _imports_tests(scripts["b.py"]) == ["benchmarks/perf/b.py:2"]
    assert _patches(scripts["c.py"]) == ["c.py:4", "c.py:5", "c.py:6", "c.py:7"]
    assert _missing_commands(tmp_path) == ["benchmarks/perf/RESULTS-x.md runs benchmarks/perf/gone.py",
                                           "benchmarks/perf/RESULTS-x.md runs lost.sh"]
    assert _missing_paths(tmp_path) == ["README.md names benchmarks/perf/missing.py",
                                        "benchmarks/gpu_x.sh names benchmarks/nope.py",
                                        "benchmarks/perf/RESULTS-x.md names benchmarks/perf/gone.py",
                                        "benchmarks/perf/RESULTS-x.md names benchmarks/perf/results/b.json"]
    if shutil.which("bash"):
        problems = _gpu_script_problems(tmp_path)
        assert problems[0] == "gpu_x.sh names benchmarks/nope.py" and "does not parse" in problems[1]
