"""Second checks before an attribution, measured by the adversary suite (its `defence` field).

`agree:...`: the key must also be read from low-passed copies. `energy:min=C`: the fingerprint pattern must be
present at the strength a genuine one has (see `Energy`).

Spec `agree:blur=S` (and/or `resize=F`, `crop=F`): besides the plain decision, the image is decoded again after a
Gaussian blur of sigma S px (a resize round trip to F of the side, a centre crop to F resized back), and it is called
fingerprinted only when every copy reaches the match threshold too. Why it can help: a forger's averaged estimate
is a high-pass residual (content averages out only in the high band), so a low-pass removes most of it, while a
fingerprint embedded by a model trained under blur and resize survives. Requiring more checks to pass can only
lower the rate of (false) detections, so the nominal FPR of the plain test still bounds the combined one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ganprint.core.errors import GanprintError
from ganprint.core.stats import count_matches, decode_bits, match_threshold
from ganprint.perturb.ops import crop, gaussian_blur, resize_roundtrip

VARIANTS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "blur": gaussian_blur,
    "resize": resize_roundtrip,
    "crop": crop,
}


@dataclass
class Agreement:
    """The defence of `agree:...` specs: every variant must be detected too."""

    decode: Callable[[torch.Tensor], torch.Tensor]
    variants: list[tuple[str, float]]
    threshold: int
    batch_size: int = 256

    def variant_matches(self, images: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """The fewest matching bits over the variants, per image [N]."""
        worst = []
        for i in range(0, len(images), self.batch_size):
            xb = images[i:i + self.batch_size]
            with torch.inference_mode():
                ms = [count_matches(decode_bits(self.decode(VARIANTS[v](xb, s)).float()), ref.expand(len(xb), -1))
                      for v, s in self.variants]
            worst.append(torch.stack(ms).min(0).values)
        return torch.cat(worst)

    def apply(self, rows: list[dict], images: torch.Tensor, ref: torch.Tensor) -> None:
        """Add `defence_matches` and `detected_defended` to the rows of `images` (one row per image, in order)."""
        m = self.variant_matches(images, ref).tolist()
        for r, mi in zip(rows, m):
            r["defence_matches"] = int(mi)
            r["detected_defended"] = bool(r["detected"] and mi >= self.threshold)


@dataclass
class Energy:
    """`energy:min=C`: the image's high-pass residual must carry the model's mean fingerprint pattern at no less
    than C times the strength a genuine fingerprint has (projection coefficient <hp(x), p> / <hp(p), p>).

    `pattern` is the registry's own estimate (the mean high-pass residual of images it fingerprinted itself, a
    folder disjoint from anything a forger saw). A forger who pastes the pattern weakly (to keep a high PSNR) fails
    the check; one who pastes it at full strength pays the pattern's own PSNR, measured in RESULTS-adversary.md.
    """

    pattern: torch.Tensor  # [3, H, W]
    minimum: float
    sigma: float = 1.0

    def coefficients(self, images: torch.Tensor) -> torch.Tensor:
        """<hp(x), p> / <hp(p), p> per image [N]: 1 where the pattern is present as strongly as in the reference."""
        hp = images - gaussian_blur(images, self.sigma)
        p = self.pattern.to(hp)
        unit = (p[None] - gaussian_blur(p[None], self.sigma))[0]
        return (hp * p).flatten(1).sum(1) / (unit * p).sum()

    def apply(self, rows: list[dict], images: torch.Tensor, ref: torch.Tensor) -> None:
        """Add `defence_coefficient` and `detected_defended` to the rows of `images` (one row per image, in order)."""
        c = self.coefficients(images).tolist()
        for r, ci in zip(rows, c):
            r["defence_coefficient"] = float(ci)
            r["detected_defended"] = bool(r["detected"] and ci >= self.minimum)


def parse_defence(spec: str) -> tuple[str, list[tuple[str, float]]]:
    """The check of a `defence` spec and its (kind, value) parts: ('agree', [('blur', 1.0)]) for 'agree:blur=1',
    ('energy', [('min', 0.7)]) for 'energy:min=0.7'. Refuses a bad spec, naming `defence`."""
    name, *parts = spec.strip().split(":")
    if name == "energy":
        key, eq, val = (parts[0] if len(parts) == 1 else "").partition("=")
        c = _number(val)
        if key != "min" or not eq or not c > 0:
            raise GanprintError(f"`defence` {spec!r}: use energy:min=C with C > 0 (e.g. energy:min=0.7)")
        return name, [("min", c)]
    if name != "agree" or not parts:
        raise GanprintError(f"`defence` {spec!r}: use agree:KIND=VALUE[:KIND=VALUE...] with KIND one of "
                            f"{', '.join(VARIANTS)} (e.g. agree:blur=1)")
    variants = []
    for p in parts:
        key, eq, val = p.partition("=")
        s = _number(val)
        if not eq or key not in VARIANTS or not s > 0:
            raise GanprintError(f"`defence` {spec!r}: {p!r} is not KIND=VALUE with KIND one of "
                                f"{', '.join(VARIANTS)} and VALUE > 0")
        variants.append((key, s))
    return name, variants


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")  # refused by the caller's `> 0`, with its message


def make_defence(spec: str, decode: Callable[[torch.Tensor], torch.Tensor], k: int, fpr: float,
                 pattern: torch.Tensor | None = None):
    """Build the defence of a `defence` spec: 'agree:blur=1', 'agree:blur=1:resize=0.75' or 'energy:min=0.7'
    (the last needs `pattern`, the registry's mean high-pass residual of its own fingerprinted images)."""
    name, parts = parse_defence(spec)
    if name == "energy":
        if pattern is None:
            raise GanprintError(f"`defence` {spec!r} needs `defence_reference`: a folder of images the registry "
                                "fingerprinted itself with the same key")
        return Energy(pattern, parts[0][1])
    return Agreement(decode, parts, match_threshold(k, fpr))
