"""Immunized training: random perturbations between encoder and decoder, ramped in with training progress.

The operations are the perturbations of `ganprint.perturb.registry` (the same implementations the evaluation
attacks run), drawn at random per-sample strengths with gradients through every one.

    aug = build_augment("default")          # or "jpeg,blur,noise,crop", "jpeg:30,noise:0.1", "none"
    img_seen_by_decoder = aug(img01, progress)   # img01 [N, 3, R, R] in [0, 1]; progress in [0, 1]

Each sample independently gets `n_ops` operations (default 1) drawn uniformly from the listed ones plus
"identity", each at a random strength weakest + u * ramp(progress) * (max - weakest), u = U(0, 1) ** (1 / skew).
skew 1 is uniform; skew 2 (density 2u) trains more often near the maxima, where an evaluation's strong settings
lie. `ramp` rises linearly from 0 at progress `ramp_start` to 1 at `ramp_end` (defaults 0.0 and 0.5), so progress
0 is the exact identity and the decoder first learns to read clean images (training still converges), then faces
stronger perturbations.

Operations and their maximum strength (override with "op:value"):
  jpeg:40      real PIL JPEG at quality 100 - u(100 - 40), straight-through: forward is the real codec, the
               backward pass is the identity (gradient 1 w.r.t. the input)
  jpegd:40     the same real JPEG forward, but the backward pass is that of kornia's differentiable JPEG at the
               same quality, so the encoder learns which frequencies survive quantisation (the identity gradient
               says nothing about it). Needs sides divisible by 16 (4:2:0 chroma blocks)
  blur:1.5     differentiable Gaussian blur, sigma up to 1.5 px
  noise:0.05   additive Gaussian noise, std up to 0.05
  crop:0.7     random-position crop keeping down to 70% of each side, resized back (the `randcrop` attack)
  resize:0.5   down to 50% of the side and back up (bilinear, antialiased)
  color:0.3    kornia colour jitter: brightness +-0.3, contrast and saturation x(1 +- 0.3)
"default" = "jpeg,blur,noise,crop,resize,color" with the maxima above.

Images in [-1, 1] (StyleGAN2-family models): use `wrap_pm1(aug)` or convert with (x + 1) / 2 and back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn as nn

from ganprint.core.errors import GanprintError, excerpt
from ganprint.perturb import ops
from ganprint.perturb.registry import PERTURBATIONS, parse_strengths

log = logging.getLogger(__name__)


class AugmentSpecError(GanprintError):
    """An `augment` spec that cannot be parsed."""


def _exact(p, x, s, generator):
    return p.op(x, s, generator)


def _identity_gradient(p, x, s, generator):
    return ops.straight_through(x, p.op(x, s, generator))  # real codec forward, identity backward


def _jpeg_gradient(p, x, s, generator):
    if x.shape[-1] % 16 or x.shape[-2] % 16:
        raise AugmentSpecError(f"jpegd needs image sides divisible by 16, got {tuple(x.shape[-2:])}; use jpeg")
    return ops.jpeg_surrogate(x, s)  # value: the real codec; gradient: kornia's differentiable JPEG


# how the gradient passes an op: exactly, as the identity (straight-through), or as kornia's differentiable JPEG's
GRADIENTS = {"exact": _exact, "identity": _identity_gradient, "jpeg": _jpeg_gradient}


@dataclass(frozen=True)
class TrainingOp:
    """An `augment` operation: the perturbation it draws from, its default maximum strength, its gradient."""

    perturbation: str
    default_max: float
    gradient: str = "exact"

    def __call__(self, x: torch.Tensor, u: torch.Tensor, strongest: float, generator=None) -> torch.Tensor:
        """Apply at strengths weakest + u (strongest - weakest), u [N] in [0, 1] per sample."""
        p = PERTURBATIONS[self.perturbation]
        return GRADIENTS[self.gradient](p, x, p.weakest + u * (strongest - p.weakest), generator)


OPS: dict[str, TrainingOp] = {
    "jpeg": TrainingOp("jpeg", 40.0, "identity"),
    "jpegd": TrainingOp("jpeg", 40.0, "jpeg"),
    "blur": TrainingOp("blur", 1.5),
    "noise": TrainingOp("noise", 0.05),
    "crop": TrainingOp("randcrop", 0.7),
    "resize": TrainingOp("resize", 0.5),
    "color": TrainingOp("color", 0.3),
}
DEFAULT_SPEC = "jpeg,blur,noise,crop,resize,color"


class Augment(nn.Module):
    """`aug(img01, progress) -> img01`: per-sample random perturbations, strength ramped in by progress."""

    def __init__(self, ops: dict[str, float], n_ops: int = 1, ramp_start: float = 0.0, ramp_end: float = 0.5,
                 skew: float = 1.0):
        super().__init__()
        if not 0 <= ramp_start < ramp_end:
            raise AugmentSpecError(f"augment ramp needs 0 <= start < end, got {ramp_start}, {ramp_end}")
        if not skew > 0:
            raise AugmentSpecError(f"augment skew must be > 0, got {skew}")
        self.skew = float(skew)
        self.ops = dict(ops)
        self.n_ops = int(n_ops)
        self.ramp_start, self.ramp_end = float(ramp_start), float(ramp_end)

    def ramp(self, progress: float) -> float:
        """Strength multiplier in [0, 1] at training progress `progress`."""
        return min(max((float(progress) - self.ramp_start) / (self.ramp_end - self.ramp_start), 0.0), 1.0)

    def forward(self, x: torch.Tensor, progress: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """x: [N, 3, H, W] in [0, 1] -> same shape in [0, 1]; differentiable w.r.t. x (JPEG straight-through).

        `generator` (a CPU torch.Generator) makes the draws reproducible; otherwise the global RNG is used.
        """
        scale = self.ramp(progress)
        if scale == 0.0 or not self.ops or self.n_ops == 0:
            return x
        names = list(self.ops)
        n = x.shape[0]
        for _ in range(self.n_ops):
            # op index per sample; index len(names) means identity
            pick = torch.randint(0, len(names) + 1, (n,), generator=generator)
            u = torch.rand(n, generator=generator)
            u = (u if self.skew == 1.0 else u.pow(1.0 / self.skew)) * scale  # [N] strength in [0, scale]
            out = x
            for j, name in enumerate(names):
                idx = torch.nonzero(pick == j).flatten()
                if idx.numel() == 0:
                    continue
                y = OPS[name](x[idx.to(x.device)], u[idx].to(x.device), self.ops[name], generator)
                out = out.index_put((idx.to(x.device),), y.to(x.dtype))
            x = out.clamp(0, 1)
        return x

    def extra_repr(self) -> str:
        return f"ops={self.ops}, n_ops={self.n_ops}, ramp=({self.ramp_start}, {self.ramp_end}), skew={self.skew}"


def build_augment(spec: str = "default", n_ops: int = 1, ramp_start: float = 0.0, ramp_end: float = 0.5,
                  skew: float = 1.0) -> Augment:
    """Build an `Augment` from a spec: "default", "none", or comma-separated ops with optional maxima
    ("jpeg,blur", "jpeg:30,noise:0.1"). Raises AugmentSpecError naming the bad part."""
    spec = (spec or "none").strip().lower()
    if spec == "none":
        return Augment({}, n_ops, ramp_start, ramp_end, skew)
    if spec == "default":
        spec = DEFAULT_SPEC
    ops_: dict[str, float] = {}
    for tok in spec.split(","):
        name, _, val = tok.strip().partition(":")
        if name not in OPS:
            raise AugmentSpecError(f"unknown augmentation {excerpt(name)} in `augment` {excerpt(spec)}; known: "
                                   f"{', '.join(OPS)}, or 'default' / 'none'")
        p = PERTURBATIONS[OPS[name].perturbation]
        values = parse_strengths(name, val, p, sweep=(OPS[name].default_max,), flag="augment", whole=spec,
                                 error=AugmentSpecError)
        if len(values) != 1:
            raise AugmentSpecError(f"give {name!r} one maximum in `augment` {excerpt(spec)}, got {len(values)}")
        ops_[name] = values[0]
    return Augment(ops_, n_ops, ramp_start, ramp_end, skew)


class _PM1(nn.Module):
    def __init__(self, aug: Augment):
        super().__init__()
        self.aug = aug

    def forward(self, x: torch.Tensor, progress: float = 1.0, generator: torch.Generator | None = None):
        return self.aug((x + 1) / 2, progress, generator) * 2 - 1


def wrap_pm1(aug: Augment) -> nn.Module:
    """The same augmentation for images in [-1, 1] (StyleGAN2-family convention): maps to [0, 1] and back."""
    return _PM1(aug)
