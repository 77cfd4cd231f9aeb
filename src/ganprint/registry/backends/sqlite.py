"""The SQLite back-end: the embedded default, a file on a local disk of one machine.

The file is only ever opened by SQLite. POSIX record locks, which SQLite takes to serialise writers, belong to the
process and are all released when the process closes *any* descriptor of the file; a plain open() and close() of the
database (to read its header, hash or copy it) in one thread would silently drop the write lock that another thread
holds, and a second process would then write at the same time and corrupt the file. SQLite itself defers such
closes while locks are held, so every read here goes through it
(tests/registry/test_backends.py::test_a_read_in_another_thread_keeps_the_write_lock).

The journal is the rollback journal (journal_mode=DELETE), not WAL: read-only use then opens the file with
`mode=ro`, takes only a shared lock and creates no file beside it (it also works on a read-only file or folder),
where a WAL reader would have to create and write -wal/-shm files. Both modes rely on the same POSIX locks, so both
are safe only for processes of one machine on a local disk; a registry on a network file system (NFS, SMB, 9p,
sshfs ...) is refused for writing and serving (`ganprint.core.mounts`): use PostgreSQL there.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

from ganprint.core.mounts import network_filesystem
from ganprint.registry.backends.connection import Connection
from ganprint.registry.errors import RegistryError

log = logging.getLogger(__name__)

# SQLite's extended result codes (sqlite3.Error.sqlite_errorcode, Python >= 3.11)
_SQLITE_IOERR_LOCK = 3850  # a lock that a read-only descriptor cannot take: a WAL file opened in exclusive mode
_SQLITE_READONLY_ROLLBACK = 776  # a hot journal, which a read-only connection cannot roll back


class SQLite:
    postgres = False

    def __init__(self, path: Path):
        self.path = path
        self.where = str(path)
        self._local_checked = False

    def exists(self) -> bool:
        return self.path.exists()

    def require_local(self) -> None:
        """Refuse a registry on a network file system, where SQLite's locks do not serialise writers."""
        if self._local_checked:
            return
        fstype = network_filesystem(self.path)
        if fstype is not None:
            raise RegistryError(f"registry {self.path} is on a {fstype} file system, shared over the network, where "
                                "SQLite's locks do not keep two writers apart; put it on a local disk, or use a "
                                "PostgreSQL registry (`registry` postgresql://...) to share it between machines")
        self._local_checked = True

    def owns(self, path: str | os.PathLike) -> bool:
        """Whether `path` is the database file or one of its -journal/-wal/-shm files (which only SQLite opens)."""
        for name in (self.path, *(Path(f"{self.path}{s}") for s in ("-journal", "-wal", "-shm"))):
            with contextlib.suppress(OSError):
                if os.path.samefile(path, name):
                    return True
        return False

    @contextlib.contextmanager
    def connect(self, write: bool) -> Iterator[Connection]:
        if self.path.is_dir():
            raise RegistryError(f"registry {self.path} is a directory; give a file path such as registry.sqlite")
        if write:
            self.require_local()
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise RegistryError(f"cannot create the folder of registry {self.path}: {e.strerror}") from None
            raw = self._open(f"file:{quote(str(self.path.resolve()))}")
        else:
            raw = self._open_read()
        try:
            yield Connection(raw, False)
        except sqlite3.DatabaseError as e:
            raise RegistryError(f"{self.path} is not a usable ganprint registry (SQLite said: {e})") from None
        finally:
            raw.close()

    def _open(self, uri: str) -> sqlite3.Connection:
        try:
            # isolation_level=None: BEGIN/COMMIT are ours; the long timeout waits for concurrent issuers.
            raw = sqlite3.connect(uri, uri=True, timeout=120.0, isolation_level=None)
            raw.execute("PRAGMA busy_timeout=120000")
        except sqlite3.DatabaseError as e:
            raise RegistryError(f"cannot open registry {self.path}: {e}") from None
        return raw

    def _open_read(self) -> sqlite3.Connection:
        """A read-only connection that creates no file beside the database (see the module docstring).

        The file's journal mode is learnt from SQLite, never by reading the file: with no -wal file beside it, a
        connection in exclusive locking mode reads a rollback-journal file under one shared lock (held until it
        closes), and fails with SQLITE_IOERR_LOCK, creating nothing, on a file left in WAL mode by an older
        ganprint; such a file has no writer (a WAL writer keeps -wal open), so it is then read as immutable.
        """
        base = f"file:{quote(str(self.path.resolve()))}"
        if os.path.exists(f"{self.path}-wal"):  # a WAL file in use: its -wal and -shm exist already
            return self._open(base + "?mode=ro")
        raw = self._open(base + "?mode=ro")
        try:
            raw.execute("PRAGMA locking_mode=EXCLUSIVE")
            raw.execute("PRAGMA schema_version").fetchone()  # reads the header: the mode, or a hot journal
            return raw
        except sqlite3.DatabaseError as e:
            raw.close()
            code = _sqlite_code(e)
            if code == _SQLITE_IOERR_LOCK:
                fstype = network_filesystem(self.path)
                if fstype is not None:  # there the lock itself may have failed: never read without locks
                    raise RegistryError(f"registry {self.path} cannot be locked on its {fstype} network file system "
                                        f"(SQLite said: {e}); copy it to a local disk, or use PostgreSQL") from None
                return self._open(base + "?immutable=1")
            if code != _SQLITE_READONLY_ROLLBACK:
                raise RegistryError(f"{self.path} is not a usable ganprint registry (SQLite said: {e})") from None
        self._roll_back_hot_journal()
        return self._open(base + "?mode=ro")

    def _roll_back_hot_journal(self) -> None:
        # A writer was killed mid-transaction and left a hot -journal, which only a writable connection rolls back
        # (SQLite does so on its first read); a read-only file cannot be read until a writer has opened it.
        if not (os.access(self.path, os.W_OK) and os.access(self.path.parent, os.W_OK | os.X_OK)):
            raise RegistryError(f"registry {self.path} holds an unfinished transaction of a writer that was killed "
                                f"({self.path.name}-journal), which only a writable registry can roll back; run "
                                f"`ganprint registry migrate {self.path}` where the file is writable")
        raw = self._open(f"file:{quote(str(self.path.resolve()))}")
        try:
            raw.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as e:
            raise RegistryError(f"{self.path} is not a usable ganprint registry (SQLite said: {e})") from None
        finally:
            raw.close()
        log.warning("registry %s: rolled back the unfinished transaction of a killed writer", self.path)

    def init_schema(self, con: Connection) -> None:
        mode = con.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() == "wal":
            with contextlib.suppress(sqlite3.OperationalError):  # needs exclusive use; harmless to retry later
                con.execute("PRAGMA journal_mode=DELETE")

    def table_exists(self, con: Connection, name: str) -> bool:
        return con.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone() is not None


def _sqlite_code(e: sqlite3.Error) -> int | None:
    code = getattr(e, "sqlite_errorcode", None)  # Python >= 3.11
    if code is None:  # older Pythons: the primary code's message
        code = {"disk I/O error": _SQLITE_IOERR_LOCK,
                "attempt to write a readonly database": _SQLITE_READONLY_ROLLBACK}.get(str(e))
    return code
