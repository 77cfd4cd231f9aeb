"""`ganprint sign-c2pa` on the outputs of `ganprint generate` (an issued model) and `ganprint embed`: signed copies
that c2pa-python validates, their stores kept in the registry, and what it refuses, by field."""

from __future__ import annotations

import io
import json

import pytest
from click.testing import CliRunner
from PIL import Image

from ganprint.artificial.register import embed_registered
from ganprint.artificial.embed import EmbedSpec
from ganprint.cli import main
from ganprint.core.errors import GanprintError
from ganprint.provenance.c2pa import RECORD_ASSERTION, RESULTS, C2paSigning, embed_and_sign, sign_images
from ganprint.provenance.softbinding import ARTIFICIAL_ALG, SCALABLE_ALG, encode_value
from ganprint.registry.store import Registry
from benchmarks.perf.service_kit import make_models
from tests.provenance.certs import make_chain

c2pa = pytest.importorskip("c2pa", reason="the c2pa extra: pip install 'ganprint[c2pa]'")


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    return make_chain(tmp_path_factory.mktemp("chain"))


@pytest.fixture(scope="module")
def scalable(tmp_path_factory):
    return make_models(tmp_path_factory.mktemp("models"), images=3, photos=4)


def _read(path, ca=None) -> dict:
    """c2pa-python's report on a signed file; with `ca`, the test CA is its one trust anchor."""
    context = None
    if ca is not None:
        settings = c2pa.Settings.from_json(json.dumps({"verify": {"verify_trust": True},
                                                       "trust": {"trust_anchors": ca.read_text()}}))
        context = c2pa.Context(settings)
    with open(path, "rb") as f:
        return json.loads(c2pa.Reader("image/png", f, None, context=context).json())


def test_generated_images_of_an_issued_model_are_signed_and_kept(scalable, chain, tmp_path):
    cert, key, ca = chain
    before = {p.name: p.read_bytes() for p in (scalable["root"] / "alice-images").iterdir()}
    r = CliRunner().invoke(main, ["sign-c2pa", "--images", str(scalable["root"] / "alice-images"), "--outdir",
                                  str(tmp_path / "s"), "--registry", scalable["registry"], "--cert", str(cert),
                                  "--key", str(key)])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output.strip().splitlines()[-1])["signed"] == 3
    rows = [json.loads(x) for x in (tmp_path / "s" / RESULTS).read_text().splitlines()]
    alice = Registry(scalable["registry"]).get(scalable["issued"][0]["fp_id"])
    assert [r["file"] for r in rows] == ["seed000000.png", "seed000001.png", "seed000002.png"]
    data = _read(tmp_path / "s" / rows[0]["file"], ca)
    manifest = data["manifests"][data["active_manifest"]]
    assert data["active_manifest"] == rows[0]["manifest_id"] and data["validation_state"] == "Trusted"
    facts = {a["label"]: a["data"] for a in manifest["assertions"]}
    assert facts["c2pa.soft-binding"]["alg"] == SCALABLE_ALG
    assert facts["c2pa.soft-binding"]["blocks"][0]["value"] == encode_value(alice.bits) == rows[0]["value"]
    assert facts[RECORD_ASSERTION]["fp_id"] == alice.fp_id and facts[RECORD_ASSERTION]["who"] == "alice"
    assert facts[RECORD_ASSERTION]["registry_id"] == Registry(scalable["registry"]).identity()
    kept = Registry(scalable["registry"]).manifests_of(fp_id=alice.fp_id)
    assert {m.manifest_id for m in kept} >= {r["manifest_id"] for r in rows}
    pixels = [Image.open(tmp_path / "s" / r["file"]).convert("RGB").tobytes() for r in rows]
    assert pixels == [Image.open(io.BytesIO(before[r["file"]])).convert("RGB").tobytes() for r in rows]
    assert {p.name: p.read_bytes() for p in (scalable["root"] / "alice-images").iterdir()} == before  # inputs intact


