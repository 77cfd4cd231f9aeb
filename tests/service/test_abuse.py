"""Hostile and malformed requests against a real server: every one a 4xx with a JSON error (never a 500), and
nothing leaked: no registry location to anonymous clients, no open /metrics, no token in the log, /docs offline."""

from __future__ import annotations

import re
import shutil
import time

import pytest

from ganprint.registry.store import Registry
from benchmarks.perf.service_kit import Server

BIG = str(2**63)

# (method, path, keyword arguments of httpx) -> the status expected; "auth" is replaced by a valid issue token.
CASES = [
    ("GET", f"/v1/models/{BIG}", {}, 422), ("GET", "/v1/models/99999999999999999999999", {}, 422),
    ("GET", f"/v1/models/-{2**63 + 1}", {}, 422), ("GET", "/v1/models/-1", {}, 404),
    ("GET", "/v1/models/0", {}, 404), ("GET", "/v1/models/abc", {}, 422), ("GET", "/v1/models/1.5", {}, 422),
    ("GET", "/v1/models/%00", {}, 422), ("GET", "/v1/models/%ED%A0%80", {}, 422),
    ("GET", f"/v1/models/{BIG}/download", {"auth": True}, 422),
    ("GET", f"/v1/models/{2**63 - 1}/download", {"auth": True}, 404),
    ("GET", "/v1/models/1/download", {}, 401),
    ("POST", "/v1/issue", {"auth": True, "content": b'{"who": "\\ud800"}'}, 422),
    ("POST", "/v1/issue", {"auth": True, "content": b'{"who": "ok", "notes": "\\udfff"}'}, 422),
    ("POST", "/v1/issue", {"auth": True, "content": b'{"who": "a\\u0000b"}'}, 422),
    ("POST", "/v1/issue", {"auth": True, "content": b'{"who": "a\\nINFO: forged log line"}'}, 422),
    ("POST", "/v1/issue", {"auth": True, "content": b'{"who": "' + b"\\ud800" * 300 + b'"}'}, 422),
    ("POST", "/v1/issue", {"auth": True, "content": b'{"who"'}, 422),
    ("POST", "/v1/issue", {"auth": True, "content": b"\xff\xfe\x00"}, 400),
    ("POST", "/v1/issue", {"auth": True, "content": b"[" * 100_000}, 400),
    ("POST", "/v1/issue", {"auth": True, "content": b"null"}, 422),
    ("POST", "/v1/issue", {"auth": True, "content": b'{"who": 5}'}, 422),
    ("POST", "/v1/issue", {"auth": True, "content": b'{"who": "x"}', "ctype": "text/plain"}, 422),
    ("POST", "/v1/issue", {"auth": True, "data": {"who": "x"}}, 422),
    ("POST", "/v1/issue", {"content": b'{"who": "x"}'}, 401),
    ("GET", "/v1/issue", {}, 405),
    ("POST", "/v1/attribute", {"content": b"{}", "ctype": "application/json"}, 400),
    ("POST", "/v1/attribute", {"content": b"", "ctype": "multipart/form-data"}, 400),
    ("POST", "/v1/attribute", {"content": b"", "ctype": "multipart/form-data; boundary=x"}, 400),
    ("POST", "/v1/attribute", {"content": b"--x--\r\n", "ctype": "multipart/form-data; boundary=x"}, 400),
    ("POST", "/v1/attribute", {"content": b"garbage", "ctype": "multipart/form-data; boundary=x"}, 400),
    ("POST", "/v1/attribute", {"content": b'--x\r\nContent-Disposition: form-data\r\n\r\nabc\r\n--x--\r\n',
                               "ctype": "multipart/form-data; boundary=x"}, 400),
    ("POST", "/v1/attribute", {"content": b'--x\r\nContent-Disposition: form-data; name="files"; filename="\xed\xa0'
                                          b'\x80.png"\r\n\r\nabc\r\n--x--\r\n',
                               "ctype": "multipart/form-data; boundary=x"}, 400),
    ("POST", "/v1/attribute", {"data": {"files": "not a file"}}, 400),
    ("POST", "/v1/attribute", {"files": [("images", ("a.png", b"\x89PNG", "image/png"))]}, 400),
    ("POST", "/v1/attribute", {"data": {f"f{i}": "x" for i in range(1200)}}, 400),
    ("POST", "/v1/detect", {"files": [("files", ("a.png", b"\x89PNG\r\n\x1a\nxx", "image/png"))]}, 400),
    ("GET", "/v1/attribute", {}, 405), ("GET", "/nope", {}, 404), ("DELETE", "/v1/models", {}, 405),
]


