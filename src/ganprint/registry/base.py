"""The store under every registry operation: its back-end, its schema, and reading rows through checks.

`Store` opens a registry URL, migrates its schema on the first write and gives the operations (`fingerprints`,
`datasets`, `tokens`, which `store.Registry` combines) connections to read and to write. Every row read is checked
against the schema's types, so a hand-edited or damaged registry is one RegistryError naming it, never a wrong answer
or a traceback.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import re
import secrets
from typing import Iterator

from ganprint.registry.backends import open_backend
from ganprint.registry.backends.connection import Connection
from ganprint.registry.errors import RegistryError
from ganprint.registry.schema import MIGRATIONS, SCHEMA_VERSION, length_name

log = logging.getLogger(__name__)

_REGISTRY_ID = re.compile(r"[0-9a-f]{16}")


def timestamp() -> str:
    """The time of a row, ISO 8601 UTC to the second."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class Store:
    """A registry at `url` (a SQLite path / sqlite:/// URL, or postgresql://...).

    `create=False` opens an existing registry for reading without changing anything (no schema creation, no
    migration, no files beside a SQLite file); the first write migrates the schema to the current version.
    """

    def __init__(self, url: str | os.PathLike, create: bool = True):
        self.url = os.fspath(url)
        self._db = open_backend(url)
        self.path = self._db.path
        self._ready = False
        if not self._db.exists() and not create:
            raise RegistryError(f"registry {self._db.where} does not exist; issue a model first with "
                                f"`ganprint issue`")
        self.migrated = (SCHEMA_VERSION, SCHEMA_VERSION)
        if create:
            self.migrated = self.migrate()
        else:
            version = self.schema_version()
            if version == 0:
                raise RegistryError(f"{self._db.where} is not a ganprint registry (no schema); create it with "
                                    f"`ganprint registry migrate {self.url}`")
            self._check_version(version)

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise RegistryError(f"registry {self._db.where} has schema {version}; this ganprint reads "
                                f"<= {SCHEMA_VERSION}: upgrade ganprint")

    def __repr__(self) -> str:
        return f"Registry({self._db.where!r})"

    @property
    def where(self) -> str:
        """The registry's location without credentials, for messages."""
        return self._db.where

    def require_local(self) -> None:
        """Refuse a SQLite registry on a network file system (`backends.sqlite`); nothing for PostgreSQL."""
        self._db.require_local()

    def owns(self, path: str | os.PathLike) -> bool:
        """Whether `path` is one of the registry's own database files, which nothing but SQLite may open."""
        return self._db.owns(path)

    # --- schema ------------------------------------------------------------------------------------------

    def schema_version(self) -> int:
        """The schema version stored in the registry (0 for an empty database)."""
        with self._db.connect(write=False) as con:
            return self._version(con)

    def migrate(self) -> tuple[int, int]:
        """Bring the schema to SCHEMA_VERSION and give the registry its id, in one locked transaction (skipped when
        a read shows both done); returns (version before, after)."""
        if self._db.exists():
            with self._read() as con:
                before = self._version(con)
                done = before == SCHEMA_VERSION and self._meta(con, "registry_id") is not None
            if done:
                self._ready = True
                return before, before
        with self._db.connect(write=True) as con:
            self._db.init_schema(con)
            with con.locked():  # the issue lock also serialises concurrent migrations
                before = self._version(con)
                self._check_version(before)
                _run_migrations(con, before)
        if before < SCHEMA_VERSION:
            log.info("registry %s: schema %d -> %d", self._db.where, before, SCHEMA_VERSION)
        self._ready = True
        return before, SCHEMA_VERSION

    def identity(self, create: bool = True) -> str | None:
        """The registry's random id (16 hex digits, kept in its meta table from its first write), which issued
        file names carry so that two registries never name a file alike; None for a registry never written and
        `create=False`."""
        with self._read() as con:
            rid = self._meta(con, "registry_id") if self._version(con) else None
        if rid is None and create:
            self.migrate()
            with self._read() as con:
                rid = self._meta(con, "registry_id")
        if rid is not None and not _REGISTRY_ID.fullmatch(rid):
            raise self._damaged(f"meta.registry_id is {rid!r:.60}, not 16 hex digits")
        return rid

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        if not self._ready:
            self.migrate()
        with self._db.connect(write=True) as con:
            yield con

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._db.connect(write=False) as con:
            yield con

    def _has(self, con: Connection, table: str) -> bool:
        return self._db.table_exists(con, table)

    # --- checked reading ---------------------------------------------------------------------------------

    def _damaged(self, what: str) -> RegistryError:
        return RegistryError(f"registry {self._db.where}: {what}; the registry was edited or damaged: restore it from "
                             "a backup or a `ganprint registry export`")

    def _version(self, con: Connection) -> int:
        if not self._db.table_exists(con, "meta"):
            return 0
        row = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            return 0
        if not (isinstance(row[0], str) and re.fullmatch(r"[0-9]{1,9}", row[0]) and int(row[0]) >= 1):
            raise self._damaged(f"meta.schema_version is {row[0]!r:.60}, not a version number")
        return int(row[0])

    def _meta(self, con: Connection, key: str) -> str | None:
        row = con.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        if row is not None and not isinstance(row[0], str):
            raise self._damaged(f"meta.{key} is {row[0]!r:.60}, not text")
        return None if row is None else row[0]

    def _length(self, con: Connection, version: int) -> int | None:
        """The fingerprint length of the registry's model fingerprints (meta), None while it has none."""
        key = length_name(version)
        value = self._meta(con, key)
        if value is not None and not (re.fullmatch(r"[0-9]{1,6}", value) and int(value) >= 1):
            raise self._damaged(f"meta.{key} is {value!r:.60}, not a number of bits")
        return None if value is None else int(value)

    def _checked(self, table: str, fields: tuple[str, ...], types: tuple, row: tuple) -> tuple:
        """`row` of `table` when each value has its column's type."""
        for name, want, value in zip(fields, types, row):
            if type(value) not in want:
                kinds = " or ".join("NULL" if t is type(None) else t.__name__ for t in want)
                raise self._damaged(f"{table} row {row[0]!r:.30}: column {name} holds {value!r:.60}, not {kinds}")
        return row


def _run_migrations(con: Connection, before: int) -> None:
    """The migrations from schema `before` to SCHEMA_VERSION, inside the caller's locked transaction."""
    if before == 0:
        con.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    for version in range(before, SCHEMA_VERSION):
        for stmt in MIGRATIONS[version][1 if con.postgres else 0]:
            con.execute(stmt)
    if before == 0:
        con.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    elif before < SCHEMA_VERSION:
        con.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))
    con.execute("INSERT INTO meta (key, value) VALUES ('registry_id', ?) ON CONFLICT (key) DO NOTHING",
                (secrets.token_hex(8),))

