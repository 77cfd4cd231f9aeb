"""Immunized training: random perturbations between encoder and decoder, ramped in with training progress.

    aug = build_augment("default")          # or "jpeg,blur,noise,crop", "jpeg:30,noise:0.1", "none"
    img_seen_by_decoder = aug(img01, progress)   # img01 [N, 3, R, R] in [0, 1]; progress in [0, 1]

Each sample independently gets `n_ops` operations (default 1) drawn uniformly from the listed ones plus
"identity", each at a random strength u * ramp(progress) * max, u = U(0, 1) ** (1 / skew). skew 1 is uniform;
skew 2 (density 2u) trains more often near the maxima, where an evaluation's strong settings lie. `ramp` rises linearly from 0 at
progress `ramp_start` to 1 at `ramp_end` (defaults 0.0 and 0.5), so progress 0 is the exact identity and the
decoder first learns to read clean images (training still converges), then faces stronger perturbations.

Operations and their maximum strength (override with "op:value"):
  jpeg:40      real PIL JPEG at quality 100 - u(100 - 40), straight-through: forward is the real codec, the
               backward pass is the identity (gradient 1 w.r.t. the input)
  jpegd:40     the same real JPEG forward, but the backward pass is that of kornia's differentiable JPEG at the
               same quality, so the encoder learns which frequencies survive quantisation (the identity gradient
               says nothing about it). Needs sides divisible by 16 (4:2:0 chroma blocks)
  blur:1.5     differentiable Gaussian blur, sigma up to 1.5 px
  noise:0.05   additive Gaussian noise, std up to 0.05
  crop:0.7     random-position crop keeping down to 70% of each side, resized back (bilinear, differentiable)
  resize:0.5   down to 50% of the side and back up (bilinear, antialiased)
  color:0.3    kornia colour jitter: brightness +-0.3, contrast and saturation x(1 +- 0.3)
"default" = "jpeg,blur,noise,crop,resize,color" with the maxima above.

Images in [-1, 1] (StyleGAN2-family models): use `wrap_pm1(aug)` or convert with (x + 1) / 2 and back.
"""

from __future__ import annotations

import logging

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganprint.core.errors import GanprintError
from ganprint.perturb.attacks import codec, gaussian_blur

log = logging.getLogger(__name__)

DEFAULT_MAX = {"jpeg": 40.0, "jpegd": 40.0, "blur": 1.5, "noise": 0.05, "crop": 0.7, "resize": 0.5, "color": 0.3}
DEFAULT_SPEC = "jpeg,blur,noise,crop,resize,color"


class AugmentSpecError(GanprintError):
    """An --augment spec that cannot be parsed."""


