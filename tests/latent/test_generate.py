"""Generating from latent-diffusion exports: per seed, any batch size, and another decoder of the same config."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("diffusers")

import ganprint
from ganprint.core.artifacts import load_export, save_export
from ganprint.core.errors import GanprintError
from ganprint.latent.autoencoder import AutoencoderConfig, build_autoencoder, export_config
from ganprint.latent.model import load_latent_diffusion, sample_latents


def _pixels(paths) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p)) for p in paths])


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "dpm"])
def test_latents_are_a_function_of_their_seed(tiny_latent_export, sampler):
    model = load_latent_diffusion(tiny_latent_export).double()
    seeds = [5, 0, 7]
    batched = sample_latents(model, seeds, sampler, 3)
    assert batched.shape == (3, 4, 8, 8) and batched.dtype == torch.float64
    # float64: the batch's summation order moves a latent by rounding only, far below a grey level
    assert torch.allclose(batched[2], sample_latents(model, [7], sampler, 3)[0], rtol=0, atol=1e-9)
    assert not torch.equal(batched[0], batched[1])


def test_images_do_not_depend_on_the_batch_size(tmp_path, tiny_latent_export):
    a = ganprint.generate(tiny_latent_export, [0, 1, 2], tmp_path / "a", batch_size=3, device="cpu", steps=3)
    b = ganprint.generate(tiny_latent_export, [0, 1, 2], tmp_path / "b", batch_size=1, device="cpu", steps=3,
                          sampler="ddpm")
    c = ganprint.generate(tiny_latent_export, [2], tmp_path / "c", batch_size=1, device="cpu", steps=3)
    assert _pixels(a).shape == (3, 16, 16, 3)
    assert np.array_equal(_pixels(a)[2], _pixels(c)[0]) and not np.array_equal(_pixels(a), _pixels(b))


def test_another_decoder_of_the_same_config_decodes_the_same_latents(tmp_path, tiny_latent_export,
                                                                     tiny_autoencoder_export):
    own = ganprint.generate(tiny_latent_export, [0, 1], tmp_path / "own", device="cpu", steps=2)
    same = ganprint.generate(tiny_latent_export, [0, 1], tmp_path / "same", device="cpu", steps=2,
                             decoder=tiny_autoencoder_export)
    assert np.array_equal(_pixels(own), _pixels(same))  # the model's own autoencoder, from its own file
    vae, config, _ = load_export(tiny_autoencoder_export)
    with torch.no_grad():  # an "issued" copy: same architecture, its decoder's last layer changed
        vae.decoder.conv_out.bias.add_(0.3)
    issued = save_export(tmp_path / "issued.safetensors", vae, "latent-autoencoder-issued", config)
    swapped = ganprint.generate(tiny_latent_export, [0, 1], tmp_path / "swapped", device="cpu", steps=2,
                                decoder=issued)
    diff = _pixels(swapped).astype(int) - _pixels(own).astype(int)
    assert diff.mean() > 10  # brighter: the same latents through the other decoder


def test_a_decoder_of_another_config_or_kind_is_refused_naming_both_files(tmp_path, tiny_latent_export,
                                                                          tiny_stega_model):
    other = AutoencoderConfig(16, (32, 32), 1, 4, 32, mid_attention=True)
    path = save_export(tmp_path / "other.safetensors", build_autoencoder(other), "latent-autoencoder",
                       export_config(other))
    with pytest.raises(GanprintError, match=r"`decoder` .*other.safetensors is not an autoencoder of the config of "
                                            r"`model` .*latent-diffusion.safetensors.*mid_attention: False \(model\) "
                                            r"vs True \(decoder\)"):
        ganprint.generate(tiny_latent_export, [0], tmp_path / "o", device="cpu", steps=1, decoder=path)
    with pytest.raises(GanprintError, match=r"`decoder` .* holds a 'stega' model"):
        ganprint.generate(tiny_latent_export, [0], tmp_path / "p", device="cpu", steps=1, decoder=tiny_stega_model)
    with pytest.raises(GanprintError, match=r"`trunc` is for GAN generators"):
        ganprint.generate(tiny_latent_export, [0], tmp_path / "q", device="cpu", steps=1, trunc=0.5)

