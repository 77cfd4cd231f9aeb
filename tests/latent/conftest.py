"""Fixtures of the latent diffusion tests: tiny configs and one tiny autoencoder and latent model per session."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ganprint.latent.config import AUTOENCODER_PRESETS, LATENT_PRESETS


def tiny_ae_config(**kw):
    """ae-smoke (16 px, two 32-wide levels, latents 4 x 8 x 8) with overrides."""
    return dataclasses.replace(AUTOENCODER_PRESETS["ae-smoke"], **kw).validate()


def tiny_ldm_config(**kw):
    """ldm-smoke (a two-level 32-wide UNet) with overrides; the trainer fits it to the autoencoder's latents."""
    return dataclasses.replace(LATENT_PRESETS["ldm-smoke"], **kw)


@pytest.fixture(scope="session")
def tiny_autoencoder_export(tmp_path_factory, sample_folder) -> Path:
    """ae-smoke trained for 16 images on the sample crops at 16 px (latent-autoencoder.safetensors)."""
    from ganprint.data.folders import open_image_dataset
    from ganprint.latent.train_autoencoder import train_autoencoder

    out = tmp_path_factory.mktemp("latent") / "ae"
    train_autoencoder(tiny_ae_config(), out, open_image_dataset(sample_folder, 16), device="cpu")
    return out / "latent-autoencoder.safetensors"


@pytest.fixture(scope="session")
def tiny_latent_export(tmp_path_factory, sample_folder, tiny_autoencoder_export) -> Path:
    """ldm-smoke trained for 16 images on the latents of `tiny_autoencoder_export` (latent-diffusion.safetensors)."""
    from ganprint.data.folders import open_image_dataset
    from ganprint.latent.train_latent import train_latent

    out = tmp_path_factory.mktemp("latent") / "ldm"
    train_latent(tiny_ldm_config(grid_seeds=2, grid_steps=2), out, open_image_dataset(sample_folder, 16),
                 tiny_autoencoder_export, device="cpu")
    return out / "latent-diffusion.safetensors"
