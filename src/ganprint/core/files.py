"""Files: atomic writes, crash-safe JSONL records, and the checks that an output path can be written."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ganprint.core.errors import GanprintError

_UMASK = os.umask(0)  # read once at import (os.umask can only be read by setting it)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path` (atomic on POSIX).

    Readers never see a half-written file, and a crash leaves the old file (if any) intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    except OSError as e:  # name the file the user asked for, not our temporary one
        raise type(e)(e.errno, e.strerror, str(path)) from None
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # After the write: mkstemp's 0600, or a writer that re-creates the file, must not decide the mode.
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except OSError as e:  # a failed write (a full disk) names the file asked for, not our temporary or nothing
        raise named_os_error(e, path, tmp) from None
    finally:
        if tmp.exists():
            tmp.unlink()


def named_os_error(e: OSError, path: str | os.PathLike, *aliases: str | os.PathLike) -> OSError:
    """`e` naming `path` when it names no file or one of `aliases` (a temporary of `path`); else `e` itself.

    Writes report a full disk from write() or close(), whose OSError carries no file name: the CLI can then still
    say which file could not be written.
    """
    if e.errno is None or (e.filename is not None and os.fspath(e.filename) not in {os.fspath(a) for a in aliases}):
        return e
    return type(e)(e.errno, e.strerror, os.fspath(path))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically, cheaply enough for thousands of small files.

    The temporary name is unique per process and thread (no mkstemp, whose 0600 mode would also leak onto the
    result); the file gets the usual 0666 & ~umask. The parent folder is created only when missing.
    """
    target = os.fspath(path)  # string operations: this runs once per image
    head, name = os.path.split(target)
    tmp = os.path.join(head, f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = _open_temporary(tmp, head, flags)
    except OSError as e:  # name the file the user asked for, not our temporary one
        raise type(e)(e.errno, e.strerror, target) from None
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise named_os_error(e, target, tmp) from None
        raise
    return Path(target)


def _open_temporary(tmp: str, head: str, flags: int) -> int:
    try:
        return os.open(tmp, flags, 0o666)
    except FileNotFoundError:
        os.makedirs(head or ".", exist_ok=True)
        return os.open(tmp, flags, 0o666)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write a JSON file atomically (indented, UTF-8)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def append_jsonl(path: str | os.PathLike, rows: list[dict] | dict) -> None:
    """Append JSON objects as lines, all of them in ONE write on an O_APPEND descriptor.

    A kill or a full disk can leave at most one torn line at the end, never a row half-mixed with another; a torn
    tail left by an earlier crash is cut off first, so the new rows start on a line of their own.
    """
    if isinstance(rows, dict):
        rows = [rows]
    data = "".join(json.dumps(row) + "\n" for row in rows).encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        _cut_torn_tail(fd)
        view = memoryview(data)
        while view:  # one call unless the disk fills up mid-way (then the next call raises)
            view = view[os.write(fd, view):]
    except OSError as e:
        raise named_os_error(e, path) from None
    finally:
        os.close(fd)


def _cut_torn_tail(fd: int) -> None:
    """Truncate an open JSONL file after its last newline when its last line is unfinished."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    start = max(0, size - (1 << 16))
    while True:  # read backwards in blocks until a newline (or the file's start) is found
        block = os.pread(fd, size - start, start)
        cut = block.rfind(b"\n")
        if cut >= 0 or start == 0:
            os.ftruncate(fd, start + cut + 1 if cut >= 0 else 0)
            return
        start = max(0, start - (1 << 16))


def read_jsonl(path: str | os.PathLike, valid: Callable[[Any], bool] | None = None) -> list[dict]:
    """Read a JSONL file; lines that are not JSON (a torn line left by a crash) or that `valid` rejects are skipped,
    and reading goes on after them."""
    rows = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if valid is None or valid(row):
                rows.append(row)
    return rows


def _nearest_existing(path: Path) -> Path:
    p = path
    while not os.path.lexists(p) and p != p.parent:
        p = p.parent
    return p


def check_writable_dir(path: str | os.PathLike, flag: str) -> Path:
    """Make sure the folder `path` (given by `flag`) exists or can be created, and that files can be written in it.

    Commands call this before any work, so that a bad output path fails at once with one line naming the flag and
    the path. Creates the folder (as the command would); raises GanprintError otherwise.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise GanprintError(f"{flag} {path} is a file, not a folder; pass a folder path")
    base = _nearest_existing(path.absolute())
    if base != path.absolute() and not base.is_dir():
        raise GanprintError(f"{flag} {path} cannot be created: {base} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".ganprint-write-check-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise GanprintError(f"{flag} {path} is not writable ({e.strerror or e}); choose another {flag} "
                            "or fix its permissions") from None
    return path


def check_writable_file(path: str | os.PathLike, flag: str) -> Path:
    """Make sure the file `path` (given by `flag`) can be written (atomically, beside it): it is not a folder, and its
    folder exists or can be created and is writable. Raises GanprintError naming the flag and the path."""
    path = Path(path)
    if path.is_dir():
        raise GanprintError(f"{flag} {path} is a folder; pass a file path")
    if os.path.lexists(path) and not os.access(path, os.W_OK):
        raise GanprintError(f"{flag} {path} exists and is read-only; choose another {flag} or fix its permissions")
    base = _nearest_existing(path.absolute().parent)
    if not base.is_dir():
        raise GanprintError(f"{flag} {path} cannot be created: {base} is a file, not a folder")
    try:
        check_writable_dir(path.absolute().parent, flag)
    except GanprintError:
        raise GanprintError(f"{flag} {path} cannot be written: its folder {path.parent} cannot be created or is "
                            f"read-only; choose another {flag} or fix the permissions") from None
    return path


def output_error(path: str | os.PathLike, e: OSError) -> GanprintError:
    """A one-line user error for an OSError while writing `path` (a full disk, a read-only or vanished folder)."""
    reason = e.strerror or str(e)
    hint = " (disk full: free some space)" if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    return GanprintError(f"cannot write {path}: {reason}{hint}; finished work is kept, re-run the same command "
                         "to go on")


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, streamed (memory does not grow with the file)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


