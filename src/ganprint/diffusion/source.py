"""A diffusion-unet export as a generator of `ganprint evaluate` (its `generator`).

`DiffusionSampler` bundles the UNet with its noise settings and a sampler, as one nn.Module: model attacks
(quantisation, weight noise, pruning) perturb copies of it like any generator, and `generate(seeds)` returns the
images `ganprint generate` writes for those seeds with the same sampler, steps and precision.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ganprint.core.errors import GanprintError
from ganprint.core.fingerprints import parse_bits
from ganprint.diffusion.config import NoiseConfig
from ganprint.diffusion.generate import check_sampling, load_diffusion, sample_batch
from ganprint.diffusion.model import EXPORT_KIND


class DiffusionSampler(torch.nn.Module):
    """UNet + sampler: `generate(seeds)` -> uint8 [N, R, R, 3], each image a function of its seed only."""

    def __init__(self, unet: torch.nn.Module, noise: NoiseConfig, sampler: str = "ddim", steps: int = 50):
        super().__init__()
        check_sampling(sampler, steps, noise)
        self.unet, self.noise, self.sampler, self.steps = unet, noise, sampler, int(steps)

    @property
    def resolution(self) -> int:
        return int(self.unet.config.sample_size)

    @torch.no_grad()
    def generate(self, seeds: list[int], device: torch.device | str = "cpu") -> np.ndarray:
        """The images of `seeds`, in the dtype of this module's parameters (float64 matches `ganprint generate`)."""
        return sample_batch(self.unet, self.noise, list(seeds), self.sampler, self.steps, device)


def load_diffusion_generator(path: str | os.PathLike, fingerprint: str | None, k: int,
                             device: torch.device | str = "cpu", sampler: str = "ddim", steps: int = 50
                             ) -> tuple[DiffusionSampler, str, torch.Tensor, int]:
    """The `generator` of an evaluation, for a diffusion-unet export: (DiffusionSampler, kind, reference bits [K], resolution).

    A diffusion model carries the fingerprint of its training data, so `fingerprint` (that data's) is required.
    """
    unet, noise, _ = load_diffusion(path, device)
    if fingerprint is None:
        raise GanprintError(f"`generator` {path} is a diffusion model, fingerprinted through its training data: "
                            "give its `fingerprint`, the one embedded in that data")
    gen = DiffusionSampler(unet, noise, sampler, steps)
    return gen, EXPORT_KIND, parse_bits(str(fingerprint), k), gen.resolution
