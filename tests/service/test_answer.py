"""The `answer` setting: a decision-only server gives the same verdicts as a full one and no score to climb."""

from __future__ import annotations

import pytest

from benchmarks.perf.service_kit import Server
from ganprint.core.errors import GanprintError
from ganprint.service.config import DECISION_FIELDS, ServiceConfig


def _files(paths) -> list:
    return [("files", (p.name, p.read_bytes(), "image/png")) for p in paths]


def test_an_unknown_answer_is_refused_naming_the_field(models):
    with pytest.raises(GanprintError, match="`answer` must be one of full, decision, got scores"):
        ServiceConfig(stega_decoders=[str(models["stega"])], answer="scores").validate()


def test_a_decision_server_answers_the_verdicts_of_a_full_one_and_nothing_else(server, models, tmp_path):
    paths = list(models["alice_images"][:3]) + list(models["photos"][:3])
    coarse = Server(["--registry", models["registry"], "--scalable-decoder", str(models["decoder"]),
                     "--stega-decoder", str(models["stega"]), "--answer", "decision"], tmp_path / "server.log")
    try:
        answers = {}
        for name, srv in (("full", server), ("decision", coarse)):
            with srv.client() as c:
                answers[name] = (c.post("/v1/attribute", files=_files(paths)).json(),
                                 c.post("/v1/detect", files=_files(paths)).json(), c.get("/v1/info").json())
    finally:
        coarse.stop()
    (fa, fd, fi), (ca, cd, ci) = answers["full"], answers["decision"]
    assert (fi["answer"], ci["answer"]) == ("full", "decision")
    assert [r["attributed"] for r in ca["results"]] == [r["attributed"] for r in fa["results"]]
    assert {r["attributed"] for r in ca["results"]} != {"unknown"}  # alice's images are attributed
    for row in ca["results"]:
        assert set(row) <= DECISION_FIELDS and "decoded" not in row
    for full, dec in zip(fd["results"], cd["results"]):
        (f,), (d,) = full["datasets"], dec["datasets"]
        assert d == {"dataset": f["dataset"], "detected": f["detected"]}
    assert "matches" in fd["results"][0]["datasets"][0] and "untampered" in cd["p_value_covers"]
