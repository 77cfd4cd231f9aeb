"""Scale-search decoding: read a fingerprint from an image that was cropped and resized back, size unknown.

A centre crop keeping a fraction f of each side, scaled back to R x R, enlarges the fingerprint pattern by 1/f and
moves it out of place; the decoders (a dense layer over a spatial map) cannot read a pattern at the wrong scale,
but they read a pattern at the right scale with its border missing well.
So for each candidate f the image is shrunk by f and centred on a grey canvas, which undoes the resize, every
candidate is decoded, and the most confident decoding is kept: the one whose bits are furthest from undecided
(mean |sigmoid(logit) - 1/2|, between 0 and 1/2). A candidate other than f = 1 must also reach `min_confidence`
(`MIN_CONFIDENCE`) and beat the unscaled reading's confidence by `min_gain` (`MIN_GAIN`), because the decoders give
JPEG-compressed images confident but wrong bits at wrong scales. Both defaults were tuned for the stega models
of this repository (benchmarks/experiments/robustness/scale_search_floor.py, on validation images; results in
benchmarks/experiments/robustness/RESULTS-eval.md), so they are settings of that model family, not universal
constants.

"wide" searches further, for photos read as tiles (`ganprint.inference.fullsize`): scales down to 0.5 and the
rotations undone by -5 to 5 degrees. A tiled reading averages its tiles, so a wrong candidate (whose tiles
disagree) reads as undecided and the gates can be lower (`TILED_MIN_CONFIDENCE`, tuned like the others on
validation photos that are not the benchmark's: benchmarks/experiments/wild/search_gates.py).

The choice never looks at a reference fingerprint, so for an image without the fingerprint the kept bits are
still independent of the reference and the binomial p-value stays exact: no multiple-testing correction is due.
The price is one decoder pass per candidate.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ganprint.core.errors import GanprintError, excerpt
from ganprint.perturb.ops import rotate, side

DEFAULT_SCALES = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6)
WIDE_SCALES = (*DEFAULT_SCALES, 0.55, 0.5)
WIDE_ANGLES = (-5.0, -4.0, -3.0, -2.0, -1.0, 1.0, 2.0, 3.0, 4.0, 5.0)  # degrees the image was rotated by
# The defaults of `min_confidence` and `min_gain` (chosen as the module docstring says).
MIN_CONFIDENCE = 0.4
MIN_GAIN = 0.03
TILED_MIN_CONFIDENCE = 0.2
MAX_SCALES = 32


def parse_scales(text: str | None) -> tuple[float, ...] | None:
    """`scale_search`: None/"none" -> None (off); "auto" -> DEFAULT_SCALES; "wide" -> WIDE_SCALES (and the angles of
    `search_angles`); "1,0.9,0.8" -> those (1.0 added)."""
    if text is None or str(text).strip().lower() in ("", "none", "off"):
        return None
    if str(text).strip().lower() == "auto":
        return DEFAULT_SCALES
    if str(text).strip().lower() == "wide":
        return WIDE_SCALES
    try:
        vals = [float(t) for t in str(text).split(",") if t.strip()]
    except ValueError:
        raise GanprintError(f"`scale_search` {excerpt(text)}: expected 'auto', 'wide', 'none' or fractions like "
                            "1,0.9,0.8") from None
    bad = [v for v in vals if not 0.2 <= v <= 1.0]  # also refuses NaN and infinities
    if bad or not vals:
        raise GanprintError(f"`scale_search` {excerpt(text)}: every fraction must be in [0.2, 1]")
    scales = tuple(sorted(set(vals) | {1.0}, reverse=True))
    if len(scales) == 1:
        raise GanprintError(f"`scale_search` {excerpt(text)} gives no scale below 1 to search; add fractions such as "
                            "1,0.9,0.8, or drop `scale_search`")
    if len(scales) > MAX_SCALES:  # each candidate costs one more decoding of every image
        raise GanprintError(f"`scale_search` {excerpt(text)} gives {len(scales)} scales; at most {MAX_SCALES} are "
                            "searched")
    return scales


def search_angles(text: str | None) -> tuple[float, ...]:
    """The rotations a `scale_search` undoes: WIDE_ANGLES for "wide", none otherwise."""
    return WIDE_ANGLES if text is not None and str(text).strip().lower() == "wide" else ()


def min_confidence_for(tiles: int) -> float:
    """The `min_confidence` gate of a reading averaged over `tiles` x `tiles` tiles (1: a single reading)."""
    return MIN_CONFIDENCE if tiles == 1 else TILED_MIN_CONFIDENCE


def unzoom(x01: torch.Tensor, frac: float, fill: float = 0.5) -> torch.Tensor:
    """Undo a centre crop of `frac` that was resized back: shrink [N, C, H, W] by `frac`, centre it on `fill`.

    The placement matches the centre crops of `ganprint.perturb.ops.crop` (offset (H - round(H * frac)) // 2).
    """
    if frac >= 1.0:
        return x01
    h, w = x01.shape[-2:]
    sh, sw = side(h, frac), side(w, frac)
    small = F.interpolate(x01, (sh, sw), mode="bilinear", align_corners=False, antialias=True)  # [N, C, sh, sw]
    out = torch.full_like(x01, fill)
    t, l = (h - sh) // 2, (w - sw) // 2
    out[..., t:t + sh, l:l + sw] = small
    return out


def confidence(logits: torch.Tensor) -> torch.Tensor:
    """[N, K] logits -> [N]: mean distance of the bit probabilities from 1/2 (0 = undecided, 0.5 = certain)."""
    return (torch.sigmoid(logits.float()) - 0.5).abs().mean(dim=1)


class ScaleSearch:
    """decode(img01 [N, 3, R, R]) -> logits [N, K] of the most confident candidate; `last_scales` and `last_angles`
    hold the scale and the rotation undone for each image of the latest call. The candidates are the `scales` (at
    no rotation), then the `angles` (at scale 1)."""

    def __init__(self, decode: Callable[[torch.Tensor], torch.Tensor], scales: tuple[float, ...] = DEFAULT_SCALES,
                 min_confidence: float = MIN_CONFIDENCE, min_gain: float = MIN_GAIN, angles: tuple[float, ...] = ()):
        if 1.0 not in scales or len(set(scales)) < 2:
            raise GanprintError("scale search needs the unscaled candidate 1.0 and at least one smaller scale")
        self.decode, self.min_confidence, self.min_gain = decode, float(min_confidence), float(min_gain)
        self.scales = (1.0, *sorted((f for f in scales if f != 1.0), reverse=True))
        self.angles = tuple(float(a) for a in angles if a != 0)
        self.last_scales: torch.Tensor | None = None
        self.last_angles: torch.Tensor | None = None

    def candidates(self, x01: torch.Tensor):
        """The candidate images, in the order of `last_scales`' table: the scales, then the angles."""
        for f in self.scales:
            yield unzoom(x01, f)
        for a in self.angles:
            yield rotate(x01, -a)

    def __call__(self, x01: torch.Tensor) -> torch.Tensor:
        logits = torch.stack([self.decode(c) for c in self.candidates(x01)], dim=1)  # [N, S + A, K]
        conf = torch.stack([confidence(logits[:, j]) for j in range(logits.shape[1])], dim=1)  # [N, S + A]
        pick = choose_scale(conf, self.min_confidence, self.min_gain)  # [N]
        table = torch.tensor([*self.scales, *[1.0] * len(self.angles)], device=conf.device)
        self.last_scales = table[pick]
        self.last_angles = torch.tensor([0.0] * len(self.scales) + list(self.angles), device=conf.device)[pick]
        return logits[torch.arange(len(pick), device=pick.device), pick]  # [N, K]


def choose_scale(conf: torch.Tensor, min_confidence: float = MIN_CONFIDENCE,
                 min_gain: float = MIN_GAIN) -> torch.Tensor:
    """conf [N, S] of the candidates in ScaleSearch order (column 0 unscaled) -> [N] the chosen column: the most
    confident other candidate (ties keep the larger scale) where it beats column 0 and reaches both `min_confidence`
    and column 0 + `min_gain`, else 0."""
    best, arg = conf[:, 1:].max(dim=1)  # the first maximum on ties
    ok = (best > conf[:, 0]) & (best >= min_confidence) & (best >= conf[:, 0] + min_gain)
    return torch.where(ok, arg + 1, torch.zeros_like(arg))
