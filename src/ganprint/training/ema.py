"""An exponential moving average of a generator's weights, its half-life counted in images shown.

StyleGAN2 samples its images from such an average (Karras et al. 2020, App. B): weights w_avg <- b w_avg + (1-b) w
with b = 0.5 ** (batch / half_life), and a half-life capped at `rampup` x images seen early in training.
"""

from __future__ import annotations

import copy

import torch


class EMA:
    """A frozen copy of `source` that follows it; `module` is the averaged network, `update()` follows one step."""

    def __init__(self, source: torch.nn.Module, half_life_kimg: float, rampup: float | None = None):
        self.module = copy.deepcopy(source).eval().requires_grad_(False)
        self.half_life_kimg, self.rampup = half_life_kimg, rampup

    def decay(self, nimg: int, batch: int) -> float:
        """The weight kept by the average in the step that brings the images seen to `nimg`."""
        half_life = self.half_life_kimg * 1000
        if self.rampup is not None:
            half_life = min(half_life, nimg * self.rampup)
        return pow(0.5, batch / max(half_life, 1e-8))

    @torch.no_grad()
    def update(self, source: torch.nn.Module, nimg: int, batch: int) -> None:
        """Move the average toward `source` after a step of `batch` images that ends at `nimg` images seen."""
        keep = self.decay(nimg, batch)
        for avg, now in zip(self.module.parameters(), source.parameters()):
            avg.copy_(torch.lerp(now.detach(), avg, keep))
        # Buffers (running means, fixed noise) are not averaged: the copy takes the source's.
        current = dict(source.named_buffers())
        for name, buf in self.module.named_buffers():
            buf.copy_(current[name])

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state)
