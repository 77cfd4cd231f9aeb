"""Image perturbations as data: a registry of named attacks with one strength knob and a default sweep.

Every attack maps float images [N, 3, H, W] in [0, 1] to a new tensor of the same shape, dtype, device and
range; the input is never modified. Attacks with a `neutral` strength return an exact copy there. The codecs
(JPEG, WebP) have no neutral strength: quality 100 is still a lossy encode.

Specs (command line and Python):

    "jpeg"                      the default sweep of one attack
    "jpeg:50"                   one strength
    "jpeg:q=30,50,70"           a sweep, with the parameter named (aliases per attack, see ATTACKS)
    "blur:sigma=1"  "blur:k=5"  a named parameter; `k` (kernel size) is converted to sigma with OpenCV's rule
    "jpeg:50+noise:0.05"        a chain applied left to right; sweeps in a chain give their Cartesian product
    "standard" / "all"          named suites (SUITES)

Crop comes in three forms, because a fixed-size decoder cannot read a smaller image:
`crop` cuts the centre and resizes it back to H x W (what the papers' crop curves measure, inferred);
`cropnr` cuts the centre and does *not* rescale it: the kept pixels stay at their scale and place and the cut
border is filled with mid-grey (0.5), so the decoder sees only the information a crop leaves;
`randcrop` cuts at a random (seeded) position and resizes back.
"""

from __future__ import annotations

import io
import itertools
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ganprint.core.errors import GanprintError
from ganprint.core.seeds import derive_seed


class AttackSpecError(GanprintError):
    """An attack spec string that cannot be parsed or names an unknown attack/parameter."""


# ----------------------------------------------------------------------------------------------------------
# Primitive operations (shared with `ganprint.augment`)


def to_uint8_hwc(x: torch.Tensor) -> np.ndarray:
    """[N, 3, H, W] float in [0, 1] -> [N, H, W, 3] uint8 (round to nearest)."""
    return (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def from_uint8_hwc(a: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """[N, H, W, 3] uint8 -> [N, 3, H, W] float in [0, 1] with the dtype and device of `like`."""
    t = torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2)  # [N, 3, H, W]
    return (t.float() / 255).to(device=like.device, dtype=like.dtype)


def codec(x: torch.Tensor, fmt: str, quality: float) -> torch.Tensor:
    """Encode and decode each image with PIL ("JPEG" or "WEBP") at `quality` in [1, 100]; not differentiable."""
    q = int(round(min(max(quality, 1), 100)))
    out = []
    for a in to_uint8_hwc(x):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format=fmt, quality=q)
        buf.seek(0)
        out.append(np.asarray(Image.open(buf).convert("RGB")))
    return from_uint8_hwc(np.stack(out), x)


def blur_sigma_from_kernel(k: float) -> float:
    """OpenCV's sigma for a Gaussian kernel of size k (used when a spec gives `k=`): 0.3((k-1)/2 - 1) + 0.8."""
    return max(0.3 * ((k - 1) * 0.5 - 1) + 0.8, 0.0) if k > 1 else 0.0


