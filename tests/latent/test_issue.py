"""Issuing latent decoders: each issued file is a plain autoencoder that decodes as the shared model does with its
fingerprint, recorded in the registry with its fingerprint, id and base model in its metadata."""

import json

import pytest
import torch
from click.testing import CliRunner

import ganprint
from ganprint.cli import main
from ganprint.core.artifacts import load_export, save_export
from ganprint.core.errors import GanprintError
from ganprint.core.files import sha256_file
from ganprint.core.fingerprints import parse_bits
from ganprint.latent.autoencoder import ISSUED_KIND, AutoencoderConfig, decode
from ganprint.latent.modulated import EXPORT_KIND, ModulatedAutoencoder, ModulationConfig, export_config
from ganprint.registry.issued import BASE_MODEL_META, FINGERPRINT_META, FP_ID_META
from ganprint.registry.store import Registry

pytest.importorskip("diffusers")

AE = AutoencoderConfig(resolution=16, channels=(32, 32))
MOD = ModulationConfig(fingerprint_length=16, style_gain=1.0)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A shared latent-modulated export (untrained: folding is exact whatever the weights) and the model."""
    torch.manual_seed(0)
    model = ModulatedAutoencoder(AE, MOD).eval()
    path = tmp_path_factory.mktemp("shared") / "latent-modulated.safetensors"
    save_export(path, model, EXPORT_KIND, export_config(AE, MOD))
    return path, model


def _uint8(x: torch.Tensor) -> torch.Tensor:
    return ((x.clamp(-1, 1) + 1) * 127.5).round()


def test_issued_copies_decode_as_the_shared_model_with_their_fingerprint(shared, tmp_path):
    path, model = shared
    rows = [ganprint.issue(path, tmp_path / "reg.sqlite", tmp_path / "issued", who=f"user{i}") for i in range(3)]
    assert len({r["bits_hex"] for r in rows}) == 3
    z = torch.randn(4, AE.latent_channels, AE.latent_resolution, AE.latent_resolution)
    images = []
    for row in rows:
        vae, cfg, meta = load_export(row["issued_path"], kind=ISSUED_KIND)
        assert meta[FINGERPRINT_META] == row["bits_hex"] and meta[FP_ID_META] == str(row["fp_id"])
        assert meta[BASE_MODEL_META] == sha256_file(path) and cfg == {"autoencoder": AE.to_dict()}
        bits = parse_bits(row["bits_hex"], MOD.fingerprint_length).float()
        with torch.no_grad():
            issued = _uint8(decode(vae, z))
            wanted = _uint8(model.decode(z, bits.expand(len(z), -1)))
        assert (issued - wanted).abs().max() <= 1  # at most one grey level
        images.append(issued)
    assert (images[0] - images[1]).abs().mean() > 1  # distinct fingerprints, distinct images
    listed = Registry(tmp_path / "reg.sqlite", create=False).list()
    assert [r.fp_id for r in listed] == [r["fp_id"] for r in rows]
    assert all(r.model_sha256 == sha256_file(path) and r.issued_sha256 == sha256_file(r.issued_path) for r in listed)


def test_issue_command_issues_a_latent_decoder_and_registry_list_shows_it(shared, tmp_path):
    path, _ = shared
    reg, out = tmp_path / "reg.sqlite", tmp_path / "issued"
    r = CliRunner().invoke(main, ["issue", "--model", str(path), "--registry", str(reg), "--models-dir", str(out),
                                  "--who", "alice", "--fingerprint", "0x" + "a5" * 2])
    assert r.exit_code == 0, r.output
    row = json.loads(r.output.strip().splitlines()[-1])
    assert row["bits_hex"] == "0xa5a5" and row["who"] == "alice"
    assert load_export(row["issued_path"])[2]["ganprint.kind"] == ISSUED_KIND
    listed = CliRunner().invoke(main, ["registry", "list", str(reg)])
    assert listed.exit_code == 0 and "alice" in listed.output and "0xa5a5" in listed.output
    assert "1 fingerprint(s)" in listed.output


def test_issue_refuses_a_model_it_cannot_fold(tiny_stega_decoder, tmp_path):
    with pytest.raises(GanprintError, match="'stega-decoder'.*scalable-G or a latent-modulated"):
        ganprint.issue(tiny_stega_decoder, tmp_path / "reg.sqlite", tmp_path / "issued")
    assert not (tmp_path / "reg.sqlite").exists() and not (tmp_path / "issued").exists()


def test_a_registry_of_other_lengths_is_refused(shared, tmp_path):
    path, _ = shared
    reg = tmp_path / "reg.sqlite"
    Registry(reg).issue(fingerprint_length=8, model_sha256="0" * 64)
    with pytest.raises(GanprintError, match="8"):
        ganprint.issue(path, reg, tmp_path / "issued")
    assert len(Registry(reg, create=False).list()) == 1
