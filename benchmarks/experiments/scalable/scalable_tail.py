"""What the low tail of a scalable run's bit accuracy is (RESULTS-scalable.md §3a).

    python benchmarks/experiments/scalable/scalable_tail.py RUN_DIR [--images 1500] [--seed 1]

Draws N latents, generates each twice with two random fingerprints (the exported G_ema, images rounded to 8 bits
as saved), decodes them, and prints per draw the mean bit accuracy and the count below 0.875; then, for the images
below 0.9, their accuracy with the other fingerprint, the correlation of the two draws, and their pixel mean and
standard deviation (0-255) against the mean over all images.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ganprint.core.artifacts import load_export
from ganprint.nets.scalable import fingerprint_length_of
from ganprint.nets.stylegan2 import to_uint8
from ganprint.scalable.attribute import decode_images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--images", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    G, cfg, _ = load_export(a.run / "scalable-G.safetensors", kind="scalable-G")
    E, _, _ = load_export(a.run / "scalable-decoder.safetensors", kind="scalable-decoder")
    k, n = fingerprint_length_of(cfg), a.images
    g = torch.Generator().manual_seed(a.seed)
    torch.manual_seed(a.seed)  # G's per-layer noise draws from the global generator
    z = torch.randn(n, G.z_dim, generator=g)
    accs, imgs = [], None
    for draw in range(2):
        c = torch.randint(0, 2, (n, k), generator=g).float()
        with torch.no_grad():
            imgs = to_uint8(torch.cat([G(z[i:i + 250], c[i:i + 250]) for i in range(0, n, 250)]))  # [N, R, R, 3]
        bits = decode_images(E, imgs)  # [N, K] float 0/1
        acc = (bits == c).float().mean(1)
        accs.append(acc)
        print(f"draw {draw}: mean bit accuracy {acc.mean():.4f}, images below 0.875: {int((acc < 0.875).sum())}")
    low = accs[0] < 0.9
    print(f"{int(low.sum())} images below 0.9 in draw 0; the same latents in draw 1: "
          + " ".join(f"{v:.3f}" for v in accs[1][low].tolist()))
    print(f"correlation of the two draws' accuracies: {np.corrcoef(accs[0], accs[1])[0, 1]:.2f}")
    px = torch.as_tensor(np.asarray(imgs)).reshape(n, -1).float()  # [N, R*R*3], draw 1
    lo1 = accs[1] < 0.9
    print("draw-1 images below 0.9: pixel mean " + " ".join(f"{v:.0f}" for v in px[lo1].mean(1).tolist())
          + "; pixel std " + " ".join(f"{v:.0f}" for v in px[lo1].std(1).tolist())
          + f"; pixel std over all images {px.std(1).mean():.0f}")


if __name__ == "__main__":
    main()
