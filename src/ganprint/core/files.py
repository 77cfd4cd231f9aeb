"""Files: atomic writes, crash-safe JSONL records, and the checks that an output path can be written."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ganprint.core.errors import GanprintError, field

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
    for line in read_input_text(path, "JSONL file", MAX_LIST_BYTES, errors="replace").split("\n"):
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


def check_writable_dir(path: str | os.PathLike, name: str) -> Path:
    """Make sure the folder `path` (the parameter `name`, see `errors.field`) exists or can be created, and that
    files can be written in it.

    Commands call this before any work, so that a bad output path fails at once with one line naming the parameter
    and the path. Creates the folder (as the command would); raises GanprintError otherwise.
    """
    path, label = Path(path), field(name)
    if path.exists() and not path.is_dir():
        raise GanprintError(f"{label} {path} is a file, not a folder; pass a folder path")
    base = _nearest_existing(path.absolute())
    if base != path.absolute() and not base.is_dir():
        raise GanprintError(f"{label} {path} cannot be created: {base} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".ganprint-write-check-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise GanprintError(f"{label} {path} is not writable ({e.strerror or e}); choose another {label} "
                            "or fix its permissions") from None
    return path


def check_writable_file(path: str | os.PathLike, name: str) -> Path:
    """Make sure the file `path` (the parameter `name`) can be written (atomically, beside it): it is not a folder,
    and its folder exists or can be created and is writable. Raises GanprintError naming the parameter and the path."""
    path, label = Path(path), field(name)
    if path.is_dir():
        raise GanprintError(f"{label} {path} is a folder; pass a file path")
    if os.path.lexists(path) and not os.access(path, os.W_OK):
        raise GanprintError(f"{label} {path} exists and is read-only; choose another {label} or fix its permissions")
    base = _nearest_existing(path.absolute().parent)
    if not base.is_dir():
        raise GanprintError(f"{label} {path} cannot be created: {base} is a file, not a folder")
    try:
        check_writable_dir(path.absolute().parent, name)
    except GanprintError:
        raise GanprintError(f"{label} {path} cannot be written: its folder {path.parent} cannot be created or is "
                            f"read-only; choose another {label} or fix the permissions") from None
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




# --- non-image inputs: a regular file of bounded size -------------------------------------------------------------

MAX_CONFIG_BYTES = 16 << 20  # config.json, manifests, sources.json: small by construction
MAX_LIST_BYTES = 1 << 30  # registry exports, fingerprint lists, JSONL logs: about a million rows or more


def _kind_of(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "named pipe"), (stat.S_ISCHR, "character device"),
             (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"))
    return next((name for test, name in kinds if test(mode)), "special file")


def _input_error(what: str, path: str | os.PathLike, problem: str) -> GanprintError:
    return GanprintError(f"{what} {os.fspath(path)} {problem}")


def read_input_bytes(path: str | os.PathLike, what: str, max_bytes: int) -> bytes:
    """The bytes of the input file `path` that `what` (a description, or a field name in backticks) names: only a
    regular file, or a link to one, of at most `max_bytes`; GanprintError naming `what` and the path otherwise.

    The size is checked from stat before anything is read and at most max_bytes + 1 bytes are read (a file that
    grows meanwhile is refused too); the file is opened without blocking and checked again by its descriptor, so a
    FIFO never hangs the reader and a device (/dev/zero) is never read.
    """
    try:
        st = os.stat(path)  # follows links: a link to a regular file is one
    except FileNotFoundError:
        raise _input_error(what, path, "does not exist") from None
    except OSError as e:
        raise _input_error(what, path, f"cannot be read: {e.strerror or e}") from None
    _check_input_stat(st, what, path, max_bytes)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise _input_error(what, path, f"cannot be read: {e.strerror or e}") from None
    try:
        _check_input_stat(os.fstat(fd), what, path, max_bytes)  # the file opened is the file checked
        chunks, n = [], 0
        while n <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - n))
            if not chunk:
                break
            chunks.append(chunk)
            n += len(chunk)
    except OSError as e:
        raise _input_error(what, path, f"cannot be read: {e.strerror or e}") from None
    finally:
        os.close(fd)
    if n > max_bytes:
        raise _input_error(what, path, f"grew past {max_bytes} bytes while it was read; give a finished file")
    return b"".join(chunks)


def _check_input_stat(st: os.stat_result, what: str, path: str | os.PathLike, max_bytes: int) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise _input_error(what, path, f"is not a regular file but a {_kind_of(st.st_mode)}; give a file")
    if st.st_size > max_bytes:
        raise _input_error(what, path, f"is {st.st_size} bytes, more than the {max_bytes} bytes ganprint reads "
                                       "from such a file; is it the right file?")


def read_input_text(path: str | os.PathLike, what: str, max_bytes: int, errors: str = "strict") -> str:
    """`read_input_bytes` decoded as UTF-8; GanprintError naming `what` and the path when it is not UTF-8 text."""
    data = read_input_bytes(path, what, max_bytes)
    try:
        return data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as e:
        raise _input_error(what, path, f"is not UTF-8 text (byte {e.start}); give a text file") from None


def read_input_json(path: str | os.PathLike, what: str, max_bytes: int = MAX_CONFIG_BYTES) -> Any:
    """`read_input_text` parsed as JSON; GanprintError naming `what` and the path when it is not JSON."""
    text = read_input_text(path, what, max_bytes)
    try:
        return json.loads(text)
    except ValueError as e:  # RecursionError is not one: JSON nested deeper than the interpreter allows
        raise _input_error(what, path, f"is not valid JSON ({e})") from None
    except RecursionError:
        raise _input_error(what, path, "is JSON nested too deeply to read") from None


# --- files that must never replace another: issued models ---------------------------------------------------------


def write_new_file(path: str | os.PathLike, data: bytes) -> None:
    """Create `path` with `data` and flush it to disk; FileExistsError if anything is there already (O_EXCL).

    A partial file is removed when the write fails (a full disk); the caller decides what a kill leaves behind.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o666)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(path)
        if e.filename is None:  # os.write names no file: a full disk must still name the one it stopped
            raise type(e)(e.errno, e.strerror, os.fspath(path)) from None
        raise
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


def rename_no_replace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Rename `src` to `dst` unless `dst` exists (FileExistsError then; src is kept); never replaces a file.

    A hard link then an unlink: a kill between them leaves both names for the same file. File systems without hard
    links get `dst` created exclusively first (so it was ours) and `src` renamed onto it.
    """
    try:
        os.link(src, dst)
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS):
            raise
        os.close(os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666))
        os.replace(src, dst)
    else:
        os.unlink(src)
    fsync_dir(os.path.dirname(os.fspath(dst)) or ".")


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a folder's entries (a new or renamed file's name) to disk, where the platform allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# Temporaries of this module: .<name>.<pid>.<thread id>.tmp (atomic_write_bytes), .<name>.<pid>.<random>.tmp
_STALE_TMP = re.compile(r"^\..+\.(\d+)\.[^./]+\.tmp$", re.DOTALL)


def pid_alive(pid: int) -> bool:
    """Whether a process `pid` exists (one of another user, or a number no pid can be, counts: leave its files)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process, or a number no pid can be: leave the file alone
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> int:
    """Delete the temporary files that killed writers left under `folder` (those whose process is gone)."""
    removed = 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            m = _STALE_TMP.match(name)
            if m and not pid_alive(int(m.group(1))):
                try:
                    os.unlink(os.path.join(dirpath, name))
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed
