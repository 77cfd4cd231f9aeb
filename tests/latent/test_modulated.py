"""The fingerprint-modulated autoencoder: a batch of fingerprints decodes as their folded copies do, exactly."""

import pytest
import torch

from ganprint.core.artifacts import load_export, save_export
from ganprint.core.errors import GanprintError
from ganprint.latent.autoencoder import ISSUED_KIND, AutoencoderConfig, build_autoencoder, decode, export_config
from ganprint.latent.modulated import (
    EXPORT_KIND,
    ModulatedAutoencoder,
    ModulationConfig,
    from_autoencoder,
    modulated_convs,
)
from ganprint.latent import modulated

pytest.importorskip("diffusers")

AE = AutoencoderConfig(resolution=16, channels=(32, 32), latent_channels=4)


@pytest.mark.parametrize("demodulate", [False, True])
@pytest.mark.parametrize("layers", ["all", "up"])
def test_folded_copy_decodes_as_the_modulated_model(demodulate, layers):
    torch.manual_seed(0)
    m = ModulatedAutoencoder(AE, ModulationConfig(fingerprint_length=16, demodulate=demodulate, layers=layers,
                                                  style_gain=1.0)).eval()
    z = torch.randn(3, 4, 8, 8)
    c = torch.randint(0, 2, (3, 16)).float()
    with torch.no_grad():
        batch = m.decode(z, c)
        for i in range(3):
            alone = decode(m.fold(c[i]), z[i:i + 1])
            assert (batch[i:i + 1] - alone).abs().max() * 127.5 < 0.05  # far under one grey level
    assert (batch[0] - batch[1]).abs().mean() > 1e-3  # the fingerprints do change the images


def test_small_styles_start_near_the_original_decoder():
    torch.manual_seed(1)
    vae = build_autoencoder(AE).eval()
    m = from_autoencoder(vae, AE, ModulationConfig(fingerprint_length=16, style_gain=1e-3)).eval()
    z = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        assert (m.decode(z, torch.ones(2, 16)) - decode(vae, z)).abs().max() < 0.02
        assert all(p.data_ptr() != q.data_ptr() for p, q in zip(vae.parameters(), m.autoencoder.parameters()))


def test_up_layers_are_a_subset():
    vae = build_autoencoder(AE)
    every, up = modulated_convs(vae, "all"), modulated_convs(vae, "up")
    assert 0 < len(up) < len(every) and all(n.startswith(("decoder.up_blocks", "decoder.conv_out")) for n, _ in up)


def test_modulated_decoder_refuses_plain_use_and_bad_fingerprints():
    m = ModulatedAutoencoder(AE, ModulationConfig(fingerprint_length=16))
    z = torch.randn(1, 4, 8, 8)
    with pytest.raises(GanprintError, match="decode"):
        decode(m.autoencoder, z)
    with pytest.raises(GanprintError, match=r"\[N, 16\]"):
        m.decode(z, torch.ones(1, 15))
    with pytest.raises(GanprintError, match="16"):
        m.fold(torch.ones(17))
    with pytest.raises(GanprintError, match="`layers`"):
        ModulationConfig(layers="down").validate()


def test_exports_round_trip(tmp_path):
    torch.manual_seed(2)
    m = ModulatedAutoencoder(AE, ModulationConfig(fingerprint_length=16, style_gain=1.0)).eval()
    save_export(tmp_path / "m.safetensors", m, EXPORT_KIND, modulated.export_config(m.ae_cfg, m.cfg))
    again, _, _ = load_export(tmp_path / "m.safetensors", kind=EXPORT_KIND)
    c = torch.ones(1, 16)
    z = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        assert torch.equal(m.decode(z, c), again.decode(z, c))
        save_export(tmp_path / "i.safetensors", m.fold(c), ISSUED_KIND, export_config(AE))
        issued, _, _ = load_export(tmp_path / "i.safetensors", kind=ISSUED_KIND)
        assert (decode(issued, z) - m.decode(z, c)).abs().max() * 127.5 < 0.05
