"""The service maps the registry's error types to HTTP statuses (never by reading a message): checked in this
process on an application with one route per type, and any other exception to a JSON 500."""

from __future__ import annotations

import httpx
import pytest

pytest.importorskip("fastapi", reason="the service tests need the service extra: pip install 'ganprint[service]'")

from fastapi import FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from ganprint.registry.errors import (CommitUnknown, DumpError, RegistryConflict, RegistryError,  # noqa: E402
                                      RegistryExhausted, RegistryInputError, RegistryNotFound)
from ganprint.service.app import _error_handlers  # noqa: E402

_CASES = [(RegistryInputError, 400), (DumpError, 400), (RegistryNotFound, 404), (RegistryConflict, 409),
          (RegistryExhausted, 409), (RegistryError, 503), (CommitUnknown, 503)]


def _get_raising(error: BaseException):
    """The answer to a GET on an application with the service's error handlers and one route that raises `error`."""
    app = FastAPI()
    _error_handlers(app)

    @app.get("/raise")
    def raise_it():
        raise error

    return TestClient(app, raise_server_exceptions=False).get("/raise")


@pytest.mark.parametrize("error,status", _CASES, ids=[c[0].__name__ for c in _CASES])
def test_each_registry_error_type_has_its_status(error, status):
    # The same words for every type, one of them the flag the old mapping looked for: only the type decides.
    r = _get_raising(error("registry /private/reg.sqlite: lower --min-distance"))
    assert r.status_code == status, r.text
    if status == 503:  # the registry's location stays in the server's log
        assert r.json() == {"error": "the registry is unavailable; try again later"}
    else:
        assert "lower --min-distance" in r.json()["error"]


def test_unexpected_failures_are_json_500s(server):
    # No route of the service fails on purpose, so a 500 needs a bug: this checks, in this process, the handler
    # that turns any exception into a JSON body, on an application with one failing route.
    r = _get_raising(RuntimeError("a bug"))
    assert r.status_code == 500 and r.json()["error"].startswith("internal error")
    assert httpx.get(server.url + "/healthz").status_code == 200
