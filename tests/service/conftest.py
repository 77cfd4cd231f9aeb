"""Fixtures of the service tests: fitted tiny models, a registry with tokens, and real `ganprint serve` processes."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="the service tests need the service extra: pip install 'ganprint[service]'")

from ganprint.artificial.register import register_dataset  # noqa: E402
from ganprint.registry.store import Registry  # noqa: E402
from benchmarks.perf.service_kit import Server  # noqa: E402
from benchmarks.perf.service_kit import make_models  # noqa: E402
from tests.service.postgres import postgres_server, postgres_url  # noqa: E402,F401 - fixtures


@pytest.fixture(scope="session")
def models(tmp_path_factory, tiny_stega_model):
    """make_models() at 16 px plus a registered data set 'faces' (read by the tiny stega model) and a token."""
    root = tmp_path_factory.mktemp("service-models")
    m = make_models(root)
    register_dataset(m["registry"], "faces", "0x" + "3c" * 1, tiny_stega_model)
    m["stega"] = tiny_stega_model
    m["token"] = Registry(m["registry"]).create_token("tests")  # issue + download:all (LEGACY_SCOPES)
    m["metrics_token"] = Registry(m["registry"]).create_token("prometheus", ["metrics"])
    return m


@pytest.fixture(scope="session")
def server(models, tmp_path_factory):
    """A server attributing, detecting and issuing on the models' SQLite registry (limits made small)."""
    root = tmp_path_factory.mktemp("server")
    srv = Server(["--registry", models["registry"], "--scalable-decoder", str(models["decoder"]),
                  "--stega-decoder", str(models["stega"]), "--base-model", str(models["G"]),
                  "--models-dir", str(root / "issued"), "--max-upload-mb", "1", "--max-files", "8",
                  "--max-pixels", "1000000"], root / "server.log")
    yield srv
    srv.stop()
