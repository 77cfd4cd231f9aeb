"""The C2PA Soft Binding Resolution API against a real `ganprint serve`: a C2PA client recovers the registered
record of an issued model's image from its pixels alone, and bad queries get 4xx while the server keeps serving."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image

from ganprint.core.stats import match_threshold
from ganprint.provenance.c2pa import RECORD_ASSERTION, sign_images
from ganprint.provenance.softbinding import ARTIFICIAL_ALG, SCALABLE_ALG, encode_value
from ganprint.registry.store import Registry
from benchmarks.perf.service_kit import Server
from tests.provenance.certs import make_chain

c2pa = pytest.importorskip("c2pa", reason="the c2pa extra: pip install 'ganprint[c2pa]'")


@pytest.fixture(scope="module")
def signed(models, tmp_path_factory):
    """alice's generated images (issued model #1) signed with a test chain, their manifests kept in the registry."""
    root = tmp_path_factory.mktemp("signed")
    cert, key, _ = make_chain(root)
    summary = sign_images(models["root"] / "alice-images", root / "out", models["registry"], cert, key)
    return {**summary, "root": root}


def _stripped(path) -> bytes:
    """The image's pixels re-encoded by Pillow: every chunk of metadata, the C2PA manifest included, is gone."""
    buf = io.BytesIO()
    Image.open(path).convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def _flipped(bits, *positions):
    out = bits.clone()
    out[list(positions)] = 1 - out[list(positions)]
    return out


def _manifest(reader) -> dict:
    data = json.loads(reader.json())
    return data["manifests"][data["active_manifest"]] | {"label": data["active_manifest"]}


def test_a_stripped_image_leads_back_to_its_registered_record(server, models, signed):
    row = signed["manifests"][0]
    image = signed["root"] / "out" / row["file"]
    with open(image, "rb") as f:  # the signed copy carries its manifest ...
        assert _manifest(c2pa.Reader("image/png", f))["label"] == row["manifest_id"]
    bare = _stripped(image)
    with pytest.raises(c2pa.C2paError):  # ... the stripped one carries none
        c2pa.Reader("image/png", io.BytesIO(bare))
    with server.client() as c:
        algs = c.get("/services/supportedAlgorithms").json()
        assert algs == {"watermarks": [{"alg": SCALABLE_ALG}, {"alg": ARTIFICIAL_ALG}], "fingerprints": []}
        r = c.post("/matches/byContent", params={"maxResults": 100}, content=bare,
                   headers={"Content-Type": "image/png"})
        assert r.status_code == 200, r.text
        matches = r.json()["matches"]
        ids = {m["manifestId"] for m in matches}
        assert ids == {m["manifest_id"] for m in signed["manifests"]}  # every manifest of model #1, nothing else
        assert all(90 <= m["similarityScore"] <= 100 for m in matches)
        got = c.get(f"/manifests/{row['manifest_id']}")
    assert got.status_code == 200 and got.headers["content-type"] == "application/c2pa"
    assert got.content == Registry(models["registry"]).manifest_store(row["manifest_id"])
    manifest = _manifest(c2pa.Reader("image/png", io.BytesIO(bare), got.content))  # c2pa-python reads it back
    assert manifest["label"] == row["manifest_id"]
    assertions = {a["label"]: a["data"] for a in manifest["assertions"]}
    alice = models["issued"][0]
    assert assertions[RECORD_ASSERTION]["fp_id"] == alice["fp_id"] and assertions[RECORD_ASSERTION]["who"] == "alice"
    assert assertions[RECORD_ASSERTION]["fingerprint"] == alice["bits_hex"]
    (block,) = assertions["c2pa.soft-binding"]["blocks"]
    assert assertions["c2pa.soft-binding"]["alg"] == SCALABLE_ALG and block["value"] == row["value"]


def test_by_binding_applies_the_attribution_rule(server, models, signed):
    alice, bob = (Registry(models["registry"]).get(m["fp_id"]) for m in models["issued"][:2])
    with server.client() as c:
        def ids(value: str, alg: str = SCALABLE_ALG) -> set:
            r = c.get("/matches/byBinding", params={"alg": alg, "value": value, "maxResults": 100})
            assert r.status_code == 200, r.text
            return {m["manifestId"] for m in r.json()["matches"]}

        mine = {m["manifest_id"] for m in signed["manifests"]}
        assert ids(encode_value(alice.bits)) == mine
        # a "+" of base64 left unencoded in the query (it reads as a space): alice's bits with two flipped, which keep
        # the "+" her fingerprint starts with (benchmarks/perf/service_kit.make_models)
        plus = next(v for i in range(32) for j in range(i + 1, 32)
                    if "+" in (v := encode_value(_flipped(alice.bits, i, j))))
        r = c.get(f"/matches/byBinding?alg={SCALABLE_ALG}&value={plus}&maxResults=100")
        assert r.status_code == 200 and {m["manifestId"] for m in r.json()["matches"]} == mine, r.text
        # the rule of `ganprint attribute`: attributed when the matching bits reach the Bonferroni threshold
        need = match_threshold(32, 1e-6, len(Registry(models["registry"]).list()))
        for matches, want in ((need, mine), (need - 1, set())):
            near = alice.bits.clone()
            near[:32 - matches] = 1 - near[:32 - matches]
            assert ids(encode_value(near)) == want, matches
        assert ids(encode_value(1 - alice.bits)) == set()  # no bit in common
        assert ids(encode_value(bob.bits)) == set()  # bob's model: attributed, but no manifest kept for it
        r = c.post("/matches/byBinding", json={"alg": SCALABLE_ALG, "value": encode_value(alice.bits)},
                   params={"maxResults": 3})
        assert r.status_code == 200 and len(r.json()["matches"]) == 3
        # the data set 'faces' has 8 bits: no 8-bit match reaches p <= 1e-6, so even its own value matches nothing
        assert ids(base64.b64encode(b"\x3c").decode(), ARTIFICIAL_ALG) == set()


