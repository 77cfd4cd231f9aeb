"""Bit accuracy of scale-search decoding against its confidence floor, per attack (RESULTS-eval.md §0a).

    python benchmarks/scale_search_floor.py MODEL EMBED_DIR [--images 300]

EMBED_DIR is a `ganprint embed` output (fingerprinted_images/ + embedded_fingerprints.txt). For each attack it
prints the accuracy at scale 1, the oracle (best candidate, which needs the reference), and the accuracy of the
reference-free choice for floors 0 (plain most-confident) to 0.35, and for the floor of 0.3 combined with a
margin over the unscaled reading's confidence (`min_gain`, 0 to 0.1; the default 0.05 was chosen with this
script on the first 300 held-out crops of four robust-32 models, RESULTS-eval.md §0b).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ganprint.artificial.records import read_fingerprint_txt
from ganprint.core.fingerprints import parse_bits
from ganprint.core.images import read_image, to_tensor01
from ganprint.evaluation.evaluate import load_decoder
from ganprint.perturb.attacks import parse_attacks
from ganprint.perturb.scale_search import DEFAULT_SCALES, choose_scale, confidence, unzoom

ATTACKS = ["none", "jpeg:50", "jpeg:70", "crop:0.9", "crop:0.75", "crop:0.6", "noise:0.1", "blur:1.5",
           "jpeg:50+crop:0.75"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("embed_dir", type=Path)
    ap.add_argument("--images", type=int, default=300)
    a = ap.parse_args()
    dec, _, k, _ = load_decoder(a.model)
    files = sorted((a.embed_dir / "fingerprinted_images").rglob("*.png"))[:a.images]
    ref = read_fingerprint_txt(a.embed_dir / "embedded_fingerprints.txt")
    names = [f.relative_to(a.embed_dir / "fingerprinted_images").as_posix() for f in files]
    truth = torch.stack([parse_bits(ref[n], k) for n in names])  # [N, K]
    x = torch.stack([to_tensor01(read_image(f)) for f in files])  # [N, 3, R, R]
    for spec in ATTACKS:
        y = parse_attacks([spec])[0](x, 0)
        with torch.no_grad():
            logits = torch.stack([dec(unzoom(y, f)) for f in DEFAULT_SCALES], 1)  # [N, S, K]
        conf = torch.stack([confidence(logits[:, j]) for j in range(len(DEFAULT_SCALES))], 1)  # [N, S]
        acc = ((logits > 0).float() == truth[:, None]).float().mean(2)  # [N, S]
        out = [spec, f"scale 1: {acc[:, 0].mean():.3f}", f"oracle: {acc.max(1).values.mean():.3f}"]
        for floor in (0.0, 0.28, 0.3, 0.32, 0.35):
            pick = choose_scale(conf, min_confidence=floor, min_gain=0.0)  # [N]
            out.append(f"floor {floor:.2f}: {acc.gather(1, pick[:, None]).mean():.3f}")
        for gain in (0.0, 0.03, 0.05, 0.08, 0.1):
            pick = choose_scale(conf, min_confidence=0.3, min_gain=gain)
            out.append(f"0.3 + gain {gain:.2f}: {acc.gather(1, pick[:, None]).mean():.3f}")
        print(" | ".join(out))


if __name__ == "__main__":
    main()
