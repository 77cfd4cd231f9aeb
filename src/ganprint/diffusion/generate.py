"""Images from diffusion-unet exports: the diffusion half of `generate` (`sampler` ddim|ddpm|dpm, `steps` N).

Each image is a pure function of its seed: the starting noise and every noise a stochastic sampler adds come from
one CPU `torch.Generator` per seed, and the UNet runs in float64 by default, so that the batch size cannot change a
pixel through floating-point summation order (as for the GANs).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import torch

from ganprint.core import bounds
from ganprint.core.artifacts import load_export
from ganprint.core.errors import GanprintError
from ganprint.diffusion.config import NoiseConfig
from ganprint.diffusion.model import EXPORT_KIND, SAMPLERS, make_scheduler, parse_export_config
from ganprint.inference.generation import PRECISIONS, GenerateSpec, claim, open_generation, write_seed_images


def check_sampling(sampler: str, steps: int, noise: NoiseConfig) -> None:
    """Raise GanprintError naming the field when `sampler` or `steps` is unusable."""
    if sampler not in SAMPLERS:
        raise GanprintError(f"`sampler` {sampler!r} is unknown; choose one of {', '.join(SAMPLERS)}")
    bounds.SAMPLER_STEPS.check(steps, "`steps`")
    if not 1 <= int(steps) <= noise.timesteps:
        raise GanprintError(f"`steps` must be between 1 and the model's {noise.timesteps} training timesteps, "
                            f"got {steps}")


@torch.no_grad()
def denoise(unet: torch.nn.Module, noise: NoiseConfig, seeds: list[int], sampler: str = "ddim", steps: int = 50,
            clip: bool = True) -> torch.Tensor:
    """The sampler's final x [N, C, R, R] for `seeds` (C: the UNet's in_channels), in the dtype and on the device of
    `unet`'s parameters; `clip` as `make_scheduler`'s."""
    check_sampling(sampler, steps, noise)
    p = next(unet.parameters())
    res, chans = int(unet.config.sample_size), int(unet.config.in_channels)
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    x = torch.stack([torch.randn(chans, res, res, generator=g) for g in gens]).to(device=p.device, dtype=p.dtype)
    sched = make_scheduler(sampler, noise, clip)
    sched.set_timesteps(int(steps))
    for t in sched.timesteps:
        eps = unet(x, t.to(p.device)).sample
        # Stochastic samplers (ddpm) draw each image's added noise from that image's own generator.
        extra = {"generator": gens} if sampler == "ddpm" else {}
        x = sched.step(eps, t, x, **extra).prev_sample.to(p.dtype)
    return x


def sample_batch(unet: torch.nn.Module, noise: NoiseConfig, seeds: list[int], sampler: str = "ddim",
                 steps: int = 50, device: torch.device | str = "cpu") -> np.ndarray:
    """uint8 [N, R, R, 3] images of `seeds`, run in the dtype of `unet`'s parameters."""
    x = denoise(unet, noise, seeds, sampler, steps)
    img = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return img.permute(0, 2, 3, 1).cpu().numpy()


def sample_seeds(unet: torch.nn.Module, noise: NoiseConfig, seeds: list[int], sampler: str = "ddim",
                 steps: int = 50, device: torch.device | str = "cpu", batch_size: int = 16,
                 dtype: torch.dtype = torch.float64) -> np.ndarray:
    """`sample_batch` over chunks of `batch_size`, on a `dtype` copy of `unet` (unet itself is left untouched)."""
    ux = unet if next(unet.parameters()).dtype == dtype else cast(copy.deepcopy(unet), dtype).eval()
    out = [sample_batch(ux, noise, seeds[i:i + batch_size], sampler, steps, device)
           for i in range(0, len(seeds), batch_size)]
    res = int(unet.config.sample_size)
    return np.concatenate(out) if out else np.zeros((0, res, res, 3), np.uint8)


def cast(unet: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    # nn.Module's own cast: diffusers' ModelMixin.to warns about float32-only modules, which UNet2DModel has none of.
    return torch.nn.Module.to(unet, dtype)


def load_diffusion(model_path: str | os.PathLike, device: torch.device | str = "cpu"
                   ) -> tuple[torch.nn.Module, NoiseConfig, dict]:
    """A diffusion-unet export as (UNet in eval mode, its NoiseConfig, the file's metadata)."""
    unet, config, meta = load_export(model_path, kind=EXPORT_KIND, device=device)
    return unet, parse_export_config(config)[1], meta


def generate_images(spec: GenerateSpec) -> list[Path]:
    """Write `outdir/seed<seed:06d>.png` for every seed of `spec` from a diffusion-unet export (and `grid.png` with
    `grid`); returns the image paths. `sampler`: ddim (deterministic, the default), ddpm (ancestral, per-seed
    noise) or dpm (DPM-Solver++); `steps`: sampler steps (default 50). `batch_size` does not change any image."""
    spec.refuse(("trunc", "fingerprint", "identical_latent", "identical_fingerprint"), "GAN generators")
    spec.refuse(("decoder",), "latent diffusion models")
    sampler, steps = spec.sampler or "ddim", spec.steps or 50
    outdir, dev = open_generation(spec)
    unet, noise, _ = load_diffusion(spec.model, dev)
    check_sampling(sampler, steps, noise)
    claim(spec, outdir, dev, {"kind": EXPORT_KIND, "sampler": sampler, "steps": int(steps),
                              "precision": spec.precision})
    unet = cast(unet, PRECISIONS[spec.precision])
    return write_seed_images(spec, outdir, lambda chunk: sample_batch(unet, noise, chunk, sampler, steps, dev),
                             f" ({sampler}, {steps} steps)")
