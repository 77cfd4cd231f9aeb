"""The watermarking library people install instead, `invisible-watermark`, run beside ganprint in `evaluate`.

Its three methods (dwtDct, dwtDctSvd: transform-domain, no network; rivaGan: a learned encoder/decoder whose ONNX
weights ship in the wheel) embed 32-bit messages into images of at least 256 x 256 px and read back hard bits.
`evaluate` embeds a fixed message with each method into the `clean` images at their own size, applies the same
attacks, and scores the bits read back exactly as it scores ganprint's (`ganprint.evaluation.evaluate`), so the
rows and the summary are directly comparable. Where an attack leaves fewer than 256 x 256 pixels (a resize to
0.25 of a 512-px image), the image is enlarged to the library's minimum before decoding, as a user would have to.
The library reads BGR arrays; the conversion is done here.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ganprint.core.errors import GanprintError
from ganprint.core.images import psnr_u8
from ganprint.core.seeds import derive_seed
from ganprint.evaluation.sources import EvalBatch
from ganprint.perturb.ops import from_uint8_hwc, to_uint8_hwc

METHODS = ("dwtDct", "dwtDctSvd", "rivaGan")
BITS = 32  # rivaGan reads 32 bits only; the two others take any length, and get the same 32
MIN_PIXELS = 256 * 256  # the library refuses smaller images


def parse_baselines(spec) -> list[str]:
    """`baselines` as given ("imwatermark" for all three, or method names, comma- or space-separated)."""
    items = [spec] if isinstance(spec, str) else list(spec or ())
    names: list[str] = []
    for item in items:
        for tok in str(item).replace(",", " ").split():
            tok = tok.removeprefix("imwatermark:")
            picked = METHODS if tok.lower() in ("imwatermark", "invisible-watermark", "all") else \
                [m for m in METHODS if m.lower() == tok.lower()]
            if not picked:
                raise GanprintError(f"unknown baseline {tok!r} in `baselines`; known: imwatermark (all three), "
                                    f"{', '.join(METHODS)}")
            names += [m for m in picked if m not in names]
    if items and not names:
        raise GanprintError(f"`baselines` {spec!r} names no method; give imwatermark or some of {', '.join(METHODS)}")
    return names


@functools.lru_cache(maxsize=1)
def _library():
    try:
        import imwatermark
    except ImportError:
        raise GanprintError("the `baselines` need invisible-watermark: pip install -e '.[baselines]' (it ships "
                            "its weights and runs offline)") from None
    imwatermark.WatermarkEncoder.loadModel()  # rivaGan's ONNX sessions, once per process
    return imwatermark


def message(seed: int) -> np.ndarray:
    """The 32-bit message every image gets, a function of `seed`."""
    return np.random.default_rng(derive_seed(seed, 0xBA5E)).integers(0, 2, BITS).astype(np.uint8)


def _bgr(rgb_u8: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb_u8[..., ::-1])


def embed(method: str, rgb_u8: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """`rgb_u8` (uint8 [H, W, 3], at least 256 x 256 px in area) with `bits` embedded by `method`."""
    lib = _library()
    enc = lib.WatermarkEncoder()
    enc.set_watermark("bits", [int(b) for b in bits])
    return np.ascontiguousarray(enc.encode(_bgr(rgb_u8), method)[..., ::-1])


def decode(method: str, rgb_u8: np.ndarray) -> np.ndarray:
    """The 32 bits `method` reads from `rgb_u8` (enlarged to the library's minimum area when smaller)."""
    h, w = rgb_u8.shape[:2]
    if h * w < MIN_PIXELS:
        f = math.sqrt(MIN_PIXELS / (h * w))
        t = torch.from_numpy(np.ascontiguousarray(rgb_u8)).permute(2, 0, 1)[None].float()
        t = F.interpolate(t, size=(math.ceil(h * f), math.ceil(w * f)), mode="bicubic", align_corners=False)
        rgb_u8 = t.round().clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()
    bits = _library().WatermarkDecoder("bits", BITS).decode(_bgr(rgb_u8), method)
    return np.asarray(bits, dtype=np.uint8)


def decoder(method: str):
    """decode(x01 [N, 3, H, W]) -> logits [N, 32] (+-1: the library gives hard bits), for `Scoring`."""
    def read(x01: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.stack([decode(method, a) for a in to_uint8_hwc(x01)])).float() * 2 - 1

    return read


@dataclass
class BaselineSource:
    """The images of `source` (a `FolderSource` of clean images) watermarked by `method` with `bits`; records
    each image's PSNR against its original in `psnr`. With `marked=False`, the same images unmarked, as the
    clean set of the method."""

    source: object
    method: str
    bits: np.ndarray
    marked: bool = True

    def __post_init__(self) -> None:
        self.psnr: list[float] = []

    def __len__(self) -> int:
        return len(self.source)

    def __iter__(self) -> Iterator[EvalBatch]:
        ref = torch.from_numpy(self.bits).float()
        for b in self.source:
            if not self.marked:
                yield EvalBatch(b.images, b.names, ref.expand(len(b.names), BITS))
                continue
            u8 = to_uint8_hwc(b.images)
            out = np.stack([embed(self.method, _large_enough(a), self.bits) for a in u8])
            self.psnr += [psnr_u8(a, o) for a, o in zip(u8, out)]
            yield EvalBatch(from_uint8_hwc(out, b.images), b.names, ref.expand(len(b.names), BITS))


def _large_enough(rgb_u8: np.ndarray) -> np.ndarray:
    h, w = rgb_u8.shape[:2]
    if h * w < MIN_PIXELS:
        raise GanprintError(f"invisible-watermark embeds only into images of at least 256x256 px; this one is "
                            f"{w}x{h}: evaluate the baselines with `keep_size` on images of 256 px or more")
    return rgb_u8


__all__ = ["BITS", "METHODS", "BaselineSource", "decode", "decoder", "embed", "message", "parse_baselines"]
