"""A latent diffusion model as one export (kind "latent-diffusion"): the denoising UNet and the autoencoder.

The file holds the UNet's tensors under `unet.*` and the autoencoder's under `autoencoder.*`; its config holds
{"unet": UNetConfig, "noise": NoiseConfig, "autoencoder": AutoencoderConfig} fields, so `load_export` rebuilds a
`LatentDiffusion` module. `sample_latents` draws the scaled latents of seeds (each a pure function of its seed);
`decode` (ganprint.latent.autoencoder) turns them into pixels, with this model's decoder or another one of the
same config (an issued, fingerprinted one).
"""

from __future__ import annotations

import os

import torch

from ganprint.core.artifacts import load_export, read_config, read_metadata, register_kind
from ganprint.core.errors import GanprintError
from ganprint.diffusion.config import NoiseConfig, UNetConfig
from ganprint.diffusion.generate import check_sampling, denoise
from ganprint.diffusion.model import build_unet
from ganprint.diffusion.model import export_config as unet_export_config
from ganprint.diffusion.model import parse_export_config as parse_unet_config
from ganprint.latent.autoencoder import (DECODER_KINDS, AutoencoderConfig, build_autoencoder, decode,
                                         parse_export_config as parse_autoencoder_config)

EXPORT_KIND = "latent-diffusion"
FINAL = "latent-diffusion.safetensors"


class LatentDiffusion(torch.nn.Module):
    """`unet` (a UNet2DModel on the latents) and `autoencoder` (an AutoencoderKL), with the forward process."""

    def __init__(self, unet: torch.nn.Module, autoencoder: torch.nn.Module, noise: NoiseConfig):
        super().__init__()
        self.unet, self.autoencoder, self.noise = unet, autoencoder, noise

    @property
    def resolution(self) -> int:
        return int(self.autoencoder.config.sample_size)


def check_fit(unet: UNetConfig, ae: AutoencoderConfig, where: str) -> None:
    """Refuse a UNet that does not denoise `ae`'s latents (side and channels), naming `where`."""
    if (unet.resolution, unet.in_channels) != (ae.latent_resolution, ae.latent_channels):
        raise GanprintError(f"{where} denoises {unet.in_channels} x {unet.resolution} x {unet.resolution} inputs, but "
                            f"the autoencoder's latents are {ae.latent_channels} x {ae.latent_resolution} x "
                            f"{ae.latent_resolution}; give a UNet built for them")


def export_config(unet: UNetConfig, noise: NoiseConfig, ae: AutoencoderConfig) -> dict:
    return {**unet_export_config(unet, noise), "autoencoder": ae.to_dict()}


def parse_export_config(config: dict) -> tuple[UNetConfig, NoiseConfig, AutoencoderConfig]:
    """Inverse of `export_config`."""
    try:
        unet, noise = parse_unet_config(config)
        ae = parse_autoencoder_config(config)
    except (GanprintError, TypeError) as e:
        raise GanprintError(f"a {EXPORT_KIND} export has an unusable config: {e}") from None
    check_fit(unet, ae, f"a {EXPORT_KIND} export")
    return unet, noise, ae


@register_kind(EXPORT_KIND)
def _build_from_export(config: dict) -> torch.nn.Module:
    unet, noise, ae = parse_export_config(config)
    return LatentDiffusion(build_unet(unet), build_autoencoder(ae), noise)


def load_latent_diffusion(path: str | os.PathLike, device: torch.device | str = "cpu") -> LatentDiffusion:
    """A latent-diffusion export as a `LatentDiffusion` in eval mode."""
    model, _, _ = load_export(path, kind=EXPORT_KIND, device=device)
    return model


def load_decoder(path: str | os.PathLike, model_path: str | os.PathLike, device: torch.device | str = "cpu"
                 ) -> torch.nn.Module:
    """The autoencoder of `path` (a latent-autoencoder export, or an issued one) to decode the latents of the
    latent-diffusion export `model_path` with; refused, naming both files, unless its config is the model's own
    autoencoder's."""
    kind = read_metadata(path).get("ganprint.kind")
    if kind not in DECODER_KINDS:
        raise GanprintError(f"`decoder` {path} holds a {kind!r} model; give a {' or '.join(DECODER_KINDS)} export")
    theirs = parse_autoencoder_config(read_config(path))
    ours = parse_autoencoder_config(read_config(model_path))
    if theirs != ours:
        diff = [f"{k}: {v} (model) vs {theirs.to_dict()[k]} (decoder)" for k, v in ours.to_dict().items()
                if theirs.to_dict()[k] != v]
        raise GanprintError(f"`decoder` {path} is not an autoencoder of the config of `model` {model_path}'s "
                            f"({'; '.join(diff)}); give a decoder made from that model's autoencoder")
    vae, _, _ = load_export(path, kind=kind, device=device)
    return vae


@torch.no_grad()
def sample_latents(model: LatentDiffusion, seeds: list[int], sampler: str = "ddim", steps: int = 50,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """Scaled latents [N, C, r, r] of `seeds`, in the dtype of `model`'s parameters: each row a function of its seed
    (every random draw comes from that seed's generator); in float64 the batch moves a latent by rounding only
    (~1e-12), so no decoded pixel changes.
    Latents are not clipped (unlike pixels, they are not bounded by 1). `device`: where to run (default: the
    model's)."""
    check_sampling(sampler, steps, model.noise)
    if device is not None:
        model = model.to(device)
    return denoise(model.unet, model.noise, list(seeds), sampler, steps, clip=False)


@torch.no_grad()
def decode_images(autoencoder: torch.nn.Module, latents: torch.Tensor) -> torch.Tensor:
    """uint8 [N, R, R, 3] images of scaled latents, decoded in the autoencoder's dtype."""
    p = next(autoencoder.parameters())
    x = decode(autoencoder, latents.to(device=p.device, dtype=p.dtype))
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()