def _real_jpeg(x: torch.Tensor, u: torch.Tensor, qmin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(the PIL codec's output, the integer quality [N] it used): quality 100 - u(100 - qmin) per sample."""
    q = (100 - u * (100 - qmin)).round().clamp(1, 100)  # [N]
    return torch.cat([codec(x[i:i + 1], "JPEG", float(q[i])) for i in range(x.shape[0])]), q


def _jpeg_st(x: torch.Tensor, u: torch.Tensor, qmin: float) -> torch.Tensor:
    y, _ = _real_jpeg(x, u, qmin)
    return x + (y - x).detach()  # straight-through: real codec forward, identity backward


def _jpeg_diff_st(x: torch.Tensor, u: torch.Tensor, qmin: float) -> torch.Tensor:
    from kornia.enhance import jpeg_codec_differentiable

    if x.shape[-1] % 16 or x.shape[-2] % 16:
        raise AugmentSpecError(f"jpegd needs image sides divisible by 16, got {tuple(x.shape[-2:])}; use jpeg")
    y, q = _real_jpeg(x, u, qmin)
    d = jpeg_codec_differentiable(x.float(), q.to(device=x.device, dtype=torch.float32)).to(x.dtype)
    return d + (y - d).detach()  # value: the real codec; gradient: the differentiable surrogate


def _blur(x, u, smax):
    return gaussian_blur(x, u * smax)


def _noise(x, u, smax, generator=None):
    n = torch.randn(x.shape, generator=generator, device=x.device if generator is None else "cpu").to(x)
    return x + n * (u * smax).view(-1, 1, 1, 1)


def _crop(x, u, fmin, generator=None):
    n, _, h, w = x.shape
    frac = 1 - u * (1 - fmin)
    out = []
    for i in range(n):
        ch, cw = max(1, int(round(h * float(frac[i])))), max(1, int(round(w * float(frac[i]))))
        t = int(torch.randint(0, h - ch + 1, (1,), generator=generator))
        l = int(torch.randint(0, w - cw + 1, (1,), generator=generator))
        patch = x[i:i + 1, :, t:t + ch, l:l + cw]  # [1, 3, ch, cw]
        out.append(patch if (ch, cw) == (h, w) else F.interpolate(patch, (h, w), mode="bilinear", align_corners=False))
    return torch.cat(out)


def _resize(x, u, smin):
    n, _, h, w = x.shape
    scale = 1 - u * (1 - smin)
    out = []
    for i in range(n):
        sh, sw = max(1, int(round(h * float(scale[i])))), max(1, int(round(w * float(scale[i]))))
        xi = x[i:i + 1]
        if (sh, sw) != (h, w):
            xi = F.interpolate(xi, (sh, sw), mode="bilinear", align_corners=False, antialias=True)
            xi = F.interpolate(xi, (h, w), mode="bilinear", align_corners=False)
        out.append(xi)
    return torch.cat(out)


def _color(x, u, amax, generator=None):
    from kornia.enhance import adjust_brightness, adjust_contrast, adjust_saturation

    n = x.shape[0]
    a = (u * amax).to(x)  # [N] amplitude per sample
    r = torch.rand(3, n, generator=generator).to(x) * 2 - 1  # [3, N] signs and sizes in [-1, 1]
    x = adjust_brightness(x, a * r[0], clip_output=False)
    x = adjust_contrast(x, 1 + a * r[1], clip_output=False)
    return adjust_saturation(x, 1 + a * r[2])


_OPS = {"jpeg": _jpeg_st, "jpegd": _jpeg_diff_st, "blur": _blur, "noise": _noise, "crop": _crop, "resize": _resize,
        "color": _color}
_RANDOM_OPS = {"noise", "crop", "color"}  # ops that draw extra randomness


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
                kw = {"generator": generator} if name in _RANDOM_OPS else {}
                y = _OPS[name](x[idx.to(x.device)], u[idx].to(x.device), self.ops[name], **kw)
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
    ops: dict[str, float] = {}
    for tok in spec.split(","):
        name, _, val = tok.strip().partition(":")
        if name not in _OPS:
            raise AugmentSpecError(f"unknown augmentation {name!r} in --augment {spec!r}; known: "
                                   f"{', '.join(_OPS)}, or 'default' / 'none'")
        if val:
            try:
                v = float(val)
            except ValueError:
                raise AugmentSpecError(f"maximum {val!r} of {name!r} in --augment {spec!r} is not a number") from None
            ok = {"jpeg": 1 <= v <= 100, "jpegd": 1 <= v <= 100, "crop": 0 < v <= 1,
                  "resize": 0 < v <= 1}.get(name, v >= 0)
            if not ok:
                raise AugmentSpecError(f"maximum {v:g} of {name!r} in --augment {spec!r} is out of range")
        else:
            v = DEFAULT_MAX[name]
        ops[name] = v
    return Augment(ops, n_ops, ramp_start, ramp_end, skew)


class _PM1(nn.Module):
    def __init__(self, aug: Augment):
        super().__init__()
        self.aug = aug

    def forward(self, x: torch.Tensor, progress: float = 1.0, generator: torch.Generator | None = None):
        return self.aug((x + 1) / 2, progress, generator) * 2 - 1


def wrap_pm1(aug: Augment) -> nn.Module:
    """The same augmentation for images in [-1, 1] (StyleGAN2-family convention): maps to [0, 1] and back."""
    return _PM1(aug)
