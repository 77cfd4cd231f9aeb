"""The `rate_limit` setting: a per-client budget of images on the verify routes (a querying attacker's defence)."""

from __future__ import annotations

import pytest

from benchmarks.perf.service_kit import Server
from ganprint.core.errors import GanprintError
from ganprint.service.config import ServiceConfig
from ganprint.service.ratelimit import ImageBudget


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_the_budget_refills_at_its_rate_and_says_how_long_to_wait():
    clock = Clock()
    b = ImageBudget(per_minute=60, capacity=10, clock=clock)  # one image a second
    assert b.take("a", 10) is None  # a full bucket
    assert b.take("a", 4) == pytest.approx(4.0)  # refused: nothing spent
    assert b.take("b", 10) is None  # each client has its own bucket
    clock.t = 4.0
    assert b.take("a", 4) is None and b.take("a", 1) == pytest.approx(1.0)
    clock.t = 100.0
    with pytest.raises(ValueError, match="never fit"):
        b.take("a", 11)


def test_the_client_table_forgets_the_oldest_clients():
    b = ImageBudget(per_minute=1, capacity=5, clock=Clock(), max_clients=2)
    for c in "abc":
        assert b.take(c, 5) is None
    assert b.take("a", 5) is None  # forgotten, so full again
    assert b.take("c", 1) is not None


def test_a_negative_rate_limit_is_refused_naming_the_field(models):
    with pytest.raises(GanprintError, match="`rate_limit`"):
        ServiceConfig(stega_decoders=[str(models["stega"])], rate_limit=-1).validate()


def test_a_client_over_its_budget_gets_429_with_retry_after_and_the_server_keeps_serving(models, tmp_path):
    photo = models["photos"][0].read_bytes()
    files = [("files", (f"{i}.png", photo, "image/png")) for i in range(4)]
    srv = Server(["--registry", models["registry"], "--stega-decoder", str(models["stega"]),
                  "--scalable-decoder", str(models["decoder"]), "--max-files", "4", "--rate-limit", "6"],
                 tmp_path / "server.log")
    try:
        with srv.client() as c:
            assert c.get("/v1/info").json()["rate_limit"] == 6
            assert c.post("/v1/detect", files=files).status_code == 200  # 4 of the 6 images of a minute
            refused = c.post("/v1/attribute", files=files)  # both routes draw on one budget
            assert refused.status_code == 429, refused.text
            assert "`rate_limit`" in refused.json()["error"]
            assert 1 <= int(refused.headers["Retry-After"]) <= 20  # 2 images at 6 a minute
            assert c.get("/v1/info").status_code == 200  # other routes are not counted
            assert c.post("/v1/detect", files=files[:2]).status_code == 200  # what is left still passes
    finally:
        srv.stop()
