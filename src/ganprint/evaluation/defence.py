"""A second, independent check before an attribution: the key must also be read from low-passed copies.

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


def make_defence(spec: str, decode: Callable[[torch.Tensor], torch.Tensor], k: int, fpr: float) -> Agreement:
    """Build the defence of a `--defence` spec such as 'agree:blur=1' or 'agree:blur=1:resize=0.75'."""
    name, *parts = spec.strip().split(":")
    if name != "agree" or not parts:
        raise GanprintError(f"--defence {spec!r}: use agree:KIND=VALUE[:KIND=VALUE...] with KIND one of "
                            f"{', '.join(VARIANTS)} (e.g. agree:blur=1)")
    variants = []
    for p in parts:
        key, eq, val = p.partition("=")
        try:
            s = float(val)
        except ValueError:
            s = float("nan")
        if not eq or key not in VARIANTS or not s > 0:
            raise GanprintError(f"--defence {spec!r}: {p!r} is not KIND=VALUE with KIND one of "
                                f"{', '.join(VARIANTS)} and VALUE > 0")
        variants.append((key, s))
    return Agreement(decode, variants, match_threshold(k, fpr))
