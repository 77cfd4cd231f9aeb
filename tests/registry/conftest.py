"""Fixtures of the registry tests: a new registry URL on each back-end (SQLite and a real PostgreSQL)."""

from __future__ import annotations

import pytest

from tests.service.postgres import postgres_server, postgres_url  # noqa: F401 - fixtures


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    """A new registry URL on each backend."""
    if request.param == "sqlite":
        return str(tmp_path / "r.sqlite")
    return request.getfixturevalue("postgres_url")
