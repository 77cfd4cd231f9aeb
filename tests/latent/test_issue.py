"""Issuing latent decoders: each issued file is a plain autoencoder that decodes as the shared model does with its
fingerprint, recorded in the registry with its fingerprint, id and base model in its metadata."""

import json

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

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
from ganprint.verification.detector import Detector
from tests.conftest import write_image_folder
from tests.latent import kit

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


@pytest.fixture(scope="module")
def issued3(tmp_path_factory):
    """kit's models with three latent decoders issued from the shared one, and folders of their images, of the
    original decoder's and of photos."""
    root = tmp_path_factory.mktemp("issued3")
    paths = kit.write_models(root / "models")
    reg = root / "reg.sqlite"
    rows = [ganprint.issue(paths["shared"], reg, root / "issued", who=w) for w in ("ann", "bob", "cy")]
    data = root / "data"
    for row in rows:
        kit.write_decoded(load_export(row["issued_path"])[0], kit.latents(3, seed=row["fp_id"]), data,
                          f"issued{row['fp_id']}")
    original = kit.write_decoded(load_export(paths["original"])[0], kit.latents(3, seed=7), data, "original")
    photos = write_image_folder(data / "photos", n=3)
    return paths, reg, rows, data, original + photos


def test_attribute_reads_latent_issued_decoders_with_the_fingerprint_decoder(issued3, tmp_path):
    paths, reg, rows, data, negatives = issued3
    r = CliRunner().invoke(main, ["attribute", "--model", str(paths["decoder"]), "--registry", str(reg), "--data",
                                  str(data), "--outdir", str(tmp_path / "a"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["issued"] == 3 and summary["bits"] == kit.K and summary["images"] == 15
    got = {row["file"]: row for row in map(json.loads, (tmp_path / "a" / "attributions.jsonl").open())}
    for path in negatives:  # the original decoder's images and photos name nobody
        assert got[path.relative_to(data).as_posix()]["attributed"] == "unknown"
    # `check` answers every image as attribute does (the same decoder, registry and p-values)
    det = Detector.from_file(paths["decoder"], registry=reg)
    for name, row in got.items():
        (checked,) = det.detect([Image.open(data / name)])
        assert {k: checked[k] for k in row if k != "file"} == {k: v for k, v in row.items() if k != "file"}


def test_attribute_refuses_a_registry_of_another_length(issued3, tiny_stega_decoder, tmp_path):
    _, reg, _, data, _ = issued3
    with pytest.raises(GanprintError, match="32-bit fingerprints but decoder .* reads 8 bits"):
        ganprint.attribute(tiny_stega_decoder, reg, data, tmp_path / "a")


def test_check_reads_an_issued_decoders_fingerprint(issued3):
    paths, _, rows, data, _ = issued3
    r = CliRunner().invoke(main, ["check", *map(str, sorted(data.glob("issued1-*.png"))), "--model",
                                  str(paths["decoder"]), "--fingerprint", rows[0]["bits_hex"], "--json"])
    lines = [json.loads(line) for line in r.output.splitlines() if line.startswith("{")]
    assert len(lines) == 3 and all(0 <= row["matches"] <= kit.K for row in lines)
    assert r.exit_code == (0 if all(row["detected"] for row in lines) else 1), r.output
