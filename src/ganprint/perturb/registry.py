"""The perturbations as data: one table of name -> parameter, strength range, default sweep and implementation,
read by the evaluation attacks (`ganprint.perturb.attacks`, real codecs, a fixed strength per attack) and by the
training augmentations (`ganprint.perturb.augment`, random per-sample strengths, gradients through every op).

Each implementation is a primitive of `ganprint.perturb.ops`: op(x [N, 3, H, W] in [0, 1], strength [N],
generator) -> perturbed x, unclamped. `parse_strengths` reads the strength part of a spec for both faces and
for the model-level attacks of `ganprint.evaluation.model_attacks`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ganprint.core.errors import GanprintError, excerpt
from ganprint.core.errors import field as field_label  # dataclasses' `field` is taken
from ganprint.core.seeds import derive_seed
from ganprint.perturb import ops


def _same(v: float) -> float:
    return v


def combined_chain(level: float) -> list[tuple[str, float]]:
    """The steps of `combined:LEVEL` (level 0..10): crop, blur, JPEG and noise all growing with the level."""
    lv = min(max(float(level), 0.0), 10.0)
    return [("crop", 1 - 0.03 * lv), ("blur", 0.1 * lv), ("jpeg", 100 - 7 * lv), ("noise", 0.01 * lv)]


@dataclass(frozen=True)
class Perturbation:
    """One named perturbation with a single strength knob.

    Calling it applies it as an evaluation attack: one strength for the batch, randomness seeded by `seed`,
    no gradient, output clamped to [0, 1], an exact copy at the `neutral` strength. A perturbation with
    `steps` is a chain of others (its strength maps to theirs); one without a `sweep` is for training only.
    """

    name: str
    op: Callable[..., torch.Tensor] | None = field(repr=False)
    param: str  # canonical parameter name
    neutral: float | None  # strength at which it is the identity (None: no such strength, e.g. a lossy codec)
    sweep: tuple[float, ...]  # the evaluation's default strengths, mildest first; () = not an evaluation attack
    description: str
    aliases: dict[str, Callable[[float], float]] = field(default_factory=dict, repr=False)  # other params -> canonical
    bounds: tuple[float, float] = (-math.inf, math.inf)
    mildest: float | None = None  # the weakest strength where it differs from `neutral` (codecs: quality 100)
    steps: Callable[[float], list[tuple[str, float]]] | None = field(default=None, repr=False)

    @property
    def weakest(self) -> float:
        """The strength a training ramp starts from."""
        return self.neutral if self.mildest is None else self.mildest

    def __call__(self, x: torch.Tensor, strength: float, seed: int = 0) -> torch.Tensor:
        """Apply at `strength`; returns a new tensor, input untouched."""
        if not (isinstance(x, torch.Tensor) and x.ndim == 4 and x.shape[1] == 3 and x.is_floating_point()):
            raise ValueError(f"attacks need float images [N, 3, H, W] in [0, 1], got {getattr(x, 'shape', type(x))}")
        if self.neutral is not None and float(strength) == self.neutral:
            return x.clone()
        with torch.no_grad():
            if self.steps is not None:
                y = x.detach()
                for i, (name, s) in enumerate(self.steps(float(strength))):
                    y = PERTURBATIONS[name](y, s, derive_seed(seed, i))
                return y
            y = self.op(x.detach(), float(strength), torch.Generator().manual_seed(int(seed)))
            return y.clamp(0, 1).to(x.dtype)


_QUALITY = {"quality": _same}
_FRACTION = {"size": _same}
_FACTOR = {"f": _same}

PERTURBATIONS: dict[str, Perturbation] = {
    p.name: p
    for p in [
        Perturbation("none", ops.identity, "s", 0.0, (0.0,), "no perturbation (the clean reference)"),
        Perturbation("jpeg", ops.jpeg, "q", None, (90, 70, 50, 30, 10), "real JPEG (PIL, 4:2:0) at quality q",
                     _QUALITY, (1, 100), mildest=100),
        Perturbation("webp", ops.webp, "q", None, (90, 70, 50, 30, 10), "real lossy WebP (PIL) at quality q",
                     _QUALITY, (1, 100), mildest=100),
        Perturbation("noise", ops.gaussian_noise, "std", 0.0, (0.02, 0.05, 0.1, 0.2, 0.3),
                     "additive Gaussian noise N(0, std^2), seeded", {"sigma": _same}, (0, 10)),
        Perturbation("blur", ops.gaussian_blur, "sigma", 0.0, (0.5, 1.0, 1.5, 2.0, 3.0),
                     "Gaussian blur (reflect padding)", {"k": ops.blur_sigma_from_kernel}, (0, 100)),
        Perturbation("crop", ops.crop, "frac", 1.0, (0.9, 0.8, 0.7, 0.6, 0.5),
                     "centre crop keeping frac of each side, resized back", _FRACTION, (0.01, 1)),
        Perturbation("cropnr", ops.crop_no_resize, "frac", 1.0, (0.9, 0.8, 0.7, 0.6, 0.5),
                     "centre crop, not resized: the cut border is filled with grey 0.5", _FRACTION, (0.01, 1)),
        Perturbation("randcrop", ops.random_crop, "frac", 1.0, (0.9, 0.8, 0.7, 0.6, 0.5),
                     "crop at a random (seeded) position keeping frac of each side, resized back", _FRACTION,
                     (0.01, 1)),
        Perturbation("resize", ops.resize_roundtrip, "scale", 1.0, (0.9, 0.75, 0.5, 0.35, 0.25),
                     "resize down by scale (antialiased bilinear) and back up", {}, (0.01, 1)),
        Perturbation("shrink", ops.shrink, "scale", 1.0, (0.75, 0.5, 0.25),
                     "resize down by scale (antialiased bilinear) and keep the smaller image", {}, (0.01, 1)),
        Perturbation("sharpen", ops.sharpen, "amount", 0.0, (0.5, 1.0, 2.0),
                     "unsharp mask x + amount (x - blur_sigma1(x))", {}, (0, 10)),
        Perturbation("rotate", ops.rotate, "deg", 0.0, (2, 5, 10, 30, 45, 90),
                     "rotation about the centre, black corners", {"angle": _same}, (-360, 360)),
        Perturbation("brightness", ops.brightness, "factor", 1.0, (0.5, 0.75, 1.25, 1.5, 2.0), "multiply by factor",
                     _FACTOR, (0, 100)),
        Perturbation("contrast", ops.contrast, "factor", 1.0, (0.5, 0.75, 1.25, 1.5, 2.0),
                     "scale the distance to the mean grey by factor", _FACTOR, (0, 100)),
        Perturbation("saturation", ops.saturation, "factor", 1.0, (0.0, 0.5, 1.5, 2.0),
                     "scale the distance to the pixel's grey by factor", _FACTOR, (0, 100)),
        Perturbation("combined", None, "level", 0.0, (1, 2, 3, 4, 5, 6, 8, 10),
                     "chain crop(1-0.03L) > blur(0.1L) > jpeg(100-7L) > noise(0.01L) at level L in 0..10", {},
                     (0, 10), steps=combined_chain),
        Perturbation("color", ops.color_jitter, "amplitude", 0.0, (),
                     "random brightness +-a, contrast and saturation x(1 +- a)", {}, (0, 10)),
    ]
}

MAX_STRENGTHS = 256

# What happens to images on their way to someone who checks them (read at their own size: `keep_size`):
# re-encoding, smaller copies, crops, filters, a tilt, and two chains, a social network's upload and a screenshot.
WILD = ["jpeg:90,75,50", "shrink:0.5,0.25", "crop:0.75,0.5", "blur:1", "noise:0.02", "brightness:0.75,1.25",
        "contrast:0.75,1.25", "saturation:0.5,1.5", "rotate:2,5", "crop:0.9+shrink:0.5+jpeg:75",
        "shrink:0.7+sharpen:1+jpeg:80"]

SUITES: dict[str, list[str]] = {
    "standard": ["jpeg", "noise", "blur", "crop", "resize"],
    "all": ["jpeg", "webp", "noise", "blur", "crop", "cropnr", "randcrop", "resize", "rotate", "brightness",
            "contrast", "saturation", "combined", "shrink", "sharpen"],
    "wild": WILD,
}


def parse_strengths(name: str, arg: str, knob: Any, *, sweep, flag: str, whole: str,
                    error: type[GanprintError]) -> list[float]:
    """The strengths of one `name[:[param=]v1,v2,...]` step (the default `sweep` when `arg` is empty).

    `knob` says what they are strengths of (a Perturbation, a model attack): its `param` names them, its `bounds`
    hold them, its optional `aliases` map other parameter names to converters and `integer` asks for whole
    numbers. Errors (`error`) name `flag`, the field the spec was given as ("attacks", shown in backticks: the CLI
    writes its flag there), and `whole`."""
    param, bounds = knob.param, knob.bounds
    aliases, integer = getattr(knob, "aliases", None) or {}, bool(getattr(knob, "integer", False))
    flag = field_label(flag)
    arg = arg.strip()
    if not arg:
        return [float(v) for v in sweep]
    conv = _same
    if "=" in arg:
        pname, _, arg = arg.partition("=")
        pname = pname.strip().lower()
        if pname != param and pname not in aliases:
            names = ", ".join([param, *aliases])
            raise error(f"attack {name!r} has no parameter {pname!r} (use {names}) in {flag} {excerpt(whole)}")
        conv = aliases.get(pname, _same)
    values = []
    for tok in arg.split(","):
        tok = tok.strip()
        try:
            v = conv(float(tok))
        except ValueError:
            raise error(f"strength {tok!r} of {name!r} in {flag} {excerpt(whole)} is not a number") from None
        lo, hi = bounds
        if not math.isfinite(v) or not lo <= v <= hi:
            raise error(f"strength {tok} of {name!r} is outside [{lo:g}, {hi:g}] in {flag} {excerpt(whole)}")
        if integer and v != int(v):
            raise error(f"strength {tok} of {name!r} must be a whole number of {param} in {flag} {excerpt(whole)}")
        values.append(v)
    if not values:
        raise error(f"attack {name!r} has an empty strength list in {flag} {excerpt(whole)}")
    if len(values) > MAX_STRENGTHS:  # each strength is one more pass over every image
        raise error(f"attack {name!r} has {len(values)} strengths in {flag} {excerpt(whole)}; at most {MAX_STRENGTHS}")
    return values
