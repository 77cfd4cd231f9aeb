"""A database connection whose `execute` takes '?' placeholders on both back-ends, and the issue lock."""

from __future__ import annotations

import contextlib
from typing import Any

LOCK_KEY = 0x67616E7072696E74 & 0x7FFFFFFFFFFFFFFF  # "ganprint": the advisory-lock key of issuing on PostgreSQL


class Connection:
    """A DB-API connection in autocommit mode; transactions are explicit BEGIN/COMMIT statements."""

    def __init__(self, raw: Any, postgres: bool):
        self.raw, self.postgres = raw, postgres

    def execute(self, sql: str, params: tuple = ()):
        return self.raw.execute(sql.replace("?", "%s") if self.postgres else sql, params)

    def begin_issue(self) -> None:
        """Start a transaction that holds the registry-wide issue lock until COMMIT/ROLLBACK: `BEGIN IMMEDIATE` on
        SQLite (its single write lock), a transaction-scoped advisory lock on PostgreSQL (released by COMMIT,
        ROLLBACK or a dropped connection)."""
        if self.postgres:
            self.execute("BEGIN")
            self.execute("SELECT pg_advisory_xact_lock(?)", (LOCK_KEY,))
        else:
            self.execute("BEGIN IMMEDIATE")

    def rollback(self) -> None:
        with contextlib.suppress(Exception):  # the connection may already be gone; the database rolls back then
            self.execute("ROLLBACK")

    def commit(self) -> BaseException | None:
        """COMMIT; the exception when the connection failed during it (whether it committed is asked after)."""
        try:
            self.execute("COMMIT")
        except BaseException as e:  # noqa: BLE001 - a lost connection, or an interrupt while COMMIT was under way
            return e
        return None

    @contextlib.contextmanager
    def locked(self):
        """The block inside the issue lock: COMMIT at its end, ROLLBACK when it raises."""
        self.begin_issue()
        try:
            yield self
            self.execute("COMMIT")
        except BaseException:
            self.rollback()
            raise