@pytest.mark.parametrize("i", range(len(CASES)))
def test_every_bad_request_gets_a_4xx_with_a_json_error(server, models, i):
    method, path, kw, want = CASES[i]
    kw = dict(kw)
    headers = {"Authorization": f"Bearer {models['token']}"} if kw.pop("auth", False) else {}
    if "ctype" in kw:
        headers["content-type"] = kw.pop("ctype")
    elif "content" in kw:
        headers["content-type"] = "application/json"
    with server.client() as c:
        r = c.request(method, path, headers=headers, **kw)
    assert r.status_code == want, (CASES[i], r.text[:300])
    assert isinstance(r.json()["error"], str) and r.json()["error"]
    with server.client() as c:
        assert c.get("/healthz").status_code == 200


def test_metrics_need_a_metrics_token_and_readyz_tells_anonymous_clients_only_the_status(server, models):
    reg = Registry(models["registry"])
    metrics_token, issue_token = reg.create_token("prometheus", ["metrics"]), reg.create_token("shop", ["issue"])
    with server.client() as c:
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers={"Authorization": f"Bearer {issue_token}"}).status_code == 403
        r = c.get("/metrics", headers={"Authorization": f"Bearer {metrics_token}"})
        assert r.status_code == 200 and "ganprint_http_requests_total" in r.text
        assert c.get("/readyz").json() == {"status": "ready"}
        assert c.get("/readyz", headers={"Authorization": f"Bearer {issue_token}"}).json() == {"status": "ready"}
        full = c.get("/readyz", headers={"Authorization": f"Bearer {metrics_token}"}).json()
    assert full["status"] == "ready" and full["registry"].endswith("registry.sqlite")


def test_tokens_in_the_url_are_refused_and_query_strings_never_logged(server, models):
    token = models["token"]
    with server.client() as c:
        for url in (f"/v1/models?token={token}", f"/v1/models/1/download?access_token={token}",
                    f"/v1/models?x={token}", "/v1/models?api_key=whatever", f"/metrics?{token}"):
            r = c.get(url)
            assert r.status_code == 400 and "Authorization header" in r.json()["error"], url
        assert c.get("/v1/models?page=secret-looking-value").status_code == 200
    log = server.log.read_text()
    assert token not in log and "whatever" not in log and "secret-looking-value" not in log
    assert "/v1/models?[redacted]" in log


def _local_refs(page: str) -> list[str]:
    refs = re.findall(r'(?:src|href)="([^"]+)"', page) + re.findall(r"url: '([^']+)'", page)
    return refs


def test_api_docs_load_only_from_this_server(server):
    pytest.importorskip("fastapi_offline", reason="the service extra: pip install 'ganprint[service]'")
    with server.client() as c:
        for path in ("/docs", "/redoc"):
            r = c.get(path)
            assert r.status_code == 200 and "<html>" in r.text, path
            assert "http://" not in r.text and "https://" not in r.text, path
            refs = _local_refs(r.text)
            assert len(refs) >= 2 and all(u.startswith("/") and not u.startswith("//") for u in refs), refs
            for u in refs:
                got = c.get(u)
                assert got.status_code == 200 and len(got.content) > 1000, u
        assert "/docs-assets/redoc.standalone.js" in _local_refs(c.get("/redoc").text)


def test_registry_errors_map_to_statuses_by_type_and_503_shows_no_location(models, tmp_path):
    reg = tmp_path / "private-location" / "reg.sqlite"
    reg.parent.mkdir()
    shutil.copy(models["registry"], reg)
    srv = Server(["--registry", str(reg), "--scalable-decoder", str(models["decoder"]), "--base-model",
                  str(models["G"]), "--models-dir", str(tmp_path / "issued"), "--min-distance", "32"],
                 tmp_path / "s.log")
    try:
        with srv.client() as c:  # 32 of 32 bits from both issued fingerprints: none left (RegistryExhausted)
            r = c.post("/v1/issue", json={"who": "x"}, headers={"Authorization": f"Bearer {models['token']}"})
            assert r.status_code == 409 and "`min_distance`" in r.json()["error"], r.text
        reg.write_bytes(b"this is not a database" * 100)
        with srv.client() as c:
            r = c.get("/readyz")
            assert r.status_code == 503 and r.json() == {"status": "not ready"}
            r = c.get("/v1/models")
            assert r.status_code == 503 and r.json() == {"error": "the registry is unavailable; try again later"}
            time.sleep(1.2)  # past --sync-seconds: attribution reads the registry again
            r = c.post("/v1/attribute", files=[("files", ("a.png", models["alice_images"][0].read_bytes(),
                                                          "image/png"))])
            assert r.status_code == 503 and "private-location" not in r.text
    finally:
        srv.stop()
    log = (tmp_path / "s.log").read_text()
    assert "private-location" in log and "Traceback" not in log  # the detail is for the operator only
