"""us per image to decode and encode PNG crops: Pillow against imagecodecs (libpng), the two paths of
`ganprint.core.images` (read_image / write_png). One thread, in memory (no file-system time), sample crops of seed 0.

    python benchmarks/perf/png_speed.py --resolution 32
    python benchmarks/perf/png_speed.py --resolution 128
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time

import imagecodecs
import numpy as np
from PIL import Image

from ganprint.data.samples import write_samples


def per_image_us(fn, items, rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for it in items:
            fn(it)
        best = min(best, time.perf_counter() - t0)
    return best / len(items) * 1e6


def pil_encode(a: np.ndarray, level: int = 6) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG", compress_level=level)
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--count", type=int, default=500)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        crops = [np.asarray(Image.open(p).convert("RGB")) for p in write_samples(tmp, a.resolution, a.count, seed=0)]
    pngs = [pil_encode(c) for c in crops]
    for c, p in zip(crops, pngs):
        assert np.array_equal(imagecodecs.png_decode(p), c)
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(imagecodecs.png_encode(c, level=6)))), c)
    rows = {
        "decode Pillow": per_image_us(lambda p: np.asarray(Image.open(io.BytesIO(p)).convert("RGB")), pngs),
        "decode imagecodecs": per_image_us(imagecodecs.png_decode, pngs),
        "encode Pillow (level 6)": per_image_us(pil_encode, crops),
        "encode imagecodecs (level 6)": per_image_us(lambda c: imagecodecs.png_encode(c, level=6), crops),
        "encode imagecodecs (level 1)": per_image_us(lambda c: imagecodecs.png_encode(c, level=1), crops),
    }
    size_pil = np.mean([len(p) for p in pngs])
    size_ic = np.mean([len(imagecodecs.png_encode(c, level=6)) for c in crops])
    size_1 = np.mean([len(imagecodecs.png_encode(c, level=1)) for c in crops])
    print(f"{a.count} crops of {a.resolution} px; bytes per file: Pillow (6) {size_pil:.0f}, imagecodecs level 6 "
          f"{size_ic:.0f}, level 1 {size_1:.0f}")
    for k, v in rows.items():
        print(f"{k:30s} {v:8.1f} us/image")


if __name__ == "__main__":
    main()
