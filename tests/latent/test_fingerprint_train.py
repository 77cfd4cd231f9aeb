"""Fingerprint fine-tuning of a latent decoder: it learns, resumes exactly, leaves the original alone, and its
exports are read by the rest of ganprint."""

import dataclasses
import json

import pytest
import torch

from ganprint.core.artifacts import load_export, save_export
from ganprint.core.errors import GanprintError
from ganprint.latent import autoencoder as ae
from ganprint.latent.fingerprint_config import PRESETS, resolve_config
from ganprint.latent.fingerprint_train import (
    DECODER_EXPORT,
    MODEL_EXPORT,
    load_trained,
    read_autoencoder,
    train_latent_fingerprint,
)

pytest.importorskip("diffusers")

AE = ae.AutoencoderConfig(resolution=16, channels=(32, 32), latent_channels=4, mid_attention=False)
SMOKE = dataclasses.replace(PRESETS["lfp-smoke"], device="cpu")


def _images(n: int = 40, seed: int = 0) -> torch.Tensor:
    """Smooth random colour fields (what a small autoencoder reconstructs), uint8 [n, 3, 16, 16]."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g)
    return (torch.nn.functional.interpolate(low, size=16, mode="bilinear") * 255).round().to(torch.uint8)


@pytest.fixture(scope="module")
def ae_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ae") / "ae.safetensors"
    save_export(path, ae.build_autoencoder(AE).eval(), ae.EXPORT_KIND, ae.export_config(AE))
    return path


def _rows(outdir):
    return [json.loads(line) for line in (outdir / "stats.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(ae_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    before = {k: v.clone() for k, v in read_autoencoder(ae_file)[1].state_dict().items()}
    # five images: four to train on, one held out; a set this small is learned in the test's hundred steps
    row = train_latent_fingerprint(dataclasses.replace(SMOKE, kimg=0.8), ae_file, _images(5), out)
    return out, row, before


def test_bit_accuracy_rises_above_chance_and_images_stay_close(trained):
    out, row, _ = trained
    rows = _rows(out)
    # (a hundred steps only start the climb: the figures of real runs are in benchmarks/experiments/latent)
    assert rows[-1]["bit_acc_train"] >= 0.55 > rows[0]["bit_acc_train"]
    assert rows[-1]["loss/bits"] < rows[0]["loss/bits"]
    assert rows[0]["w_img"] == 0 and rows[-1]["psnr"] > 10  # the image terms wait for the gate
    assert row == rows[-1]


def test_the_frozen_original_is_never_changed(trained, ae_file):
    out, _, before = trained
    after = read_autoencoder(ae_file)[1].state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    model, _ = load_trained(out)
    # the trained copy's encoder is the original's, untouched (only the mapping + affine layers are trained)
    enc = {k: v for k, v in model.autoencoder.state_dict().items() if not k.startswith("decoder")}
    assert all(torch.equal(v, before[k]) for k, v in enc.items())


def test_the_stega_decoder_reads_the_modulated_images_through_the_inference_adapter(trained):
    from ganprint.inference.decoders import Decoder, DecoderOptions

    out, _, _ = trained
    model, E = load_trained(out)
    dec = Decoder(out / DECODER_EXPORT, DecoderOptions(layout="nchw"))
    assert (dec.k, dec.resolution, dec.kind) == (16, 16, "stega-decoder")
    g = torch.Generator().manual_seed(5)
    c = torch.randint(0, 2, (16, 16), generator=g).float()
    with torch.no_grad():
        z = ae.encode(model.autoencoder, _images(16, seed=3).float() / 127.5 - 1)
        x = model.decode(z, c)
    u8 = (x * 127.5 + 128).clamp(0, 255).floor().to(torch.uint8)
    with torch.no_grad():
        own = (E.dec(u8.float() / 255) > 0).float()
    assert torch.equal(dec.bits(u8), own)  # the adapter reads what the trainer's decoder reads
    _, config, meta = load_export(out / MODEL_EXPORT, kind="latent-modulated")
    assert meta["ganprint.kind"] == "latent-modulated" and config["modulation"]["fingerprint_length"] == 16


def test_resuming_equals_an_uninterrupted_run(ae_file, tmp_path):
    cfg = dataclasses.replace(SMOKE, kimg=0.064, tick_kimg=0.016, snapshot_kimg=0.032, eval_images=4, batch_size=4,
                              img_gate_kimg=0.024)  # the gate opens in the second half
    data = _images(12)
    whole, part = tmp_path / "whole", tmp_path / "part"
    train_latent_fingerprint(cfg, ae_file, data, whole)
    train_latent_fingerprint(dataclasses.replace(cfg, kimg=0.032), ae_file, data, part)
    train_latent_fingerprint(cfg, ae_file, data, part)  # the same command with the full length resumes
    a, b = load_trained(whole), load_trained(part)
    for x, y in zip(a, b):
        sa, sb = x.state_dict(), y.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    timing = ("time_s", "sec_per_kimg")
    assert [{k: v for k, v in r.items() if k not in timing} for r in _rows(whole)] == \
        [{k: v for k, v in r.items() if k not in timing} for r in _rows(part)]


def test_bad_inputs_are_refused_naming_the_field(ae_file, tmp_path):
    dec = tmp_path / "dec.safetensors"
    from ganprint.nets.stega import StegaConfig, StegaDecoderOnly

    save_export(dec, StegaDecoderOnly(StegaConfig(16, 16)), "stega-decoder", {"resolution": 16,
                                                                               "fingerprint_length": 16})
    with pytest.raises(GanprintError, match="`autoencoder`.*stega-decoder"):
        train_latent_fingerprint(SMOKE, dec, _images(), tmp_path / "a")
    with pytest.raises(GanprintError, match="`data`.*does not exist"):
        train_latent_fingerprint(SMOKE, ae_file, tmp_path / "missing", tmp_path / "b")
    with pytest.raises(GanprintError, match="`autoencoder`.*does not exist"):
        train_latent_fingerprint(SMOKE, tmp_path / "none.safetensors", _images(), tmp_path / "c")
    with pytest.raises(GanprintError, match="`layers`"):
        resolve_config("lfp-smoke", layers="down")
    with pytest.raises(GanprintError, match="`preset`"):
        resolve_config("lfp-9")
    assert not any((tmp_path / n).exists() for n in "abc")


def test_a_retrained_autoencoder_at_the_same_path_is_not_resumed_against(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "ae.safetensors"
    save_export(path, ae.build_autoencoder(AE).eval(), ae.EXPORT_KIND, ae.export_config(AE))
    cfg = dataclasses.replace(SMOKE, kimg=0.016, tick_kimg=0.008, snapshot_kimg=0.008, eval_images=4, batch_size=4)
    train_latent_fingerprint(cfg, path, _images(12), tmp_path / "run")
    torch.manual_seed(1)  # the same config, other weights, written where the first was
    save_export(path, ae.build_autoencoder(AE).eval(), ae.EXPORT_KIND, ae.export_config(AE))
    with pytest.raises(GanprintError, match="autoencoder_sha256"):
        train_latent_fingerprint(dataclasses.replace(cfg, kimg=0.032), path, _images(12), tmp_path / "run")


def test_images_of_another_side_name_the_autoencoder(ae_file, tmp_path):
    big = torch.zeros(10, 3, 32, 32, dtype=torch.uint8)
    with pytest.raises(GanprintError, match=r"expected \(3, 16, 16\); check `autoencoder`"):
        train_latent_fingerprint(SMOKE, ae_file, big, tmp_path / "run")
