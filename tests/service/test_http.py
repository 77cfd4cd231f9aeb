"""The HTTP API against a real `ganprint serve` process: answers equal the commands', limits, tokens, metrics."""

from __future__ import annotations

import hashlib
import io
import json
import threading

import numpy as np
import pytest
from PIL import Image

from ganprint.artificial.detect import detect
from ganprint.scalable.attribute import attribute_images
from ganprint.service.app import docs_assets


def _files(paths) -> list:
    return [("files", (p.name, p.read_bytes(), "image/png")) for p in paths]


def test_attribute_equals_the_command_image_by_image(server, models, tmp_path):
    paths = list(models["alice_images"][:4]) + list(models["photos"][:4])
    with server.client() as c:
        r = c.post("/v1/attribute", files=_files(paths))
    assert r.status_code == 200, r.text
    got = r.json()
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i, p in enumerate(paths):  # distinct names, same order as uploaded
        (folder / f"{i:02d}-{p.name}").write_bytes(p.read_bytes())
    attribute_images(models["decoder"], models["registry"], folder, tmp_path / "a", device="cpu")
    want = [json.loads(x) for x in (tmp_path / "a" / "attributions.jsonl").read_text().splitlines()]
    assert len(got["results"]) == len(want) == 8
    for http_row, cli_row, p in zip(got["results"], want, paths):
        assert http_row["file"] == p.name
        for key, value in cli_row.items():
            if key != "file":
                assert http_row[key] == value, (p, key)
    assert [r["attributed"] for r in got["results"]] == [1] * 4 + ["unknown"] * 4
    assert {r["who"] for r in got["results"][:4]} == {"alice"}
    assert got["results"][0]["issued"] == models["issued"][0]["created"]
    assert got["issued_models"] >= 2 and got["fpr"] == 1e-6
    assert "untampered" in got["p_value_covers"] and "threat-model" in got["p_value_covers"]


def test_detect_equals_the_command(server, models, tmp_path):
    photos = list(models["photos"][:4])
    with server.client() as c:
        r = c.post("/v1/detect", files=_files(photos))
    assert r.status_code == 200, r.text
    folder = tmp_path / "p"
    folder.mkdir()
    for p in photos:
        (folder / p.name).write_bytes(p.read_bytes())
    # The command refuses an --fpr its 8 bits cannot reach, so it runs at a usable one; the decision is then
    # checked against the server's own --fpr (1e-6) separately.
    detect(models["stega"], folder, tmp_path / "det", fingerprint="0x3c", device="cpu", fpr=0.01)
    want = {}
    for line in (tmp_path / "det" / "detections.jsonl").read_text().splitlines():
        row = json.loads(line)
        want[row["name"]] = row
    for res in r.json()["results"]:
        (ds,) = res["datasets"]
        w = want[res["file"]]
        assert ds["dataset"] == "faces"
        assert (ds["bit_accuracy"], ds["matches"], ds["p_value"], ds["log10_p"]) == \
            (w["bit_accuracy"], w["matches"], w["p_value"], w["log10_p"])
        assert ds["detected"] == (w["p_value"] <= 1e-6)
    assert "untampered" in r.json()["p_value_covers"]


def test_tokens_issue_and_download(server, models):
    with server.client() as c:
        assert c.post("/v1/issue", json={"who": "carol"}).status_code == 401
        r = c.post("/v1/issue", json={"who": "carol"}, headers={"Authorization": "Bearer nope"})
        assert r.status_code == 403 and "not valid" in r.json()["error"]
        auth = {"Authorization": f"Bearer {models['token']}"}
        r = c.post("/v1/issue", json={"who": "carol", "notes": "via http"}, headers=auth)
        assert r.status_code == 200, r.text
        new = r.json()
        assert new["who"] == "carol" and new["id"] >= 3
        listed = c.get("/v1/models").json()["models"]
        assert new["id"] in [m["id"] for m in listed]
        text = json.dumps(listed)
        assert "bits_hex" not in text and "issued_path" not in text and "0x" not in text
        assert c.get(f"/v1/models/{new['id']}").json()["who"] == "carol"
        assert c.get("/v1/models/99999").status_code == 404
        assert c.get(f"/v1/models/{new['id']}/download").status_code == 401
        assert c.get(f"/v1/models/{new['id']}/download", headers={"Authorization": "Bearer x"}).status_code == 403
        d = c.get(f"/v1/models/{new['id']}/download", headers=auth)
        assert d.status_code == 200 and hashlib.sha256(d.content).hexdigest() == new["sha256"]
        assert c.post("/v1/issue", json={"who": ""}, headers=auth).status_code == 422
    assert models["token"] not in server.log.read_text()


def _png(w: int, h: int, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (w, h)).save(buf, format="PNG")
    return buf.getvalue()


