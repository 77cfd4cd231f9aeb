"""The CLI's error boundary (`ganprint.cli._Group.invoke`): every expected failure class is one line and exit 1; a bug
keeps its traceback, followed by one line that says it is a bug."""

from __future__ import annotations

import errno

import click
import pytest
import torch
from click.testing import CliRunner
from safetensors import SafetensorError

from ganprint.cli import _Group
from ganprint.core.errors import GanprintError

RAISED = {
    "user": GanprintError("--flag 3 is wrong; give 4"),
    "named": FileNotFoundError(errno.ENOENT, "No such file or directory", "/data/x.png"),
    "full-named": OSError(errno.ENOSPC, "No space left on device", "/out/a.png"),
    "full-unnamed": OSError(errno.ENOSPC, "No space left on device"),
    "too-large": OSError(errno.EFBIG, "File too large"),
    "io": OSError(errno.EIO, "Input/output error"),
    "safetensors": SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"),
    "memory": MemoryError(),
    "gpu-memory": torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    "overflow": OverflowError("cannot convert float infinity to integer"),
}
WORDS = {"user": "--flag 3", "named": "/data/x.png", "full-named": "cannot write /out/a.png", "full-unnamed":
         "disk is full", "too-large": "file-size limit", "io": "input/output error", "safetensors": "safetensors",
         "memory": "out of memory", "gpu-memory": "out of memory", "overflow": "too large"}


def _group(exc: BaseException) -> click.Group:
    @click.group(cls=_Group)
    def g():
        pass

    @g.command("run")
    def run():
        raise exc

    return g


@pytest.mark.parametrize("kind", sorted(RAISED))
def test_expected_failures_are_one_line_and_exit_1(kind):
    res = CliRunner().invoke(_group(RAISED[kind]), ["run"])
    lines = res.stderr.strip().splitlines()
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    assert len(lines) == 1 and lines[0].startswith("Error: ") and WORDS[kind] in lines[0], lines


def test_a_bug_keeps_its_traceback_and_says_it_is_a_bug():
    res = CliRunner().invoke(_group(ValueError("an internal inconsistency")), ["run"])
    assert res.exit_code == 1 and "Traceback (most recent call last)" in res.stderr, res.output
    assert "ValueError: an internal inconsistency" in res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: internal error (ValueError): this is a bug in ganprint"), last


def test_an_unnamed_os_error_of_another_kind_is_a_bug():
    res = CliRunner().invoke(_group(OSError(errno.EBADF, "Bad file descriptor")), ["run"])
    assert res.exit_code == 1 and "Traceback" in res.stderr and "this is a bug" in res.stderr


def test_ctrl_c_is_one_line_and_exit_130():
    res = CliRunner().invoke(_group(KeyboardInterrupt()), ["run"])
    assert res.exit_code == 130 and res.stderr.strip() == "Interrupted. Re-run the same command to resume."
