"""Several servers on one PostgreSQL registry: index kept in step, concurrent issuing, a server killed mid-issue."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ganprint.core.files import sha256_file
from ganprint.registry.fingerprints import default_min_distance
from ganprint.registry.store import Registry
from benchmarks.perf.service_kit import Server
from benchmarks.perf.service_kit import make_models
from benchmarks.perf.service_kit import create_database
from tests.service.pgproxy import FaultProxy


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, postgres_server):
    url = create_database(*postgres_server, "cluster")
    root = tmp_path_factory.mktemp("cluster")
    m = make_models(root, registry=url)
    token = Registry(url).create_token("cluster")
    watch = {"Authorization": f"Bearer {Registry(url).create_token('watch', ['metrics'])}"}  # /readyz details
    args = ["--registry", url, "--scalable-decoder", str(m["decoder"]), "--base-model", str(m["G"]),
            "--models-dir", str(root / "shared-issued"), "--sync-seconds", "1"]
    servers = [Server(args, root / f"server{i}.log") for i in range(2)]
    yield {"url": url, "servers": servers, "args": args, "root": root, "token": token, "models": m, "watch": watch}
    for s in servers:
        s.stop()


def _issue(server: Server, token: str, who: str) -> dict:
    with server.client() as c:
        r = c.post("/v1/issue", json={"who": who}, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return r.json()


def test_a_model_issued_on_one_server_is_known_to_the_other_within_the_bound(cluster):
    a, b = cluster["servers"]
    with b.client() as c:
        before = c.get("/readyz", headers=cluster["watch"]).json()["issued_models"]
    new = _issue(a, cluster["token"], "dora")
    t0 = time.monotonic()
    with b.client() as c:
        while c.get("/readyz", headers=cluster["watch"]).json()["issued_models"] != before + 1:
            assert time.monotonic() - t0 < 5, "server B did not see the new model"
            time.sleep(0.05)
        assert new["id"] in [x["id"] for x in c.get("/v1/models").json()["models"]]
        r = c.post("/v1/attribute", files=[("files", ("x.png", cluster["models"]["alice_images"][0].read_bytes(),
                                                      "image/png"))])
    assert r.json()["issued_models"] == before + 1 and r.json()["results"][0]["attributed"] == 1


def _check_registry(url: str, ids: list[int]) -> list:
    rows = Registry(url, create=False).list()
    by_id = {r.fp_id: r for r in rows}
    assert set(ids) <= set(by_id), "an id returned to a client is missing from the registry"
    for r in rows:  # every record is complete: its file is there, with the recorded digest, under its final name
        path = Path(r.issued_path)  # or, when its issuer was killed between COMMIT and the rename, the pending one
        if not path.exists():
            path = path.with_name(f".{path.name}.pending")
        assert sha256_file(path) == r.issued_sha256
    bits = np.stack([r.bits.numpy() for r in rows])
    d = (bits[:, None] != bits[None]).sum(-1) + np.eye(len(rows), dtype=int) * 999
    assert len({r.bits_hex for r in rows}) == len(rows) and d.min() >= default_min_distance(bits.shape[1])
    return rows


def test_clients_issuing_through_two_servers_lose_and_duplicate_nothing(cluster):
    servers, token = cluster["servers"], cluster["token"]
    got: list[int] = []
    errors: list[str] = []

    def client(i: int) -> None:
        try:
            for j in range(3):
                got.append(_issue(servers[(i + j) % 2], token, f"client{i}")["id"])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(got) == len(set(got)) == 24
    _check_registry(cluster["url"], got)
    with servers[1].client() as c:
        for fp_id in got[:4]:
            d = c.get(f"/v1/models/{fp_id}/download", headers={"Authorization": f"Bearer {token}"})
            assert d.status_code == 200 and hashlib.sha256(d.content).hexdigest() == \
                Registry(cluster["url"], create=False).get(fp_id).issued_sha256


def _files_match_rows(url: str, folder) -> None:
    """Row iff file in `folder`: its files are exactly the files of the rows recorded there, and none is pending."""
    rows = [r for r in Registry(url, create=False).list() if Path(r.issued_path).parent == Path(folder).resolve()]
    assert sorted(os.listdir(folder)) == sorted(Path(r.issued_path).name for r in rows)


def test_a_server_killed_while_issuing_leaves_only_complete_records(cluster):
    srv = Server(cluster["args"], cluster["root"] / "victim.log")
    returned: list[int] = []
    stop = threading.Event()

    def issuing() -> None:
        while not stop.is_set():
            try:
                returned.append(_issue(srv, cluster["token"], "victim")["id"])
            except Exception:  # noqa: BLE001 - the server is killed under us
                return

    threads = [threading.Thread(target=issuing) for _ in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(returned) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    srv.stop(signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join()
    assert returned
    _check_registry(cluster["url"], returned)
    with cluster["servers"][0].client() as c:  # a live server serves every committed model before any repair
        for r in Registry(cluster["url"], create=False).list():
            assert c.get(f"/v1/models/{r.fp_id}/download",
                         headers={"Authorization": f"Bearer {cluster['token']}"}).status_code == 200
    again = Server(cluster["args"], cluster["root"] / "victim2.log")  # settles --models-dir at start
    try:
        _files_match_rows(cluster["url"], cluster["root"] / "shared-issued")
        with again.client() as c:
            for fp_id in returned:
                assert c.get(f"/v1/models/{fp_id}/download",
                             headers={"Authorization": f"Bearer {cluster['token']}"}).status_code == 200
        assert _issue(again, cluster["token"], "after")["id"] > max(returned)
    finally:
        again.stop()


def test_connection_lost_after_commit_still_answers_200_and_serves_the_model(cluster, postgres_server):
    """The database commits the issue but the answer to COMMIT never reaches the server: the server asks again,
    answers 200, and the model downloads (it once answered 503 and deleted the file of a listed model)."""
    proxy = FaultProxy(*postgres_server)
    args = list(cluster["args"])
    args[args.index("--registry") + 1] = proxy.url("cluster")
    srv = Server(args, cluster["root"] / "proxied.log")
    try:
        proxy.arm("after")
        new = _issue(srv, cluster["token"], "erin")
        assert proxy.fired.is_set()
        with srv.client() as c:
            d = c.get(f"/v1/models/{new['id']}/download", headers={"Authorization": f"Bearer {cluster['token']}"})
        assert d.status_code == 200 and hashlib.sha256(d.content).hexdigest() == new["sha256"]
        _files_match_rows(cluster["url"], cluster["root"] / "shared-issued")
    finally:
        srv.stop()
        proxy.close()


def test_scoped_tokens_revocation_and_bad_input_across_two_servers_on_postgresql(cluster):
    a, b = cluster["servers"]
    reg = Registry(cluster["url"])
    shop = {"Authorization": f"Bearer {reg.create_token('shop', ['issue'])}"}
    erin_token = reg.create_token("erin", ["download:own"])
    erin = {"Authorization": f"Bearer {erin_token}"}
    with a.client() as c:
        new = c.post("/v1/issue", json={"who": "erin"}, headers=shop).json()
        for body in (b'{"who": "a\\u0000b"}', b'{"who": "\\ud800"}', b'{"who": "ok", "notes": "x\\u0000"}'):
            r = c.post("/v1/issue", content=body, headers={**shop, "content-type": "application/json"})
            assert r.status_code == 422 and r.json()["error"], r.text  # was 503 from PostgreSQL for NUL
        for path in (f"/v1/models/{2**63}", f"/v1/models/{2**63}/download", "/v1/models/-1"):
            r = c.get(path, headers=erin)
            assert r.status_code in (404, 422) and r.json()["error"], (path, r.text)
    with b.client() as c:
        assert c.get(f"/v1/models/{new['id']}/download", headers=erin).status_code == 200
        assert c.get("/v1/models/1/download", headers=erin).status_code == 403  # alice's
        reg.revoke_token(reg.token(erin_token).token_id)  # on the shared registry...
        r = c.get(f"/v1/models/{new['id']}/download", headers=erin)  # ...refused by the other server at once
        assert r.status_code == 403 and "revoked" in r.json()["error"]
