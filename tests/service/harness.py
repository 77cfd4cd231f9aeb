"""A real `ganprint serve` process for the tests and benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.service.postgres import free_port

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