def test_an_embed_folder_is_signed_for_its_registered_data_set(tiny_stega_model, image_folder, chain, tmp_path):
    cert, key, _ = chain
    reg = str(tmp_path / "reg.sqlite")
    embed_registered(EmbedSpec(model=tiny_stega_model, data=image_folder, outdir=tmp_path / "e", identical=True,
                               fingerprint="0x5a"), reg, "faces")
    with pytest.raises(GanprintError, match="give `dataset`"):
        sign_images(tmp_path / "e", tmp_path / "s0", reg, cert, key)
    with pytest.raises(GanprintError, match="no data set named 'cats'"):
        sign_images(tmp_path / "e", tmp_path / "s1", reg, cert, key, dataset="cats")
    out = sign_images(tmp_path / "e", tmp_path / "s", reg, cert, key, dataset="faces")
    faces = Registry(reg).datasets()[0]
    assert out["signed"] == len(list((tmp_path / "e" / "fingerprinted_images").rglob("*.png"))) >= 3
    assert {r["alg"] for r in out["manifests"]} == {ARTIFICIAL_ALG} and {r["ds_id"] for r in out["manifests"]} == \
        {faces.ds_id}
    first = out["manifests"][0]
    assert Registry(reg).manifest_store(first["manifest_id"])[:4] != b""  # kept
    data = _read(tmp_path / "s" / first["file"])
    assert data["active_manifest"] == first["manifest_id"]


def test_what_it_refuses(scalable, chain, tmp_path):
    cert, key, _ = chain
    images = scalable["root"] / "alice-images"
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    cases = [
        (dict(outdir=tmp_path / "full"), "`outdir`.*not empty"),
        (dict(images=scalable["root"] / "photos"), "neither fingerprints.jsonl"),
        (dict(cert=key), "`cert`.*no PEM certificate"),
        (dict(key=cert), "`key`.*no PEM private key"),
        (dict(signing_alg="md5"), "`signing_alg`"),
        (dict(outdir=images / "inside"), "outdir"),
    ]
    for change, words in cases:
        args = {**dict(images=images, outdir=tmp_path / "new", registry=scalable["registry"], cert=cert, key=key),
                **change}
        with pytest.raises(GanprintError, match=words):
            sign_images(**args)
    assert not (tmp_path / "new").exists()


def test_embed_signs_copies_when_asked(tiny_stega_model, image_folder, chain, tmp_path):
    cert, key, _ = chain
    reg = str(tmp_path / "reg.sqlite")
    spec = EmbedSpec(model=tiny_stega_model, data=image_folder, outdir=tmp_path / "e", identical=True,
                     fingerprint="0x5a")
    out = embed_and_sign(spec, reg, "faces", C2paSigning(tmp_path / "signed", cert, key))
    images = sorted((tmp_path / "e" / "fingerprinted_images").rglob("*.png"))
    assert out["c2pa"]["signed"] == len(images) >= 3 and out["registered"]["name"] == "faces"
    first = out["c2pa"]["manifests"][0]
    assert _read(tmp_path / "signed" / first["file"])["active_manifest"] == first["manifest_id"]
    assert Registry(reg).manifest_store(first["manifest_id"])


def test_embed_refuses_signing_it_cannot_do_before_embedding(tiny_stega_model, image_folder, chain, tmp_path):
    cert, key, _ = chain
    spec = EmbedSpec(model=tiny_stega_model, data=image_folder, outdir=tmp_path / "e", identical=True)
    reg = str(tmp_path / "reg.sqlite")
    cases = [
        (lambda: C2paSigning.of(c2pa_outdir=tmp_path / "s"), "give `c2pa_cert` and `c2pa_key` too"),
        (lambda: embed_and_sign(spec, None, None, C2paSigning(tmp_path / "s", cert, key)), "`registry` and `name`"),
        (lambda: embed_and_sign(spec, reg, "x", C2paSigning(tmp_path / "s", key, key)), "`c2pa_cert`.*no PEM"),
        (lambda: embed_and_sign(spec, reg, "x", C2paSigning(tmp_path / "e" / "s", cert, key)), "c2pa_outdir"),
        # a registry inside the signed copies' folder would make it non-empty after the embedding
        (lambda: embed_and_sign(spec, str(tmp_path / "s" / "reg.sqlite"), "x", C2paSigning(tmp_path / "s", cert, key)),
         "`c2pa_outdir`.*contains `registry`"),
    ]
    for call, words in cases:
        with pytest.raises(GanprintError, match=words):
            call()
    assert not (tmp_path / "e").exists() and C2paSigning.of() is None


