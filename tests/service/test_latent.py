"""`ganprint serve` with a latent-modulated shared model: it issues latent decoders, serves their files, and
/v1/attribute reads images with the fingerprint decoder (a stega-decoder) exactly as `ganprint attribute` does."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from click.testing import CliRunner

from benchmarks.perf.service_kit import Server
from ganprint.cli import main
from ganprint.core.artifacts import load_export
from ganprint.core.fingerprints import parse_bits
from ganprint.latent.autoencoder import ISSUED_KIND, decode
from ganprint.registry.issued import FINGERPRINT_META
from ganprint.registry.store import Registry
from ganprint.scalable.attribute import attribute_images
from tests.latent import kit

pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def latent_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("latent-service")
    paths = kit.write_models(root / "models")
    reg = root / "registry.sqlite"
    token = Registry(reg).create_token("ops")  # issue + download:all
    srv = Server(["--registry", str(reg), "--scalable-decoder", str(paths["decoder"]), "--base-model",
                  str(paths["shared"]), "--models-dir", str(root / "issued")], root / "server.log")
    yield srv, paths, reg, token, root
    srv.stop()


def test_the_server_issues_latent_decoders_and_serves_their_files(latent_server, tmp_path):
    srv, paths, reg, token, _ = latent_server
    shared, _, _ = load_export(paths["shared"])
    auth = {"Authorization": f"Bearer {token}"}
    z = kit.latents(2, seed=5)
    with srv.client() as c:
        for who in ("alice", "bob"):
            r = c.post("/v1/issue", json={"who": who}, headers=auth)
            assert r.status_code == 200, r.text
            new = r.json()
            d = c.get(f"/v1/models/{new['id']}/download", headers=auth)
            assert d.status_code == 200 and hashlib.sha256(d.content).hexdigest() == new["sha256"]
            (tmp_path / f"{who}.safetensors").write_bytes(d.content)
            vae, _, meta = load_export(tmp_path / f"{who}.safetensors", kind=ISSUED_KIND)
            bits = parse_bits(meta[FINGERPRINT_META], kit.K).float()
            with torch.no_grad():  # the downloaded decoder is the shared one with the fingerprint folded in
                got = ((decode(vae, z).clamp(-1, 1) + 1) * 127.5).round()
                want = ((shared.decode(z, bits.expand(2, -1)).clamp(-1, 1) + 1) * 127.5).round()
            assert (got - want).abs().max() <= 1
    assert [r.who for r in Registry(reg, create=False).list()] == ["alice", "bob"]


def test_attribute_over_http_equals_the_command(latent_server, tmp_path):
    srv, paths, reg, token, root = latent_server
    with srv.client() as c:
        assert c.post("/v1/issue", json={"who": "carol"}, headers={"Authorization": f"Bearer {token}"}).is_success
    original, _, _ = load_export(paths["original"])
    files = kit.write_decoded(original, kit.latents(4, seed=9), tmp_path / "imgs", "original")
    with srv.client() as c:
        r = c.post("/v1/attribute", files=[("files", (p.name, p.read_bytes(), "image/png")) for p in files])
    assert r.status_code == 200, r.text
    got = r.json()
    attribute_images(paths["decoder"], reg, tmp_path / "imgs", tmp_path / "a", device="cpu")
    want = [json.loads(x) for x in (tmp_path / "a" / "attributions.jsonl").read_text().splitlines()]
    assert len(got["results"]) == len(want) == 4 and got["bits"] == kit.K
    for http_row, cli_row in zip(got["results"], want):
        assert {k: http_row[k] for k in cli_row if k != "file"} == {k: v for k, v in cli_row.items() if k != "file"}
    # the unfingerprinted decoder's images name nobody
    assert {row["attributed"] for row in got["results"]} == {"unknown"}


def test_serve_refuses_a_shared_model_its_decoder_cannot_read(latent_server, models, tmp_path):
    _, paths, _, _, _ = latent_server
    for base, dec in ((paths["shared"], models["decoder"]), (models["G"], paths["decoder"])):
        r = CliRunner().invoke(main, ["serve", "--registry", str(tmp_path / "r.sqlite"), "--scalable-decoder",
                                      str(dec), "--base-model", str(base), "--port", "0"])
        assert r.exit_code != 0 and "give the decoder trained with that model" in r.output, r.output
