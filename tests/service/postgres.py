"""A real PostgreSQL server for the tests: Debian's binaries, started in a temporary folder on a free port.

PostgreSQL refuses to run as root (CI does), so the server runs as the `postgres` system user (or `nobody`)
when the tests run as root. Tests are skipped only where no PostgreSQL binaries are installed.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import missing_component


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("initdb")
    return Path(which).parent if which else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_as() -> dict:
    """subprocess arguments that drop root to an unprivileged user (nothing when not root)."""
    if os.geteuid() != 0:
        return {}
    for name in ("postgres", "nobody"):
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
    raise RuntimeError("running as root without a `postgres` or `nobody` user to run PostgreSQL as")


@pytest.fixture(scope="session")
def postgres_server():
    """(host, port) of a PostgreSQL server for this test session, user `ganprint`, trust authentication."""
    if _pg_bin() is None:
        missing_component("PostgreSQL binaries (initdb, pg_ctl) are not installed: apt-get install postgresql")
    with postgres_instance() as hostport:
        yield hostport


@contextlib.contextmanager
def postgres_instance():
    """Start a throw-away PostgreSQL server (as an unprivileged user when root); yields (host, port)."""
    bindir = _pg_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL binaries (initdb, pg_ctl) are not installed: apt-get install postgresql")
    as_user = _run_as()
    root = Path(tempfile.mkdtemp(prefix="ganprint-pg-"))
    if as_user:
        os.chown(root, as_user["user"], as_user["group"])
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    port = free_port()
    data, log = root / "data", root / "server.log"
    run = dict(check=True, capture_output=True, text=True, env=env, cwd=root, timeout=120, **as_user)
    subprocess.run([bindir / "initdb", "-D", data, "-U", "ganprint", "--auth=trust", "-E", "UTF8", "-N"], **run)
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    subprocess.run([bindir / "pg_ctl", "-D", data, "-o", opts, "-l", log, "-w", "-t", "60", "start"], **run)
    try:
        yield "127.0.0.1", port
    finally:
        subprocess.run([bindir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"], **{**run, "check": False})
        shutil.rmtree(root, ignore_errors=True)


_count = [0]


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """The URL of a new, empty database on the session's PostgreSQL server."""
    host, port = postgres_server
    _count[0] += 1
    return create_database(host, port, f"t{os.getpid()}_{_count[0]}")


def create_database(host: str, port: int, name: str) -> str:
    """CREATE DATABASE `name` on the server; returns its URL."""
    import psycopg

    with psycopg.connect(f"postgresql://ganprint@{host}:{port}/postgres", autocommit=True) as con:
        con.execute(f"CREATE DATABASE {name}")
    return f"postgresql://ganprint@{host}:{port}/{name}"