@pytest.mark.parametrize("call, status, words", [
    (lambda c: c.get("/matches/byBinding", params={"alg": "com.example.other.1", "value": "AAAAAA=="}), 400,
     "not a ganprint soft-binding algorithm"),
    (lambda c: c.get("/matches/byBinding", params={"alg": SCALABLE_ALG, "value": "not base64!"}), 400, "base64"),
    (lambda c: c.get("/matches/byBinding", params={"alg": SCALABLE_ALG, "value": "AAAA"}), 400, "32-bit"),
    (lambda c: c.get("/matches/byBinding", params={"alg": ARTIFICIAL_ALG, "value": "AAAA"}), 400, "data set"),
    (lambda c: c.get("/matches/byBinding", params={"value": "AAAA"}), 422, "alg"),
    (lambda c: c.get("/matches/byBinding", params={"alg": SCALABLE_ALG, "value": "AAAAAA==", "maxResults": 0}), 422,
     "maxResults"),
    (lambda c: c.get("/manifests/urn:c2pa:00000000-0000-4000-8000-000000000000"), 404, "no manifest"),
    (lambda c: c.get("/manifests/not-a-label"), 400, "manifest label"),
    (lambda c: c.post("/matches/byContent", content=b"hello", headers={"Content-Type": "text/plain"}), 415,
     "image/*"),
    (lambda c: c.post("/matches/byContent", content=b"hello, not an image", headers={"Content-Type": "image/png"}),
     415, "not an image"),
    (lambda c: c.post("/matches/byContent", content=b"", headers={"Content-Type": "image/png"}), 415, "empty"),
    (lambda c: c.post("/matches/byContent", params={"alg": "x.y.1"}, content=b"\x89PNG\r\n\x1a\n",
                      headers={"Content-Type": "image/png"}), 400, "`alg`"),
])
def test_bad_queries_get_4xx_and_the_server_keeps_serving(server, call, status, words):
    with server.client() as c:
        r = call(c)
        assert r.status_code == status, r.text
        assert words in r.json()["error"], r.text
        assert c.get("/services/supportedAlgorithms").status_code == 200


def test_a_clean_photo_matches_nothing(server, models, signed):
    with server.client() as c:
        r = c.post("/matches/byContent", content=models["photos"][0].read_bytes(),
                   headers={"Content-Type": "image/png"})
    assert r.status_code == 200 and r.json() == {"matches": []}


def test_a_data_set_value_matches_its_manifests_at_a_reachable_fpr(models, tmp_path):
    """At --fpr 0.01 an 8-bit data-set fingerprint can match (8 of 8 bits: p = 2^-8); 7 of 8 cannot."""
    reg = Registry(models["registry"])
    faces = next(d for d in reg.datasets() if d.name == "faces")
    label = "urn:c2pa:5d1b4a52-0f6e-4c53-9d7e-3f1c2b0a9e77"
    if not [m for m in reg.manifests_of(ds_id=faces.ds_id) if m.manifest_id == label]:
        reg.add_manifest(label, ARTIFICIAL_ALG, encode_value(faces.bits), b"a manifest store", ds_id=faces.ds_id)
    srv = Server(["--registry", models["registry"], "--stega-decoder", str(models["stega"]), "--fpr", "0.01"],
                 tmp_path / "s.log")
    try:
        with srv.client() as c:
            assert c.get("/services/supportedAlgorithms").json()["watermarks"] == [{"alg": ARTIFICIAL_ALG}]
            r = c.get("/matches/byBinding", params={"alg": ARTIFICIAL_ALG, "value": encode_value(faces.bits)})
            assert r.json() == {"matches": [{"manifestId": label, "similarityScore": 100}]}
            off = faces.bits.clone()
            off[0] = 1 - off[0]
            r = c.get("/matches/byBinding", params={"alg": ARTIFICIAL_ALG, "value": encode_value(off)})
            assert r.json() == {"matches": []}
            r = c.get("/matches/byBinding", params={"alg": SCALABLE_ALG, "value": "AAAAAA=="})
            assert r.status_code == 400 and "scalable_decoder" in r.json()["error"]
            assert c.get(f"/manifests/{label}").content == b"a manifest store"
    finally:
        srv.stop()
