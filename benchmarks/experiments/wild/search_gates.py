"""The gates of the wide search for tiled readings, tuned on validation photos (RESULTS-wild.md §5).

The photos are 512-px crops of the built-in `heldout` and `train` photos (never the benchmark's opencv-doc photos).
Each is fingerprinted as 4 x 4 tiles at the target PSNR, attacked, and every candidate of the "wide" search is
decoded once; each pair of gates (`min_confidence`, `min_gain`) then picks its candidate from those readings, on
the fingerprinted photos and on the same photos without a fingerprint.

    python benchmarks/experiments/wild/search_gates.py --model MODEL --work DIR [--psnr 35 40.4]
        [--out benchmarks/experiments/wild/results/search-gates.md]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ganprint.core.artifacts import load_export
from ganprint.core.images import read_image
from ganprint.core.stats import match_threshold
from ganprint.evaluation.quality import psnr
from ganprint.inference.fullsize import decoder_view, tiled_encode, tiled_logits
from ganprint.perturb import ops
from ganprint.perturb.scale_search import WIDE_ANGLES, WIDE_SCALES, ScaleSearch, choose_scale, confidence

TILES = 4
GATES = [(0.4, 0.03), (0.3, 0.03), (0.2, 0.03), (0.1, 0.03), (0.0, 0.0)]
ATTACKS = {"none": lambda x: x, "JPEG 50": lambda x: ops.jpeg(x, 50), "crop 0.75": lambda x: ops.crop(x, 0.75),
           "crop 0.5": lambda x: ops.crop(x, 0.5),
           "social": lambda x: ops.jpeg(ops.shrink(ops.crop(x, 0.9), 0.5), 75),
           "rotate 2": lambda x: ops.rotate(x, 2.0), "rotate 5": lambda x: ops.rotate(x, 5.0),
           "screenshot": lambda x: ops.jpeg(ops.sharpen(ops.shrink(x, 0.7), 1.0), 80)}


def photos(work: Path) -> list[torch.Tensor]:
    out = []
    for split, seed in (("heldout", 5), ("train", 6)):
        folder = work / f"{split}512"
        if not (folder / "sources.json").is_file():
            subprocess.run([sys.executable, "-m", "ganprint", "data", "samples", "--outdir", str(folder), "--count",
                            "12", "--resolution", "512", "--photos", split, "--seed", str(seed)], check=True)
        out += [torch.from_numpy(read_image(p)).permute(2, 0, 1)[None].float() / 255
                for p in sorted(folder.glob("*.png"))]
    return out


@torch.no_grad()
def fingerprint(enc, res, bits, x, strength):
    v = decoder_view(x, TILES * res)
    r = F.interpolate(tiled_encode(enc, bits, v, TILES) - v, size=x.shape[-2:], mode="bicubic", align_corners=False)
    return ((x + strength * r).clamp(0, 1) * 255).round() / 255


@torch.no_grad()
def readings(dec, res, images, attack, bits):
    """Per image: the confidence and the matching bits of every candidate of the wide search."""
    search = ScaleSearch(lambda v: tiled_logits(dec, v, TILES), WIDE_SCALES, angles=WIDE_ANGLES)
    out = []
    for x in images:
        logits = torch.cat([search.decode(c) for c in search.candidates(decoder_view(attack(x), TILES * res))])
        out.append((confidence(logits), ((logits > 0).float() == bits).sum(1)))
    return out


def table(model: str, work: Path, target: float) -> list[str]:
    module, cfg, _ = load_export(model, kind=("stega",))
    enc, dec, res, k = module.enc.eval(), module.dec.eval(), int(cfg["resolution"]), int(cfg["fingerprint_length"])
    bits = (torch.rand(1, k, generator=torch.Generator().manual_seed(3)) > 0.5).float()
    imgs = photos(work)
    p1 = np.mean([float(psnr(fingerprint(enc, res, bits, x, 1.0), x)[0]) for x in imgs[:4]])
    marked = [fingerprint(enc, res, bits, x, 10 ** ((p1 - target) / 20)) for x in imgs]
    got = np.mean([float(psnr(y, x)[0]) for x, y in zip(imgs, marked)])
    need = match_threshold(k, 1e-6)
    reads = {name: (readings(dec, res, marked, f, bits), readings(dec, res, imgs, f, bits))
             for name, f in ATTACKS.items()}
    lines = [f"### {got:.1f} dB ({len(imgs)} photos, {k} bits, detected: >= {need} matching)", "",
             "| min_confidence, min_gain | clean photos detected | " + " | ".join(ATTACKS) + " |",
             "|---" * (len(ATTACKS) + 2) + "|"]
    for mc, mg in GATES:
        cells, false_pos = [], 0
        for fp, clean in reads.values():
            pick = [choose_scale(c[None], mc, mg)[0] for c, _ in fp]
            m = np.array([float(mt[j]) for (_, mt), j in zip(fp, pick)])
            cells.append(f"{m.mean() / k:.3f} / {np.mean(m >= need):.2f}")
            false_pos += sum(float(mt[choose_scale(c[None], mc, mg)[0]]) >= need for c, mt in clean)
        lines.append(f"| {mc}, {mg} | {false_pos} of {len(imgs) * len(ATTACKS)} | " + " | ".join(cells) + " |")
    return lines + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--psnr", type=float, nargs="+", default=[35.0, 40.4])
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "search-gates.md"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    lines = ["# Gates of the wide search, tiled readings (4 x 4), validation photos", "",
             "Cells: mean bit accuracy / detected at FPR 1e-6, the candidate each gate pair keeps.", ""]
    for target in args.psnr:
        lines += table(args.model, Path(args.work), target)
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
