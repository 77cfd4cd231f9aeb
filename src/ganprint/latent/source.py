"""A latent-diffusion export as a generator of `ganprint evaluate` (its `generator`).

`LatentSampler` bundles the model with a sampler as one nn.Module, as `ganprint.diffusion.source.DiffusionSampler`
does for pixel diffusion: model attacks perturb copies of it like any generator, and `generate(seeds)` returns the
images `ganprint generate` writes for those seeds with the same sampler and steps.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ganprint.core.errors import GanprintError
from ganprint.core.fingerprints import parse_bits
from ganprint.diffusion.generate import check_sampling
from ganprint.latent.model import EXPORT_KIND, LatentDiffusion, decode_images, load_latent_diffusion, sample_latents


class LatentSampler(torch.nn.Module):
    """Latent diffusion model + sampler: `generate(seeds)` -> uint8 [N, R, R, 3], each image a function of its seed."""

    def __init__(self, model: LatentDiffusion, sampler: str = "ddim", steps: int = 50):
        super().__init__()
        check_sampling(sampler, steps, model.noise)
        self.model, self.sampler, self.steps = model, sampler, int(steps)

    @property
    def resolution(self) -> int:
        return self.model.resolution

    @torch.no_grad()
    def generate(self, seeds: list[int], device: torch.device | str | None = None) -> np.ndarray:
        """The images of `seeds`, in the dtype of this module's parameters (float64 matches `ganprint generate`);
        `device`: where to run (default: where the model is)."""
        latents = sample_latents(self.model, list(seeds), self.sampler, self.steps, device)
        return decode_images(self.model.autoencoder, latents).numpy()


def load_latent_generator(path: str | os.PathLike, fingerprint: str | None, k: int,
                          device: torch.device | str = "cpu", sampler: str = "ddim", steps: int = 50
                          ) -> tuple[LatentSampler, str, torch.Tensor, int]:
    """The `generator` of an evaluation, for a latent-diffusion export: (LatentSampler, kind, reference bits [K],
    resolution). Its images carry the fingerprint of its training data (or of its decoder), which must be given."""
    if fingerprint is None:
        raise GanprintError(f"`generator` {path} is a latent diffusion model: give its `fingerprint`, the one "
                            "embedded in its training data or folded into its decoder")
    model = load_latent_diffusion(path, device)
    gen = LatentSampler(model, sampler, steps)
    return gen, EXPORT_KIND, parse_bits(str(fingerprint), k), gen.resolution
