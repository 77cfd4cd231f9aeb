"""Progress bars: tqdm.auto on stderr where someone watches, forced by GANPRINT_PROGRESS, off with --quiet; never
in stdout, so a command's JSON stays parseable."""

import json
import os
import subprocess
import sys

import pytest

from ganprint.core import progress
from tests.training.test_trainers import COMMANDS, _write_images


def test_who_decides_whether_a_bar_shows(monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)
    monkeypatch.setattr(progress, "_watched", lambda: False)  # as under pytest, whose stderr is captured
    assert not progress.progress_shown() and progress.progress_shown(True)
    monkeypatch.setenv(progress.ENV, "1")
    assert progress.progress_shown() and not progress.progress_shown(False)  # the caller's word wins
    monkeypatch.setenv(progress.ENV, "0")
    assert not progress.progress_shown()
    monkeypatch.setattr(progress, "_watched", lambda: True)  # a terminal or a notebook
    monkeypatch.delenv(progress.ENV)
    assert progress.progress_shown()
    progress.set_default(False)  # the CLI's --quiet, which wins over the environment
    monkeypatch.setenv(progress.ENV, "1")
    try:
        assert not progress.progress_shown()
    finally:
        progress.set_default(None)
    with progress.progress_bar(3, "x", progress=False) as bar:
        bar.update(3)  # a disabled bar takes the same calls
        assert bar.disable


@pytest.mark.parametrize("quiet", [False, True])
def test_a_forced_bar_goes_to_stderr_and_stdout_stays_json(tmp_path, quiet):
    data = _write_images(tmp_path / "data")
    out = tmp_path / "run"
    args = [*(["-q"] if quiet else []), *COMMANDS["train-scalable"], "--data", str(data), "--outdir", str(out)]
    env = {**os.environ, progress.ENV: "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    r = subprocess.run([sys.executable, "-m", "ganprint", *args], capture_output=True, text=True, env=env,
                       timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout)["kimg"] == pytest.approx(0.004, abs=1e-3)  # the whole of stdout is the JSON line
    tick = "s/kimg"  # the status line of a tick
    if quiet:  # warnings and errors only, in the log file too
        assert "train-scalable:" not in r.stderr and tick not in r.stderr
    else:
        assert "train-scalable: 100%" in r.stderr and "bit_acc=" in r.stderr  # the bar, with the tick's figures
        assert tick not in r.stderr  # the bar replaces the tick lines on the console
        assert tick in (out / "log.txt").read_text()  # and the run's log keeps them
