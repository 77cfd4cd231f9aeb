"""The diffusion UNet (diffusers' `UNet2DModel`) and its schedulers, built from plain config dicts.

`diffusers` is an optional dependency (the `diffusion` extra), imported only when a model or a
scheduler is built, so that importing this module (which registers the "diffusion-unet" export kind) stays cheap.
An export's config holds {"unet": UNetConfig fields, "noise": NoiseConfig fields}; nothing is downloaded.
"""

from __future__ import annotations

import torch

from ganprint.core.artifacts import register_kind
from ganprint.core.errors import GanprintError
from ganprint.diffusion.config import NoiseConfig, UNetConfig

EXPORT_KIND = "diffusion-unet"
SAMPLERS = ("ddim", "ddpm", "dpm")


def require_diffusers():
    try:
        import diffusers
    except ModuleNotFoundError:
        raise GanprintError("diffusion models need the diffusers package: pip install -e '.[diffusion]' in the "
                            "ganprint checkout "
                            "(or pip install diffusers)") from None
    return diffusers


def build_unet(cfg: UNetConfig) -> torch.nn.Module:
    """A freshly initialised `UNet2DModel` of `cfg` (its weights follow torch's global RNG)."""
    cfg.validate()
    diffusers = require_diffusers()
    down = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in cfg.attention)
    up = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(cfg.attention))
    return diffusers.UNet2DModel(
        sample_size=cfg.resolution, in_channels=cfg.in_channels, out_channels=cfg.in_channels,
        down_block_types=down, up_block_types=up,
        block_out_channels=tuple(cfg.channels), layers_per_block=cfg.layers_per_block, dropout=cfg.dropout,
        norm_num_groups=cfg.norm_groups, attention_head_dim=cfg.head_dim, flip_sin_to_cos=cfg.flip_sin_to_cos,
        freq_shift=cfg.freq_shift, downsample_padding=cfg.downsample_padding, norm_eps=cfg.norm_eps)


def export_config(unet: UNetConfig, noise: NoiseConfig) -> dict:
    """The config stored in a diffusion-unet export."""
    return {"unet": unet.to_dict(), "noise": dict(noise.__dict__)}


def parse_export_config(config: dict) -> tuple[UNetConfig, NoiseConfig]:
    """Inverse of `export_config`."""
    try:
        return UNetConfig.from_dict(config["unet"]), NoiseConfig(**config["noise"]).validate()
    except (KeyError, TypeError, ValueError) as e:
        raise GanprintError(f"a diffusion-unet export has an unusable config: {e}") from None


@register_kind(EXPORT_KIND)
def _build_from_export(config: dict) -> torch.nn.Module:
    return build_unet(parse_export_config(config)[0])


def make_scheduler(sampler: str, noise: NoiseConfig, clip: bool = True):
    """A fresh diffusers scheduler for `sampler` (ddim: eta 0; ddpm: ancestral; dpm: DPM-Solver++ 2nd order).
    `clip`: all three clip the predicted clean image to [-1, 1], as pixels are; latents (of unit variance, so
    often beyond 1) are not clipped."""
    diffusers = require_diffusers()
    kw = noise.scheduler_kwargs()
    if sampler == "ddpm":
        return diffusers.DDPMScheduler(**kw, clip_sample=clip)
    if sampler == "ddim":
        return diffusers.DDIMScheduler(**kw, clip_sample=clip, set_alpha_to_one=True)
    if sampler == "dpm":
        # Clip the predicted clean image to [-1, 1] as ddim/ddpm do (thresholding at a max of 1 is a plain clip):
        # without it the fingerprint did not come through (measured in
        # benchmarks/experiments/diffusion-transfer/RESULTS-diffusion.md, samplers).
        return diffusers.DPMSolverMultistepScheduler(**kw, algorithm_type="dpmsolver++", solver_order=2,
                                                     thresholding=clip, sample_max_value=1.0)
    raise GanprintError(f"`sampler` {sampler!r} is unknown; choose one of {', '.join(SAMPLERS)}")
