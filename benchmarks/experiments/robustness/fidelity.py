"""PSNR and SSIM of fingerprinted images against their originals (matched by relative path).

    python benchmarks/experiments/robustness/fidelity.py ORIGINALS_DIR FINGERPRINTED_DIR

Prints the mean of per-image PSNRs, the PSNR of the pooled MSE, the lowest image PSNR and the mean SSIM.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ganprint.core.images import read_image, to_tensor01
from ganprint.evaluation.quality import psnr, ssim


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("originals", type=Path)
    ap.add_argument("fingerprinted", type=Path)
    a = ap.parse_args()
    files = sorted(a.originals.rglob("*.png"))
    x = torch.stack([to_tensor01(read_image(p)) for p in files])  # [N, 3, R, R]
    y = torch.stack([to_tensor01(read_image(a.fingerprinted / p.relative_to(a.originals))) for p in files])
    p = psnr(y, x)
    pooled = 10 * torch.log10(1 / (y - x).square().mean())
    print(f"{len(files)} images: mean per-image PSNR {p.mean():.2f} dB, pooled {pooled:.2f} dB, "
          f"lowest {p.min():.2f} dB, SSIM {ssim(y, x).mean():.3f}")


if __name__ == "__main__":
    main()
