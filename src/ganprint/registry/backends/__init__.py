"""The registry's two database back-ends behind one interface, chosen by the URL: SQLite (`sqlite.py`, the
embedded default: a file path or `sqlite:///path`) and PostgreSQL (`postgres.py`, `postgresql://user@host:port/db`,
psycopg 3) for several machines. Each gives connections (`connection.Connection`) with '?' placeholders."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ganprint.registry.backends.postgres import Postgres
from ganprint.registry.backends.sqlite import SQLite
from ganprint.registry.errors import RegistryError


def open_backend(url: str | os.PathLike) -> SQLite | Postgres:
    """The back-end of a registry URL: a file path or sqlite:/// URL, or postgresql:// (postgres://)."""
    text = os.fspath(url)
    if text.startswith(("postgresql://", "postgres://")):
        return Postgres(text)
    if text.startswith("sqlite://"):
        parts = urlsplit(text)
        path = unquote(parts.path)[1:]  # sqlite:///relative.db, sqlite:////absolute/path.db
        if parts.netloc or not path:
            raise RegistryError(f"registry URL {text} names no file; write sqlite:///relative.db or "
                                f"sqlite:////absolute/path.db")
        return SQLite(Path(path))
    if "://" in text:
        raise RegistryError(f"registry {text}: unknown scheme; use a file path, sqlite:///file or postgresql://...")
    return SQLite(Path(text))


def registry_file(url: str | os.PathLike | None) -> Path | None:
    """The file of a SQLite registry (path or sqlite:/// URL); None for PostgreSQL or no registry. For the
    output-is-never-an-input guard (`ganprint.core.paths.check_overlap`)."""
    return None if url is None else open_backend(url).path
