"""Crash-test helpers: run a ganprint command as a subprocess, SIGKILL it (its pid, or its whole process group) at a
random point after it kept a new training state, and compare what two runs exported."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from ganprint.core.artifacts import latest_training_state

SRC = str(Path(__file__).resolve().parents[1] / "src")
ENV = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}


def _state_step(outdir: Path) -> int:
    path = latest_training_state(outdir)
    return -1 if path is None else int(path.stem.rsplit("-", 1)[1])


def run_to_end(argv: list[str], timeout: float = 240) -> None:
    """Run `ganprint argv` to its end; it must succeed."""
    r = subprocess.run([sys.executable, "-m", "ganprint", *argv], capture_output=True, text=True, env=ENV,
                       timeout=timeout, check=False)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]


def start_run(argv: list[str], log: Path) -> subprocess.Popen:
    """Start `ganprint argv` in the background (its stderr to the file `log`): the uninterrupted reference run goes
    beside the runs that are killed, on a core of its own where the machine has one. `finish_run` waits for it."""
    with open(log, "wb") as err:
        return subprocess.Popen([sys.executable, "-m", "ganprint", *argv], env=ENV, stdout=subprocess.DEVNULL,
                                stderr=err)


def finish_run(proc: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    """Wait for a `start_run`; it must succeed."""
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text(errors="replace")
    assert proc.returncode == 0 and "Traceback" not in text, text[-3000:]


def run_and_kill(argv: list[str], outdir: Path, target: str, rng: random.Random, timeout: float = 240) -> int:
    """Start `ganprint argv` in its own session; once it keeps a training state newer than the one it started
    from, wait a random 0-0.3 s and SIGKILL its pid (`target` "pid") or its process group ("group").

    Returns the step of the newest state left behind. Fails when the run ended before it could be killed, or when
    a process of its group outlives a group kill.
    """
    before = _state_step(outdir)
    proc = subprocess.Popen([sys.executable, "-m", "ganprint", *argv], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + timeout
    while _state_step(outdir) <= before and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(rng.uniform(0, 0.3))
    if target == "group":
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    if target == "group":
        time.sleep(0.1)
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            pass
        else:
            raise AssertionError(f"a process of group {proc.pid} outlived SIGKILL")
    return _state_step(outdir)


def assert_same_tensors(a: Path, b: Path) -> None:
    """Two safetensors exports hold the same tensors, bit for bit (their metadata carries a creation time)."""
    ta, tb = load_file(str(a)), load_file(str(b))
    assert ta.keys() == tb.keys(), a
    for k in ta:
        assert ta[k].dtype == tb[k].dtype and torch.equal(ta[k], tb[k]), f"{a.name}: {k} differs"


def assert_same_files(a: Path, b: Path, pattern: str) -> None:
    """The files matching `pattern` under two folders are the same names with the same bytes."""
    fa = sorted(p.relative_to(a) for p in a.glob(pattern))
    assert fa and fa == sorted(p.relative_to(b) for p in b.glob(pattern)), pattern
    for rel in fa:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
