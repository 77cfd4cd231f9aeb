"""The service maps the registry's error types to HTTP statuses (never by reading a message): checked in this
process on an application with one route per type."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="the service tests need the service extra: pip install 'ganprint[service]'")

from fastapi import FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from ganprint.registry.errors import (CommitUnknown, DumpError, RegistryConflict, RegistryError,  # noqa: E402
                                      RegistryExhausted, RegistryInputError, RegistryNotFound)
from ganprint.service.app import _error_handlers  # noqa: E402

_CASES = [(RegistryInputError, 400), (DumpError, 400), (RegistryNotFound, 404), (RegistryConflict, 409),
          (RegistryExhausted, 409), (RegistryError, 503), (CommitUnknown, 503)]


@pytest.mark.parametrize("error,status", _CASES, ids=[c[0].__name__ for c in _CASES])
def test_each_registry_error_type_has_its_status(error, status):
    app = FastAPI()
    _error_handlers(app)

    @app.get("/raise")
    def raise_it():
        # The same words for every type, one of them the flag the old mapping looked for: only the type decides.
        raise error("registry /private/reg.sqlite: lower --min-distance")

    r = TestClient(app, raise_server_exceptions=False).get("/raise")
    assert r.status_code == status, r.text
    if status == 503:  # the registry's location stays in the server's log
        assert r.json() == {"error": "the registry is unavailable; try again later"}
    else:
        assert "lower --min-distance" in r.json()["error"]
