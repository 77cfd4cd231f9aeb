"""PostgreSQL fixtures for the tests: one server per session (benchmarks/perf/service_kit.py starts it) and a new,
empty database per test. Tests are skipped only where no PostgreSQL binaries are installed (failed in CI)."""

from __future__ import annotations

import os

import pytest

from benchmarks.perf.service_kit import create_database, pg_bin, postgres_instance
from tests.conftest import missing_component


@pytest.fixture(scope="session")
def postgres_server():
    """(host, port) of a PostgreSQL server for this test session, user `ganprint`, trust authentication."""
    if pg_bin() is None:
        missing_component("PostgreSQL binaries (initdb, pg_ctl) are not installed: apt-get install postgresql")
    with postgres_instance() as hostport:
        yield hostport


_count = [0]


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """The URL of a new, empty database on the session's PostgreSQL server."""
    host, port = postgres_server
    _count[0] += 1
    return create_database(host, port, f"t{os.getpid()}_{_count[0]}")