def test_embed_command_signs_and_names_its_flags(tiny_stega_model, image_folder, chain, tmp_path):
    cert, key, _ = chain
    base = ["embed", "--model", str(tiny_stega_model), "--data", str(image_folder), "--identical",
            "--registry", str(tmp_path / "reg.sqlite"), "--name", "faces"]
    half = CliRunner().invoke(main, [*base, "--outdir", str(tmp_path / "e0"), "--c2pa-outdir", str(tmp_path / "s0")])
    assert half.exit_code == 1 and "give --c2pa-cert and --c2pa-key too" in half.output, half.output
    ok = CliRunner().invoke(main, [*base, "--outdir", str(tmp_path / "e"), "--c2pa-outdir", str(tmp_path / "s"),
                                   "--c2pa-cert", str(cert), "--c2pa-key", str(key)])
    assert ok.exit_code == 0, ok.output
    rows = [json.loads(line) for line in (tmp_path / "s" / RESULTS).read_text().splitlines()]
    assert len(rows) == len(list((tmp_path / "e" / "fingerprinted_images").rglob("*.png")))


def test_generate_signs_an_issued_models_images_and_refuses_others(scalable, chain, tmp_path):
    cert, key, ca = chain
    issued = scalable["issued"][0]["issued_path"]
    sign = ["--c2pa-outdir", str(tmp_path / "s"), "--c2pa-cert", str(cert), "--c2pa-key", str(key)]
    base = ["generate", "--model", issued, "--seeds", "0-1", "--device", "cpu"]
    no_reg = CliRunner().invoke(main, [*base, "--outdir", str(tmp_path / "g0"), *sign])
    assert no_reg.exit_code == 1 and "--registry" in no_reg.output and not (tmp_path / "g0").exists()
    shared = CliRunner().invoke(main, ["generate", "--model", str(scalable["G"]), "--seeds", "0", "--outdir",
                                       str(tmp_path / "g1"), "--registry", scalable["registry"], *sign])
    assert shared.exit_code == 1 and "not an issued model" in shared.output
    lone = CliRunner().invoke(main, [*base, "--outdir", str(tmp_path / "g3"), "--registry", scalable["registry"]])
    assert lone.exit_code == 1 and "--registry is used only to sign" in lone.output and not (tmp_path / "g3").exists()
    Registry(tmp_path / "other.sqlite").issue(who="mallory", fingerprint_length=32)  # never issued this model
    other = CliRunner().invoke(main, [*base, "--outdir", str(tmp_path / "g2"), "--registry",
                                      str(tmp_path / "other.sqlite"), *sign])
    assert other.exit_code == 1 and "does not record" in other.output and not (tmp_path / "g2").exists()
    ok = CliRunner().invoke(main, [*base, "--outdir", str(tmp_path / "g"), "--registry", scalable["registry"], *sign])
    assert ok.exit_code == 0, ok.output
    rows = [json.loads(x) for x in (tmp_path / "s" / RESULTS).read_text().splitlines()]
    assert [r["file"] for r in rows] == ["seed000000.png", "seed000001.png"]
    assert {r["fp_id"] for r in rows} == {scalable["issued"][0]["fp_id"]}
    assert _read(tmp_path / "s" / rows[0]["file"], ca)["validation_state"] == "Trusted"


def test_an_issued_model_whose_metadata_names_no_registered_row_is_refused(scalable):
    from ganprint.provenance.c2pa import check_issued_in

    for fp_id in ("", "x", "-1", "0", "999999", "\u00b2", "9" * 30):  # damaged or hand-edited metadata: one clear line, no traceback
        with pytest.raises(GanprintError, match="does not record"):
            check_issued_in({"ganprint.fp_id": fp_id, "ganprint.fingerprint": "0x1"}, "m.safetensors",
                            scalable["registry"])
