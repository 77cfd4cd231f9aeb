"""The PostgreSQL back-end (psycopg 3), for a registry shared by several machines."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator
from urllib.parse import urlsplit

from ganprint.registry.backends.connection import Connection
from ganprint.registry.errors import RegistryError


class Postgres:
    postgres = True
    path = None

    def __init__(self, url: str):
        self.url = url
        parts = urlsplit(url)
        self.where = f"postgresql://{parts.hostname or ''}{':' + str(parts.port) if parts.port else ''}{parts.path}"

    def exists(self) -> bool:
        return True

    def require_local(self) -> None:
        pass

    def owns(self, path: str | os.PathLike) -> bool:
        return False

    @contextlib.contextmanager
    def connect(self, write: bool) -> Iterator[Connection]:
        try:
            import psycopg
        except ImportError:
            raise RegistryError("a postgresql:// registry needs psycopg 3: pip install -e '.[service]' in the "
                                "ganprint checkout") from None
        try:
            raw = psycopg.connect(self.url, autocommit=True, connect_timeout=30)
        except psycopg.Error as e:
            raise RegistryError(f"cannot connect to registry {self.where}: {str(e).strip().splitlines()[0]}") from None
        try:
            if not write:
                raw.read_only = True
            yield Connection(raw, True)
        except psycopg.Error as e:
            raise RegistryError(f"registry {self.where}: {str(e).strip().splitlines()[0]}") from None
        finally:
            raw.close()

    def init_schema(self, con: Connection) -> None:
        pass

    def table_exists(self, con: Connection, name: str) -> bool:
        return con.execute("SELECT to_regclass(?)", (name,)).fetchone()[0] is not None
