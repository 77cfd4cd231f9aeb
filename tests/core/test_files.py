"""ganprint.core.files: crash-safe JSONL records and the checks that an output path can be written."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from ganprint.core.artifacts import save_export, save_training_state
from ganprint.core.errors import GanprintError
from ganprint.core.files import (
    append_jsonl,
    atomic_write_bytes,
    atomic_write_json,
    check_writable_dir,
    check_writable_file,
    read_jsonl,
)


def test_append_writes_whole_lines_and_cuts_a_torn_tail(tmp_path):
    p = tmp_path / "r.jsonl"
    append_jsonl(p, [{"i": 0}, {"i": 1}])
    append_jsonl(p, {"i": 2})
    with open(p, "ab") as f:
        f.write(b'{"i": 3, "na')  # what a kill in the middle of a write leaves
    assert [r["i"] for r in read_jsonl(p)] == [0, 1, 2]
    append_jsonl(p, [{"i": 4}])  # the torn line is cut first, so the new row stays readable
    assert p.read_bytes().endswith(b'{"i": 2}\n{"i": 4}\n')
    assert [r["i"] for r in read_jsonl(p)] == [0, 1, 2, 4]
    big = tmp_path / "big.jsonl"
    big.write_bytes(b"x" * 200_000)  # no newline at all: everything is torn
    append_jsonl(big, {"i": 5})
    assert big.read_bytes() == b'{"i": 5}\n'


def test_read_goes_on_after_a_bad_line_and_validates(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text('{"i": 0}\n{"i": 1, "x\n[1, 2]\n{"i": "two"}\n{"i": 3}\n')
    assert [r for r in read_jsonl(p)] == [{"i": 0}, [1, 2], {"i": "two"}, {"i": 3}]
    def valid(r) -> bool:
        return isinstance(r, dict) and isinstance(r.get("i"), int)

    assert [r["i"] for r in read_jsonl(p, valid)] == [0, 3]


def test_check_writable_dir(tmp_path):
    made = check_writable_dir(tmp_path / "a" / "b", "outdir")
    assert made.is_dir() and list(made.iterdir()) == []  # created, no probe left behind
    (tmp_path / "f").write_text("x")
    with pytest.raises(GanprintError, match=r"`outdir` .*f is a file"):
        check_writable_dir(tmp_path / "f", "outdir")
    with pytest.raises(GanprintError, match=r"`out` .*f/sub cannot be created: .*f is a file"):
        check_writable_dir(tmp_path / "f" / "sub", "out")
    with pytest.raises(GanprintError, match=r"`outdir` /proc/ganprint-test"):
        check_writable_dir("/proc/ganprint-test", "outdir")  # a file system that takes no new folders


def test_check_writable_file(tmp_path):
    assert check_writable_file(tmp_path / "new" / "m.safetensors", "out").parent.is_dir()
    with pytest.raises(GanprintError, match="`out` .* is a folder"):
        check_writable_file(tmp_path, "out")
    (tmp_path / "f").write_text("x")
    with pytest.raises(GanprintError, match="`registry` .*f/r.db cannot be created"):
        check_writable_file(tmp_path / "f" / "r.db", "registry")


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() == 0, reason="root may write into read-only folders")
def test_read_only_folder_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(GanprintError, match=r"`outdir` .*ro/sub is not writable"):
            check_writable_dir(ro / "sub", "outdir")
        with pytest.raises(GanprintError, match=r"`outdir` .*ro is not writable"):
            check_writable_dir(ro, "outdir")
    finally:
        ro.chmod(0o755)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_outputs_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        import ganprint.core.files as files

        expected = 0o666 & ~files._UMASK
        paths = [
            save_export(tmp_path / "m.safetensors", torch.nn.Linear(2, 2), "stega", {}),
            save_training_state(tmp_path / "run", 1, {"step": 1}),
            atomic_write_bytes(tmp_path / "b.png", b"x"),
        ]
        atomic_write_json(tmp_path / "c.json", {"a": 1})
        paths.append(tmp_path / "c.json")
        for p in paths:
            assert _mode(p) == expected, (p, oct(_mode(p)))
            assert _mode(p) & stat.S_IRGRP  # a colleague can read a shared model
    finally:
        os.umask(old)
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize("write", [lambda p: atomic_write_json(p, {"a": 1}), lambda p: atomic_write_bytes(p, b"x")],
                         ids=["atomic_path", "atomic_write_bytes"])
def test_a_failed_write_names_the_target_not_the_temporary_file(write):
    # /sys/kernel exists and refuses new files, even to root (a chmod-ed folder would not stop root).
    target = "/sys/kernel/ganprint-output.json"
    with pytest.raises(OSError) as info:
        write(target)
    assert info.value.filename == target
    assert ".tmp" not in str(info.value)


def test_read_input_accepts_only_a_bounded_regular_file(tmp_path):
    from ganprint.core.files import read_input_bytes, read_input_json, read_input_text

    good = tmp_path / "list.txt"
    good.write_text("a 0101\n")
    os.symlink(good, tmp_path / "link.txt")
    assert read_input_bytes(tmp_path / "link.txt", "--embedded", 100) == b"a 0101\n"  # a link to a file is one
    os.mkfifo(tmp_path / "fifo")
    os.symlink("/dev/zero", tmp_path / "zero")
    cases = [(tmp_path / "fifo", "is not a regular file but a named pipe"),
             (tmp_path / "zero", "is not a regular file but a character device"),
             (tmp_path, "is not a regular file but a folder"), (tmp_path / "absent", "does not exist"),
             (good, "is 7 bytes, more than the 6 bytes")]
    for path, words in cases:
        with pytest.raises(GanprintError, match=f"`embedded` {path} {words}"):
            read_input_bytes(path, "`embedded`", 6)
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9")
    with pytest.raises(GanprintError, match="is not UTF-8 text"):
        read_input_text(tmp_path / "latin1.txt", "`embedded`", 100)
    with pytest.raises(GanprintError, match="config .* is not valid JSON"):
        read_input_json(good, "config")


def test_write_new_file_and_rename_no_replace_never_replace(tmp_path):
    from ganprint.core.files import rename_no_replace, write_new_file

    write_new_file(tmp_path / "a", b"new")
    with pytest.raises(FileExistsError):
        write_new_file(tmp_path / "a", b"other")
    (tmp_path / "b").write_bytes(b"someone else's")
    with pytest.raises(FileExistsError):
        rename_no_replace(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "a").read_bytes() == b"new" and (tmp_path / "b").read_bytes() == b"someone else's"
    rename_no_replace(tmp_path / "a", tmp_path / "c")
    assert not (tmp_path / "a").exists() and (tmp_path / "c").read_bytes() == b"new"
