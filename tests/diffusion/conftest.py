"""Fixtures of the diffusion tests: tiny configs and one tiny trained export shared by the module."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ganprint.diffusion.config import PRESETS, DiffusionTrainConfig, UNetConfig


def tiny_config(resolution: int = 16, **kw) -> DiffusionTrainConfig:
    """The tiny-16 preset (two 32-channel levels) at `resolution`, with overrides."""
    base = PRESETS["tiny-16"]
    unet = dataclasses.replace(base.unet, resolution=resolution)
    return dataclasses.replace(base, unet=unet, **kw).validate()


@pytest.fixture(scope="session")
def tiny_diffusion_export(tmp_path_factory, sample_folder) -> Path:
    """A 32-px tiny UNet trained for 16 images on the sample crops (network-final.safetensors)."""
    from ganprint.data.folders import open_image_dataset
    from ganprint.diffusion.train import train_diffusion

    out = tmp_path_factory.mktemp("diffusion") / "run"
    cfg = tiny_config(32, total_kimg=0.016, snapshot_kimg=0.016, kimg_per_tick=0.008, grid_seeds=4, grid_steps=2)
    train_diffusion(cfg, out, open_image_dataset(sample_folder, 32), device="cpu")
    return out / "network-final.safetensors"


__all__ = ["UNetConfig", "tiny_config"]
