"""The docs run: every bash, sh, console and python block of README.md and docs/*.md, in order, one fresh working
directory per file (`tests/docs_blocks.py` says how). A block that cannot run here carries
`<!-- docs-test: skip (why) -->` on the line before it. One file: `pytest tests/test_docs.py -k README`.

The runs take minutes of CPU per file (a `ganprint` command starts in about 3 s, and a walk-through has dozens),
so they carry the mark `docs`: they run when this file is named (`make test` does, after the rest of the suite)
and are left out of a plain `pytest`; the checks of the pages' form below always run."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.docs_blocks import DocsError, extract, run_block, run_file

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# One file's blocks, all together: a bound against a hang, not a speed test. The README took 7 min on 2 cores with
# a load average of 3-7, and 25 min at 10-15; a block still running at the bound fails, naming itself.
BUDGET_S = 2400


@pytest.mark.docs
@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_every_block_of_the_doc_runs(doc, tmp_path):
    outcomes, failed = run_file(doc, tmp_path, timeout=BUDGET_S)
    assert failed is None, failed.report() + "\n(times: " + \
        ", ".join(f"block {o.block.number} {o.seconds:.0f} s" for o in outcomes) + ")"


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_every_block_has_a_language_and_every_skip_a_reason(doc):
    blocks = extract(doc)  # raises DocsError on an unlabeled fence or a malformed mark
    assert all(b.skip is None or b.skip.strip() for b in blocks)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "page.md"
    path.write_text(textwrap.dedent(text))
    return path


def test_blocks_run_in_order_in_one_folder_and_a_failure_names_its_block(tmp_path):
    page = _write(tmp_path, """\
        # A page
        ```bash
        echo first > made.txt
        ```
        ```text
        exit 1
        ```
        <!-- docs-test: skip (needs a GPU) -->
        ```bash
        exit 3
        ```
        ```python
        from pathlib import Path
        assert Path("made.txt").read_text() == "first\\n"
        ```
        ```console
        $ cat made.txt
        this line is output, not a command
        $ false \\
            --no-such-flag
        ```
        ```bash
        echo never
        ```
        """)
    blocks = extract(page)
    assert [(b.language, b.runs, b.skip) for b in blocks] == [
        ("bash", True, None), ("text", False, None), ("bash", False, "needs a GPU"), ("python", True, None),
        ("console", True, None), ("bash", True, None)]
    assert blocks[4].script() == "cat made.txt\nfalse \\\n    --no-such-flag\n"
    work = tmp_path / "work"
    work.mkdir()
    outcomes, failed = run_file(page, work)
    assert [o.block.number for o in outcomes] == [1, 4, 5] and failed is outcomes[-1]
    report = failed.report()
    assert "page.md block 5 (line 16, console) exited 1" in report and "first" in report


def test_a_shell_block_fails_on_its_first_failing_command_and_background_jobs_are_stopped(tmp_path):
    page = _write(tmp_path, """\
        ```bash
        sleep 300 &
        echo $! > bg.pid
        missing_command_of_the_docs_test
        echo not reached > after.txt
        ```
        """)
    start = time.monotonic()
    outcome = run_block(extract(page)[0], tmp_path)
    assert outcome.returncode == 127 and not (tmp_path / "after.txt").exists()
    assert time.monotonic() - start < 60
    pid = int((tmp_path / "bg.pid").read_text())
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


@pytest.mark.parametrize("text, words", [
    ("```\necho hi\n```\n", "a fence without a language"),
    ("```bash\necho hi\n", "never closed"),
    ("<!-- docs-test: skip -->\n```bash\necho hi\n```\n", "skip (the reason)"),
    ("<!-- docs-test: skip (why) -->\nsome prose\n```bash\necho hi\n```\n", "just before a block"),
])
def test_malformed_pages_are_refused_naming_the_line(tmp_path, text, words):
    with pytest.raises(DocsError, match=words.replace("(", r"\(").replace(")", r"\)")):
        extract(_write(tmp_path, text))


def test_the_index_lists_every_page_of_docs_and_links_only_pages_that_exist():
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    links = set(re.findall(r"\]\(([^)#]+\.md)\)", index))
    pages = {p.name for p in (ROOT / "docs").glob("*.md")} - {"index.md"}
    assert not pages - links, f"docs/index.md has no line for {sorted(pages - links)}"
    assert all((ROOT / "docs" / link).resolve().is_file() for link in links), links
    assert "docs/index.md" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_api_reference_is_what_the_docstrings_say():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "api_reference.py"), "--check"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    import ganprint

    assert all(f"## `{name}`" in text for name in ganprint.__all__)


def test_a_server_one_block_starts_serves_the_next_blocks_and_is_stopped_after_the_file(tmp_path):
    page = _write(tmp_path, """\
        ```bash
        python -m http.server 8000 --bind 127.0.0.1 > server.log 2>&1 &
        echo $! > server.pid
        until curl -sf http://127.0.0.1:8000/ >/dev/null; do sleep 0.2; done
        ```
        ```bash
        echo hello > hello.txt
        test "$(curl -sf http://127.0.0.1:8000/hello.txt)" = hello
        ```
        """)
    work = tmp_path / "work"
    work.mkdir()
    outcomes, failed = run_file(page, work, timeout=60)
    assert failed is None and len(outcomes) == 2, failed and failed.report()
    pid = int((work / "server.pid").read_text())
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


def _command_lines(script: str) -> list[list[str]]:
    """The `ganprint ...` command lines of a shell script, as words (continuations joined, up to a pipe, `&`, `;`
    or a comment)."""
    lines = []
    for line in re.sub(r"\\\n\s*", " ", script).splitlines():
        m = re.search(r"(?:^\s*|\$\(|[|;&]\s*|\S/)ganprint\s+(.*)", line)  # in command position
        if m and not line.lstrip().startswith("#"):
            words = shlex.split(re.split(r"\s[|&;]|\s#", m.group(1))[0], posix=True)
            lines.append(words)
    return lines


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_the_commands_of_skipped_blocks_give_every_required_option(doc):
    """A skipped block is not run, so its commands are at least checked against the CLI: each names a command
    and gives its required options (what `metrics fid` without `--resolution` missed)."""
    problems = _skipped_block_problems(doc)
    assert not problems, "\n".join(problems)


def test_the_check_of_skipped_blocks_catches_a_missing_required_option(tmp_path):
    page = _write(tmp_path, """\
        <!-- docs-test: skip (needs the Inception weights) -->
        ```bash
        ganprint metrics fid real/ fake/ --inception w.pth
        createuser ganprint && ganprint registry migrate reg.sqlite
        ```
        """)
    assert _skipped_block_problems(page) == ["page.md block 1 (line 2, bash): `ganprint fid` without --resolution"]


def _skipped_block_problems(doc: Path) -> list[str]:
    import click

    from ganprint.cli import main

    problems = []
    for block in extract(doc):
        if block.skip is None or block.language not in ("bash", "sh", "console"):
            continue
        for words in _command_lines(block.script()):
            cmd: click.Command = main
            for w in words:
                if not isinstance(cmd, click.Group) or w not in cmd.commands:
                    break
                cmd = cmd.commands[w]
            if cmd is main:
                problems.append(f"{block.where()}: `ganprint {' '.join(words[:2])}` names no command")
                continue
            given = {w.split("=")[0] for w in words}
            for p in cmd.params:
                if isinstance(p, click.Option) and p.required and not given & set(p.opts) and not p.envvar:
                    problems.append(f"{block.where()}: `ganprint {cmd.name}` without {p.opts[0]}")
    return problems