def test_bad_uploads_get_clear_errors_and_the_server_keeps_serving(server, models):
    good = models["alice_images"][0].read_bytes()
    with server.client() as c:
        r = c.post("/v1/attribute", files=[("files", ("notes.txt", b"hello, not an image", "text/plain"))])
        assert r.status_code == 400 and r.json()["file"] == "notes.txt" and "not an image" in r.json()["error"]
        r = c.post("/v1/attribute", files=[("files", ("cut.png", good[: len(good) // 2], "image/png"))])
        assert r.status_code == 400 and r.json()["file"] == "cut.png" and "cut.png" in r.json()["error"]
        bomb = _png(3000, 3000, "L")  # 9 Mpx in a few kB; this server takes 1 Mpx
        assert len(bomb) < 100_000
        r = c.post("/v1/attribute", files=[("files", ("bomb.png", bomb, "image/png"))])
        assert r.status_code == 400 and "decompression bomb" in r.json()["error"]
        r = c.post("/v1/attribute", files=[("files", ("empty.png", b"", "image/png"))])
        assert r.status_code == 400 and "empty" in r.json()["error"]
        r = c.post("/v1/attribute", data={"file": "x"})  # a form without a 'files' part
        assert r.status_code == 400 and "'files'" in r.json()["error"]
        r = c.post("/v1/attribute", files=[("files", (f"{i}.png", good, "image/png")) for i in range(9)])
        assert r.status_code == 413 and "`max_files`" in r.json()["error"]
        big = np.random.default_rng(0).integers(0, 256, 2 * 2**20, dtype=np.uint8).tobytes()
        r = c.post("/v1/attribute", files=[("files", ("big.png", big, "image/png"))])
        assert r.status_code == 413 and "`max_upload_mb`" in r.json()["error"]

        def chunks():  # no Content-Length: the limit is enforced while reading
            yield b"--x\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.png\"\r\n\r\n"
            for _ in range(40):
                yield b"\0" * 65536

        r = c.post("/v1/attribute", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"})
        assert r.status_code == 413
        r = c.post("/v1/attribute", files=[("files", ("../../etc/passwd.png", good, "image/png"))])
        assert r.status_code == 200 and r.json()["results"][0]["file"] == "passwd.png"
        assert c.get("/healthz").json() == {"status": "ok"}
        metrics = c.get("/metrics", headers={"Authorization": f"Bearer {models['metrics_token']}"}).text
    assert 'ganprint_attributions_total{outcome="attributed"}' in metrics
    assert "ganprint_http_request_seconds_bucket" in metrics and "ganprint_images_decoded_total" in metrics
    assert 'ganprint_uploads_rejected_total{reason="bad_image"}' in metrics


def test_concurrent_requests(server, models):
    paths = list(models["alice_images"][:2])
    codes: list[int] = []

    def go():
        with server.client() as c:
            for _ in range(3):
                codes.append(c.post("/v1/attribute", files=_files(paths)).status_code)

    threads = [threading.Thread(target=go) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [200] * 18


def test_docs_page_cors_and_info(server):
    with server.client() as c:
        docs = c.get("/docs")
        if docs_assets() is None:  # without the fastapi-offline package the docs are off, and say why
            assert docs.status_code == 404 and "fastapi-offline" in docs.json()["error"]
        else:
            assert docs.status_code == 200
        spec = c.get("/openapi.json").json()
        assert {"/v1/attribute", "/v1/detect", "/v1/issue", "/v1/models"} <= set(spec["paths"])
        body = spec["paths"]["/v1/attribute"]["post"]["requestBody"]["content"]["multipart/form-data"]
        assert body["schema"]["properties"]["files"]["type"] == "array"  # the docs page offers the upload
        page = c.get("/")
        assert page.status_code == 200 and "Which model made this image?" in page.text
        assert "http://" not in page.text and "https://" not in page.text  # nothing from the internet
        assert c.get("/static/app.js").status_code == 200
        preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
        r = c.options("/v1/attribute", headers=preflight)
        assert "access-control-allow-origin" not in r.headers
        r = c.post("/v1/attribute", headers={"Origin": "https://evil.example"},
                   files=[("files", ("x.png", _png(16, 16), "image/png"))])
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
        info = c.get("/v1/info").json()
        assert info["attribute"] and info["detect"] and info["issue"] and info["max_files"] == 8
        assert c.get("/readyz").json()["status"] == "ready"


def test_onnx_runtime_server_answers_like_the_torch_one(server, models, tmp_path):
    pytest.importorskip("onnxruntime", reason="the onnx extra: pip install 'ganprint[onnx]'")
    pytest.importorskip("onnxscript", reason="the onnx extra: pip install 'ganprint[onnx]'")
    from benchmarks.perf.service_kit import Server

    onnx = Server(["--registry", models["registry"], "--scalable-decoder", str(models["decoder"]),
                   "--stega-decoder", str(models["stega"]), "--runtime", "onnx"], tmp_path / "onnx.log")
    try:
        files = _files(list(models["alice_images"][:3]) + list(models["photos"][:3]))
        with onnx.client() as c:
            assert c.get("/v1/info").json()["runtime"] == "onnx"
            got = c.post("/v1/attribute", files=files).json()["results"]
            got_det = c.post("/v1/detect", files=files).json()["results"]
        with server.client() as c:
            want = c.post("/v1/attribute", files=files).json()["results"]
            want_det = c.post("/v1/detect", files=files).json()["results"]
    finally:
        onnx.stop()
    assert [r["decoded"] for r in got] == [r["decoded"] for r in want]
    assert [r["attributed"] for r in got] == [1, 1, 1, "unknown", "unknown", "unknown"]
    assert [r["datasets"][0]["matches"] for r in got_det] == [r["datasets"][0]["matches"] for r in want_det]


def test_two_workers_answer_and_sum_their_metrics(models, tmp_path):
    from benchmarks.perf.service_kit import Server

    srv = Server(["--registry", models["registry"], "--scalable-decoder", str(models["decoder"]), "--workers", "2"],
                 tmp_path / "two.log")
    try:
        img = models["alice_images"][0].read_bytes()
        for _ in range(6):
            with srv.client() as c:  # a new connection each time, so both workers answer some
                r = c.post("/v1/attribute", files=[("files", ("a.png", img, "image/png"))])
                assert r.json()["results"][0]["attributed"] == 1
        with srv.client() as c:
            metrics = c.get("/metrics", headers={"Authorization": f"Bearer {models['metrics_token']}"}).text
    finally:
        srv.stop()
    assert 'ganprint_attributions_total{outcome="attributed"} 6.0' in metrics


def test_a_photo_of_4000_by_3000_is_read_at_its_own_size(models, tmp_path):
    """With the default limits, a 12 MP JPEG is answered like the same photo given to `detect`."""
    from benchmarks.perf.service_kit import Server

    src = Image.open(models["photos"][0]).convert("RGB").resize((4000, 3000), Image.BICUBIC)
    buf = io.BytesIO()
    src.save(buf, format="JPEG", quality=90)
    srv = Server(["--registry", models["registry"], "--stega-decoder", str(models["stega"])], tmp_path / "log")
    try:
        with srv.client() as c:
            r = c.post("/v1/detect", files=[("files", ("big.jpg", buf.getvalue(), "image/jpeg"))])
    finally:
        srv.stop()
    assert r.status_code == 200, r.text
    folder = tmp_path / "big"
    folder.mkdir()
    (folder / "big.jpg").write_bytes(buf.getvalue())
    detect(models["stega"], folder, tmp_path / "det", fingerprint="0x3c", device="cpu", fpr=0.01)
    want = json.loads((tmp_path / "det" / "detections.jsonl").read_text().splitlines()[0])
    (ds,) = r.json()["results"][0]["datasets"]
    assert (ds["matches"], ds["p_value"]) == (want["matches"], want["p_value"])


def test_openapi_declares_answers_errors_and_the_bearer_scheme(server):
    with server.client() as c:
        spec = c.get("/openapi.json").json()
    scheme = spec["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer") and "ganprint token create" in scheme["description"]
    paths = spec["paths"]
    for path, method in (("/v1/issue", "post"), ("/v1/models/{fp_id}/download", "get"), ("/metrics", "get")):
        op = paths[path][method]
        assert op["security"] == [{"bearer": []}], path
        assert {"401", "403"} <= set(op["responses"]), path
    for path, method in (("/v1/attribute", "post"), ("/v1/detect", "post"), ("/v1/issue", "post"),
                         ("/v1/models", "get"), ("/v1/models/{fp_id}", "get"), ("/v1/info", "get"),
                         ("/services/supportedAlgorithms", "get"), ("/matches/byBinding", "get"),
                         ("/matches/byContent", "post")):
        ok = paths[path][method]["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok.get("$ref", "").startswith("#/components/schemas/"), (path, ok)  # no empty answer schema
    for path, method, codes in (("/v1/attribute", "post", {"400", "413", "429"}), ("/v1/models/{fp_id}", "get",
                                {"404"}), ("/matches/byContent", "post", {"400", "415"}),
                                ("/manifests/{manifestId}", "get", {"400", "404"})):
        assert codes <= set(paths[path][method]["responses"]), path
    error = paths["/v1/attribute"]["post"]["responses"]["400"]["content"]["application/json"]["schema"]
    assert spec["components"]["schemas"][error["$ref"].rsplit("/", 1)[1]]["required"] == ["error"]
    assert "application/c2pa" in paths["/manifests/{manifestId}"]["get"]["responses"]["200"]["content"]
    assert "image/*" in paths["/matches/byContent"]["post"]["requestBody"]["content"]
