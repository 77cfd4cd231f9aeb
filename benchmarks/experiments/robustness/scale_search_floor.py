"""Choose the scale search's confidence floor and margin on a validation set, never on the reported test set.

    python benchmarks/experiments/robustness/scale_search_floor.py MODEL EMBED_DIR [--images N]

EMBED_DIR is a `ganprint embed` output (fingerprinted_images/ + embedded_fingerprints.txt) of VALIDATION images:
with benchmarks/experiments/generalisation/generalisation.py, WORK/<run>/emb-val (crops of the held-out photos of the sample packages), not
emb-test (the other photo source, which is reported). For each attack it prints the accuracy at scale 1 and the
oracle (best candidate, which needs the reference); then, for every floor x margin (`min_confidence`,
`min_gain` of `ganprint.perturb.scale_search`), the reference-free choice's bit accuracy under the attacks that
are reported (clean, JPEG 50, blur 1, noise 0.05 / 0.1, 75 % crop) and their mean, the objective. The best pair
is printed last; ties keep the current defaults, then the smaller floor and margin.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import torch

from ganprint.artificial.records import read_fingerprint_txt
from ganprint.core.fingerprints import parse_bits
from ganprint.core.images import read_image, to_tensor01
from ganprint.evaluation.evaluate import load_decoder
from ganprint.perturb.attacks import parse_attacks
from ganprint.perturb.scale_search import DEFAULT_SCALES, MIN_CONFIDENCE, MIN_GAIN, choose_scale, confidence, unzoom

REPORTED = ("none", "jpeg:50", "blur:1", "noise:0.05", "noise:0.1", "crop:0.75")
EXTRA = ("jpeg:70", "crop:0.9", "crop:0.6", "blur:1.5", "jpeg:50+crop:0.75")
FLOORS = (0.0, 0.25, 0.28, 0.3, 0.32, 0.35, 0.4)
GAINS = (0.0, 0.02, 0.03, 0.05, 0.08, 0.1, 0.15)


def _readings(model: str, embed_dir: Path, images: int | None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """attack -> (bit accuracy [N, S], confidence [N, S]) of every scale candidate."""
    dec, _, k, _ = load_decoder(model)
    files = sorted((embed_dir / "fingerprinted_images").rglob("*.png"))[:images]
    ref = read_fingerprint_txt(embed_dir / "embedded_fingerprints.txt")
    names = [f.relative_to(embed_dir / "fingerprinted_images").as_posix() for f in files]
    truth = torch.stack([parse_bits(ref[n], k) for n in names])  # [N, K]
    x = torch.stack([to_tensor01(read_image(f)) for f in files])  # [N, 3, R, R]
    out = {}
    for spec in REPORTED + EXTRA:
        y = parse_attacks([spec])[0](x, 0)
        with torch.no_grad():
            logits = torch.stack([dec(unzoom(y, f)) for f in DEFAULT_SCALES], 1)  # [N, S, K]
        conf = torch.stack([confidence(logits[:, j]) for j in range(len(DEFAULT_SCALES))], 1)  # [N, S]
        out[spec] = (((logits > 0).float() == truth[:, None]).float().mean(2), conf)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("embed_dir", type=Path)
    ap.add_argument("--images", type=int, default=None, help="the first N images (default: all)")
    a = ap.parse_args()
    readings = _readings(a.model, a.embed_dir, a.images)
    for spec, (acc, _) in readings.items():
        print(f"{spec:18s} scale 1: {acc[:, 0].mean():.3f}  oracle: {acc.max(1).values.mean():.3f}")
    print("floor  margin | " + " | ".join(REPORTED) + " | mean")
    scores = {}
    for floor, gain in itertools.product(FLOORS, GAINS):
        accs = []
        for spec in REPORTED:
            acc, conf = readings[spec]
            pick = choose_scale(conf, min_confidence=floor, min_gain=gain)  # [N]
            accs.append(float(acc.gather(1, pick[:, None]).mean()))
        scores[(floor, gain)] = sum(accs) / len(accs)
        print(f"{floor:.2f}   {gain:.2f}   | " + " | ".join(f"{v:.3f}" for v in accs) + f" | {scores[floor, gain]:.4f}")
    default = (MIN_CONFIDENCE, MIN_GAIN)
    best = max(scores, key=lambda fg: (round(scores[fg], 4), fg == default, -fg[0], -fg[1]))
    print(f"best: floor {best[0]:.2f} margin {best[1]:.2f} (mean {scores[best]:.4f}); current defaults "
          f"floor {default[0]:.2f} margin {default[1]:.2f} (mean {scores.get(default, float('nan')):.4f})")


if __name__ == "__main__":
    main()
