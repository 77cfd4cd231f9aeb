"""Tiny latent models for the issuing, attribution and service tests: a shared modulated autoencoder, its
fingerprint decoder and the original (unfingerprinted) autoencoder, written as exports, plus image helpers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganprint.core.artifacts import save_export
from ganprint.latent import autoencoder as ae
from ganprint.latent.modulated import EXPORT_KIND, ModulationConfig, export_config, from_autoencoder
from ganprint.nets.stega import StegaConfig, StegaDecoderOnly, stega_config_dict

AE = ae.AutoencoderConfig(resolution=16, channels=(32, 32), mid_attention=False)
K = 32


def write_models(root: Path, seed: int = 0) -> dict:
    """The original autoencoder, a modulated copy of it (style gain 1: fingerprints change the images visibly) and a
    16-px stega decoder for its K bits, untrained, as exports under `root`."""
    torch.manual_seed(seed)
    root.mkdir(parents=True, exist_ok=True)
    vae = ae.build_autoencoder(AE).eval()
    mod = ModulationConfig(fingerprint_length=K, style_gain=1.0)
    model = from_autoencoder(vae, AE, mod).eval()
    dec = StegaDecoderOnly(StegaConfig(resolution=AE.resolution, fingerprint_length=K)).eval()
    paths = {"original": root / "original-autoencoder.safetensors", "shared": root / "latent-modulated.safetensors",
             "decoder": root / "fingerprint-decoder.safetensors"}
    save_export(paths["original"], vae, ae.EXPORT_KIND, ae.export_config(AE))
    save_export(paths["shared"], model, EXPORT_KIND, export_config(AE, mod))
    save_export(paths["decoder"], dec, "stega-decoder", stega_config_dict(dec.cfg))
    return paths


def latents(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, AE.latent_channels, AE.latent_resolution, AE.latent_resolution, generator=g) * 0.7


def write_decoded(vae: torch.nn.Module, z: torch.Tensor, folder: Path, prefix: str) -> list[Path]:
    """PNG files of the images a plain autoencoder decodes from latents `z`."""
    folder.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        x = ae.decode(vae, z)
    arr = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    paths = []
    for i, img in enumerate(arr):
        paths.append(folder / f"{prefix}-{i:03d}.png")
        Image.fromarray(np.ascontiguousarray(img)).save(paths[-1])
    return paths