def gaussian_blur(x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """Differentiable Gaussian blur with reflect padding; `sigma` is a float or a per-sample [N] tensor."""
    sig = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1)
    smax = float(sig.max())
    if smax <= 0:
        return x.clone()
    h, w = x.shape[-2:]
    rad = min(int(math.ceil(3 * smax)), h - 1, w - 1)
    t = torch.arange(-rad, rad + 1, device=x.device, dtype=torch.float32)
    sig = sig.clamp_min(1e-6).expand(x.shape[0]).reshape(-1, 1)
    k1 = torch.exp(-0.5 * (t[None] / sig) ** 2)
    k1 = (k1 / k1.sum(dim=1, keepdim=True)).to(x.dtype)  # [N, 2r+1]
    n, c = x.shape[:2]
    y = F.pad(x.reshape(1, n * c, h, w), (rad, rad, rad, rad), mode="reflect")  # [1, N*C, H+2r, W+2r]
    kh = k1.repeat_interleave(c, dim=0)  # [N*C, 2r+1]
    y = F.conv2d(y, kh[:, None, None, :], groups=n * c)  # horizontal pass
    y = F.conv2d(y, kh[:, None, :, None], groups=n * c)  # vertical pass
    return y.reshape(n, c, h, w)


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (antialiased when shrinking) to (H, W)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x.clone()
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def _grey(x: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] -> [N, 1, H, W] luma (ITU-R 601, as torchvision/PIL)."""
    w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


# ----------------------------------------------------------------------------------------------------------
# Attacks: fn(x, strength, seed) -> x'


def _identity(x, s, seed):
    return x.clone()


def _jpeg(x, q, seed):
    return codec(x, "JPEG", q)


def _webp(x, q, seed):
    return codec(x, "WEBP", q)


def _noise(x, std, seed):
    g = torch.Generator().manual_seed(int(seed))
    n = torch.randn(x.shape, generator=g, dtype=torch.float32).to(device=x.device, dtype=x.dtype)
    return (x + std * n).clamp(0, 1)


def _blur(x, sigma, seed):
    return gaussian_blur(x, sigma).clamp(0, 1)


def _side(h: int, frac: float) -> int:
    return max(1, min(h, int(round(h * frac))))


def _crop(x, frac, seed):
    h, w = x.shape[-2:]
    ch, cw = _side(h, frac), _side(w, frac)
    t, l = (h - ch) // 2, (w - cw) // 2
    return resize(x[..., t:t + ch, l:l + cw], (h, w)).clamp(0, 1)


def _cropnr(x, frac, seed):
    h, w = x.shape[-2:]
    ch, cw = _side(h, frac), _side(w, frac)
    t, l = (h - ch) // 2, (w - cw) // 2
    out = torch.full_like(x, 0.5)
    out[..., t:t + ch, l:l + cw] = x[..., t:t + ch, l:l + cw]
    return out


def _randcrop(x, frac, seed):
    h, w = x.shape[-2:]
    ch, cw = _side(h, frac), _side(w, frac)
    g = torch.Generator().manual_seed(int(seed))
    out = []
    for i in range(x.shape[0]):
        t = int(torch.randint(0, h - ch + 1, (1,), generator=g))
        l = int(torch.randint(0, w - cw + 1, (1,), generator=g))
        out.append(resize(x[i:i + 1, :, t:t + ch, l:l + cw], (h, w)))
    return torch.cat(out).clamp(0, 1)


def _resize(x, scale, seed):
    h, w = x.shape[-2:]
    small = resize(x, (_side(h, scale), _side(w, scale)))
    return resize(small, (h, w)).clamp(0, 1)


def _rotate(x, deg, seed):
    from kornia.geometry.transform import rotate

    ang = torch.full((x.shape[0],), float(deg), dtype=x.dtype, device=x.device)
    return rotate(x, ang, mode="bilinear", padding_mode="zeros", align_corners=False).clamp(0, 1)


def _brightness(x, f, seed):
    return (x * f).clamp(0, 1)


def _contrast(x, f, seed):
    m = _grey(x).mean(dim=(1, 2, 3), keepdim=True)  # [N, 1, 1, 1]
    return ((x - m) * f + m).clamp(0, 1)


def _saturation(x, f, seed):
    g = _grey(x)
    return ((x - g) * f + g).clamp(0, 1)


def combined_chain(level: float) -> list[tuple[str, float]]:
    """The steps of `combined:LEVEL` (level 0..10): crop, blur, JPEG and noise all growing with the level."""
    lv = min(max(float(level), 0.0), 10.0)
    return [("crop", 1 - 0.03 * lv), ("blur", 0.1 * lv), ("jpeg", 100 - 7 * lv), ("noise", 0.01 * lv)]


def _combined(x, level, seed):
    for i, (name, s) in enumerate(combined_chain(level)):
        x = ATTACKS[name](x, s, derive_seed(seed, i))
    return x


@dataclass(frozen=True)
class Attack:
    """One named perturbation with a single strength knob."""

    name: str
    fn: Callable[[torch.Tensor, float, int], torch.Tensor] = field(repr=False)
    param: str  # canonical parameter name
    neutral: float | None  # strength at which the attack is the identity (None: no such strength)
    sweep: tuple[float, ...]  # default strengths, mildest first
    description: str
    aliases: dict[str, Callable[[float], float]] = field(default_factory=dict, repr=False)  # other params -> canonical
    bounds: tuple[float, float] = (-math.inf, math.inf)

    def __call__(self, x: torch.Tensor, strength: float, seed: int = 0) -> torch.Tensor:
        """Apply at `strength`; returns a new tensor, input untouched."""
        if not (isinstance(x, torch.Tensor) and x.ndim == 4 and x.shape[1] == 3 and x.is_floating_point()):
            raise ValueError(f"attacks need float images [N, 3, H, W] in [0, 1], got {getattr(x, 'shape', type(x))}")
        if self.neutral is not None and float(strength) == self.neutral:
            return x.clone()
        with torch.no_grad():
            return self.fn(x.detach(), float(strength), seed).to(x.dtype)


def _same(v: float) -> float:
    return v


ATTACKS: dict[str, Attack] = {
    a.name: a
    for a in [
        Attack("none", _identity, "s", 0.0, (0.0,), "no perturbation (the clean reference)"),
        Attack("jpeg", _jpeg, "q", None, (90, 70, 50, 30, 10), "real JPEG (PIL, 4:2:0) at quality q",
               {"quality": _same}, (1, 100)),
        Attack("webp", _webp, "q", None, (90, 70, 50, 30, 10), "real lossy WebP (PIL) at quality q",
               {"quality": _same}, (1, 100)),
        Attack("noise", _noise, "std", 0.0, (0.02, 0.05, 0.1, 0.2, 0.3), "additive Gaussian noise N(0, std^2), seeded",
               {"sigma": _same}, (0, math.inf)),
        Attack("blur", _blur, "sigma", 0.0, (0.5, 1.0, 1.5, 2.0, 3.0), "Gaussian blur (reflect padding)",
               {"k": blur_sigma_from_kernel}, (0, math.inf)),
        Attack("crop", _crop, "frac", 1.0, (0.9, 0.8, 0.7, 0.6, 0.5),
               "centre crop keeping frac of each side, resized back", {"size": _same}, (0.01, 1)),
        Attack("cropnr", _cropnr, "frac", 1.0, (0.9, 0.8, 0.7, 0.6, 0.5),
               "centre crop, not resized: the cut border is filled with grey 0.5", {"size": _same}, (0.01, 1)),
        Attack("randcrop", _randcrop, "frac", 1.0, (0.9, 0.8, 0.7, 0.6, 0.5),
               "crop at a random (seeded) position keeping frac of each side, resized back", {"size": _same},
               (0.01, 1)),
        Attack("resize", _resize, "scale", 1.0, (0.9, 0.75, 0.5, 0.35, 0.25),
               "resize down by scale (antialiased bilinear) and back up", {}, (0.01, 1)),
        Attack("rotate", _rotate, "deg", 0.0, (2, 5, 10, 30, 45, 90), "rotation about the centre, black corners",
               {"angle": _same}),
        Attack("brightness", _brightness, "factor", 1.0, (0.5, 0.75, 1.25, 1.5, 2.0), "multiply by factor",
               {"f": _same}, (0, math.inf)),
        Attack("contrast", _contrast, "factor", 1.0, (0.5, 0.75, 1.25, 1.5, 2.0),
               "scale the distance to the mean grey by factor", {"f": _same}, (0, math.inf)),
        Attack("saturation", _saturation, "factor", 1.0, (0.0, 0.5, 1.5, 2.0),
               "scale the distance to the pixel's grey by factor", {"f": _same}, (0, math.inf)),
        Attack("combined", _combined, "level", 0.0, (1, 2, 3, 4, 5, 6, 8, 10),
               "chain crop(1-0.03L) > blur(0.1L) > jpeg(100-7L) > noise(0.01L) at level L in 0..10", {}, (0, 10)),
    ]
}

SUITES: dict[str, list[str]] = {
    "standard": ["jpeg", "noise", "blur", "crop", "resize"],
    "all": ["jpeg", "webp", "noise", "blur", "crop", "cropnr", "randcrop", "resize", "rotate", "brightness",
            "contrast", "saturation", "combined"],
}


# ----------------------------------------------------------------------------------------------------------
# Chains and spec parsing


@dataclass(frozen=True)
class AttackChain:
    """A sequence of (attack name, strength) applied left to right; `vary` is the step whose strength is swept."""

    steps: tuple[tuple[str, float], ...]
    vary: int = 0

    @property
    def name(self) -> str:
        """Attack label for tables: the names joined by '+', e.g. 'jpeg+noise'."""
        return "+".join(n for n, _ in self.steps)

    @property
    def strength(self) -> float:
        """The strength plotted on the x axis (the swept step's)."""
        return self.steps[self.vary][1]

    @property
    def spec(self) -> str:
        """Canonical spec, parseable back: 'jpeg:50+noise:0.05'."""
        return "+".join(f"{n}:{_fmt(s)}" for n, s in self.steps)

    def __call__(self, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """Apply every step in turn; step i draws its randomness from derive_seed(seed, i)."""
        for i, (n, s) in enumerate(self.steps):
            x = ATTACKS[n](x, s, derive_seed(seed, i))
        return x


def _fmt(v: float) -> str:
    return f"{v:g}"


def parse_strengths(name: str, arg: str, *, param: str, bounds: tuple[float, float], sweep, flag: str, whole: str,
                    error: type[GanprintError], aliases: dict | None = None, integer: bool = False) -> list[float]:
    """The strengths of one `name[:[param=]v1,v2,...]` step (the default `sweep` when `arg` is empty), checked
    against `bounds`; `aliases` map other parameter names to converters. Errors (`error`) name `flag` and `whole`.
    Shared by image attacks (--attacks) and model attacks (--model-attacks)."""
    aliases = aliases or {}
    arg = arg.strip()
    if not arg:
        return [float(v) for v in sweep]
    conv = _same
    if "=" in arg:
        pname, _, arg = arg.partition("=")
        pname = pname.strip().lower()
        if pname != param and pname not in aliases:
            names = ", ".join([param, *aliases])
            raise error(f"attack {name!r} has no parameter {pname!r} (use {names}) in {flag} {whole!r}")
        conv = aliases.get(pname, _same)
    values = []
    for tok in arg.split(","):
        tok = tok.strip()
        try:
            v = conv(float(tok))
        except ValueError:
            raise error(f"strength {tok!r} of {name!r} in {flag} {whole!r} is not a number") from None
        lo, hi = bounds
        if math.isnan(v) or not lo <= v <= hi:
            raise error(f"strength {tok} of {name!r} is outside [{lo:g}, {hi:g}] in {flag} {whole!r}")
        if integer and v != int(v):
            raise error(f"strength {tok} of {name!r} must be a whole number of {param} in {flag} {whole!r}")
        values.append(v)
    if not values:
        raise error(f"attack {name!r} has an empty strength list in {flag} {whole!r}")
    return values


def _parse_step(text: str, whole: str) -> tuple[str, list[float]]:
    name, _, arg = text.strip().partition(":")
    name = name.strip().lower()
    if name not in ATTACKS:
        raise AttackSpecError(f"unknown attack {name!r} in --attacks {whole!r}; known: {', '.join(ATTACKS)} "
                              f"(suites: {', '.join(SUITES)})")
    att = ATTACKS[name]
    return name, parse_strengths(name, arg, param=att.param, bounds=att.bounds, sweep=att.sweep, flag="--attacks",
                                 whole=whole, error=AttackSpecError, aliases=att.aliases)


def parse_attacks(spec: str | list[str] | tuple[str, ...]) -> list[AttackChain]:
    """Parse one spec or a list of specs into attack chains (order kept, duplicates dropped).

    Raises AttackSpecError (a GanprintError) with the offending part named.
    """
    specs = [spec] if isinstance(spec, str) else list(spec)
    out: list[AttackChain] = []
    for whole in specs:
        # spaces separate specs as well, so `--attacks "jpeg noise"` works
        for one in whole.split():
            if one.lower() in SUITES:
                for n in SUITES[one.lower()]:
                    out.extend(parse_attacks(n))
                continue
            steps = [_parse_step(t, one) for t in one.split("+")]
            vary = next((i for i, (_, vs) in enumerate(steps) if len(vs) > 1), 0)
            for combo in itertools.product(*[vs for _, vs in steps]):
                out.append(AttackChain(tuple((n, float(v)) for (n, _), v in zip(steps, combo)), vary))
        if not whole.split():
            raise AttackSpecError("empty --attacks spec; give e.g. 'jpeg:50' or 'standard'")
    seen, uniq = set(), []
    for c in out:
        if c.spec not in seen:
            seen.add(c.spec)
            uniq.append(c)
    return uniq
