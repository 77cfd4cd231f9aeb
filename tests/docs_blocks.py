"""The code blocks of README.md and docs/*.md, and how the docs test runs them.

A fenced block whose language is bash, sh, console or python runs; any other language (text, json, ...) is shown
only. A block that cannot run on a CPU test machine is marked on the line just before its fence with
`<!-- docs-test: skip (why) -->`; the reason is required, so that a reader sees why it is not checked. In a console
block only the lines after a `$ ` prompt (and their backslash continuations) run; the rest is output.

Each file's blocks run in order in one fresh working directory: a block sees the files the earlier ones wrote, and
the servers they left running, not their shell variables. Shell blocks run under `bash -euo pipefail`, Python
blocks under the interpreter running the tests. Where unprivileged namespaces are available each file gets its own
network namespace (loopback only), so a server on port 8000 collides with nothing and nothing reaches the network;
whatever the blocks started in the background is stopped after the file's last block.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

RUN_LANGUAGES = {"bash": "shell", "sh": "shell", "console": "shell", "python": "python"}
_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)\s*.*$")
_MARK = re.compile(r"^\s*<!--\s*docs-test:\s*(.*?)\s*-->\s*$")
_SKIP = re.compile(r"^skip\s*\((.+)\)$")


class DocsError(ValueError):
    """A docs file the test cannot read as intended: an unclosed fence, an unlabeled one, a malformed mark."""


@dataclasses.dataclass(frozen=True)
class Block:
    """One fenced block: its file, 1-based number among the file's blocks, the line of its fence, its language,
    its text and, for a block marked skip, the reason."""

    path: Path
    number: int
    line: int
    language: str
    text: str
    skip: str | None = None

    @property
    def runs(self) -> bool:
        return self.language in RUN_LANGUAGES and self.skip is None

    def script(self) -> str:
        """What runs: the block's text, or for a console block its prompted commands."""
        if self.language != "console":
            return self.text
        out, continued = [], False
        for line in self.text.splitlines():
            if continued or line.startswith("$ "):
                out.append(line if continued else line[2:])
                continued = line.endswith("\\")
        return "\n".join(out) + "\n"

    def where(self) -> str:
        return f"{self.path.name} block {self.number} (line {self.line}, {self.language})"


