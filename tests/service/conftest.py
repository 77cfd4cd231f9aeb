"""Fixtures of the service tests: fitted tiny models, a registry with tokens, and real `ganprint serve` processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the service tests need the service extra: pip install 'ganprint[service]'")
import httpx  # noqa: E402

from ganprint.scalable.registry import Registry, register_dataset  # noqa: E402
from tests.service.models import make_models  # noqa: E402
from tests.service.postgres import free_port, postgres_server, postgres_url  # noqa: E402,F401 - fixtures

SRC = Path(__file__).resolve().parents[2] / "src"


class Server:
    """A `ganprint serve` subprocess on 127.0.0.1 and a free port, with its log file."""

    def __init__(self, args: list[str], log: Path, env: dict | None = None, timeout: float = 120.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        full_env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                    "OMP_NUM_THREADS": "1", **(env or {})}
        self._logf = open(log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "ganprint", "serve", "--port", str(self.port), *args],
                                     stdout=self._logf, stderr=subprocess.STDOUT, env=full_env,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server not ready after {timeout} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kw)

    def stop(self, sig: int | None = None) -> None:
        if self.proc.poll() is None:
            if sig is None:
                self.proc.terminate()
            else:
                os.killpg(self.proc.pid, sig)  # the server and any uvicorn workers
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(10)
        self._logf.close()


@pytest.fixture(scope="session")
def models(tmp_path_factory, tiny_stega_model):
    """make_models() at 16 px plus a registered data set 'faces' (read by the tiny stega model) and a token."""
    root = tmp_path_factory.mktemp("service-models")
    m = make_models(root)
    register_dataset(m["registry"], "faces", "0x" + "3c" * 1, tiny_stega_model)
    m["stega"] = tiny_stega_model
    m["token"] = Registry(m["registry"]).create_token("tests")
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