def extract(path: Path) -> list[Block]:
    """Every fenced block of the markdown file `path`, in order, with its skip mark."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    mark: tuple[int, str] | None = None
    i = 0
    while i < len(lines):
        m = _MARK.match(lines[i])
        if m:
            mark = (i + 1, _reason(path, i + 1, m.group(1)))
            i += 1
            continue
        fence = _FENCE.match(lines[i])
        if not fence:
            if lines[i].strip() and mark is not None:
                raise DocsError(f"{path.name}:{mark[0]}: a docs-test mark must be the line just before a block")
            i += 1
            continue
        indent, ticks, language = fence.groups()
        if not language:
            raise DocsError(f"{path.name}:{i + 1}: a fence without a language; write ```text for a block that "
                            f"is not to run, ```bash or ```python for one that is")
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == ticks), None)
        if end is None:
            raise DocsError(f"{path.name}:{i + 1}: the block opened here is never closed")
        body = "\n".join(line[len(indent):] if line.startswith(indent) else line for line in lines[i + 1:end])
        blocks.append(Block(Path(path), len(blocks) + 1, i + 1, language.lower(), body + "\n",
                            None if mark is None else mark[1]))
        mark, i = None, end + 1
    if mark is not None:
        raise DocsError(f"{path.name}:{mark[0]}: a docs-test mark with no block after it")
    return blocks


def _reason(path: Path, line: int, mark: str) -> str:
    m = _SKIP.match(mark)
    if not m or not m.group(1).strip():
        raise DocsError(f"{path.name}:{line}: write the mark as <!-- docs-test: skip (the reason) -->, got {mark!r}")
    return m.group(1).strip()


@dataclasses.dataclass(frozen=True)
class Outcome:
    block: Block
    returncode: int
    seconds: float
    output: str
    cpu_seconds: float = 0.0  # user + system time of the block's processes that ended with it

    def report(self, tail: int = 4000) -> str:
        return (f"{self.block.where()} exited {self.returncode} after {self.seconds:.0f} s; the block:\n"
                f"{self.block.script()}--- last output ---\n{self.output[-tail:]}")


@functools.cache
def network_namespaces() -> bool:
    """Whether `unshare -rn` and `nsenter` work here (unprivileged user and network namespaces) and `ip` can bring
    the new namespace's loopback up; without them the blocks share the machine's network."""
    if not (shutil.which("nsenter") and shutil.which("ip")):
        return False
    try:
        return subprocess.run(["unshare", "-rn", "ip", "link", "set", "lo", "up"], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def environment(workdir: Path) -> dict[str, str]:
    """The environment of a block: the test's, with the interpreter's bin folder first on PATH (`ganprint`,
    `python`), HOME in the working directory and no GANPRINT_* settings leaking in from outside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANPRINT_")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["HOME"] = str(workdir)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class Session:
    """The blocks of one file: one working directory and, where namespaces work, one network namespace of its
    own (loopback only), held by a sleeping process that every block joins. A server one block starts in the
    background serves the later blocks; everything the blocks started is stopped when the session closes."""

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.groups: list[int] = []
        self.holder: subprocess.Popen | None = None
        if network_namespaces():
            # unshare execs its command in the new namespaces, so the holder's pid names them for nsenter
            self.holder = subprocess.Popen(["unshare", "-rn", "bash", "-c", "ip link set lo up; exec sleep infinity"],
                                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL, start_new_session=True)
            time.sleep(0.2)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for pgid in self.groups:
            _stop_group(pgid)
        if self.holder is not None:
            self.holder.kill()
            self.holder.wait()

    def run(self, block: Block, timeout: float = 600) -> Outcome:
        """Run one block; the outcome holds its exit status and combined output."""
        suffix = ".py" if block.language == "python" else ".sh"
        script = self.workdir / f".docs-block-{block.number}{suffix}"
        script.write_text(block.script(), encoding="utf-8")
        if RUN_LANGUAGES[block.language] == "python":
            argv = [sys.executable, str(script)]
        else:
            argv = ["bash", "-euo", "pipefail", str(script)]
        if self.holder is not None:
            argv = ["nsenter", "--user", "--net", "--preserve-credentials", "-t", str(self.holder.pid), *argv]
        log = self.workdir / f".docs-block-{block.number}.log"
        start, cpu = time.monotonic(), _children_cpu()
        # output to a file, not a pipe: a server the block left in the background would hold a pipe open
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, cwd=self.workdir, env=environment(self.workdir), stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            self.groups.append(proc.pid)
            try:
                code, note = proc.wait(timeout=timeout), ""
            except subprocess.TimeoutExpired:
                _stop_group(proc.pid)
                code, note = proc.wait(), f"\n[docs test: stopped after {timeout:.0f} s]\n"
        output = log.read_bytes().decode("utf-8", "replace") + note
        log.unlink()
        script.unlink()
        return Outcome(block, code, time.monotonic() - start, output, _children_cpu() - cpu)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_block(block: Block, workdir: Path, timeout: float = 600) -> Outcome:
    """Run one block alone in `workdir` (a session of its own)."""
    with Session(workdir) as session:
        return session.run(block, timeout)


def _stop_group(pgid: int) -> None:
    """Stop a block's process group, with what it left running in the background (a server started with `&`)."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(50):
        time.sleep(0.1)
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_file(path: Path, workdir: Path, timeout: float = 600) -> tuple[list[Outcome], Outcome | None]:
    """Run the blocks of `path` that run, in order, in one session in `workdir`, all of them within `timeout`
    seconds; stop at the first that fails (the later ones build on it). Returns the outcomes of the blocks run
    and the failing one (None if none)."""
    outcomes = []
    deadline = time.monotonic() + timeout
    with Session(workdir) as session:
        for block in extract(path):
            if not block.runs:
                continue
            outcomes.append(session.run(block, max(deadline - time.monotonic(), 1)))
            if outcomes[-1].returncode != 0:
                return outcomes, outcomes[-1]
    return outcomes, None


if __name__ == "__main__":  # python tests/docs_blocks.py FILE [WORKDIR [FIRST]]: run by hand, timing each block
    import tempfile

    target = Path(sys.argv[1]).resolve()
    work = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tempfile.mkdtemp(prefix="docs-"))
    first = int(sys.argv[3]) if len(sys.argv) > 3 else 1  # go on in WORKDIR from block FIRST, after a fix
    work.mkdir(parents=True, exist_ok=True)
    with Session(work) as by_hand:
        for b in extract(target):
            if b.number < first:
                continue
            if not b.runs:
                print(f"-- {b.where()}: {'skip: ' + b.skip if b.skip else 'not run'}", flush=True)
                continue
            o = by_hand.run(b)
            print(f"-- {b.where()}: exit {o.returncode}, {o.seconds:.1f} s ({o.cpu_seconds:.1f} s of CPU)", flush=True)
            if o.returncode:
                print(o.report())
                sys.exit(1)
    print(f"all passed in {work}")
