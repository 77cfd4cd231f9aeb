"""Does a fingerprint model work on photos from sources it never saw? Train on crops of one set of photos, tune
nothing on the test source, and measure on (a) held-out photos of the same packages (validation) and (b) photos
of another source altogether (test: Debian's opencv-doc sample photos, `apt-get install opencv-doc`).

    python benchmarks/generalisation.py WORK [--preset demo-32] [--vary | --no-vary] [--seed 0]

Writes WORK/results.jsonl (one row per set x measure) and prints a table. Re-running resumes every stage.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

import ganprint
from ganprint.artificial.config import resolve_config
from ganprint.core.images import read_image, to_tensor01
from ganprint.data.samples import write_samples
from ganprint.evaluation.quality import psnr, ssim

OPENCV = Path("/usr/share/doc/opencv-doc/examples/data")
# Colour photographs of real scenes (the folder also holds logos, charts and calibration boards).
OPENCV_PHOTOS = ("aero1.jpg", "aero3.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "basketball1.png", "building.jpg",
                 "butterfly.jpg", "fruits.jpg", "graf1.png", "home.jpg", "leuvenA.jpg", "lena.jpg", "messi5.jpg",
                 "orange.jpg", "squirrel_cls.jpg", "stuff.jpg", "HappyFish.jpg", "Blender_Suzanne1.jpg")


def _opencv_folder(work: Path) -> Path:
    folder = work / "opencv-photos"
    folder.mkdir(parents=True, exist_ok=True)
    found = [name for name in OPENCV_PHOTOS if (OPENCV / name).is_file()]
    if not found:
        raise SystemExit(f"no photos in {OPENCV}: apt-get install opencv-doc")
    for name in found:
        link = folder / name
        if not link.exists():
            os.symlink(OPENCV / name, link)
    return folder


def _data(work: Path, vary: bool, n_train: int, n_test: int) -> dict[str, Path]:
    d = {"train": work / ("train-varied" if vary else "train-plain")}
    write_samples(d["train"], 32, n_train, seed=0, photos="train", vary=vary)
    other = str(_opencv_folder(work))
    for name, photos, seed in (("val", "heldout", 1), ("val-clean", "heldout", 2), ("test", other, 3),
                               ("test-clean", other, 4)):
        d[name] = work / name
        write_samples(d[name], 32, n_test, seed=seed, photos=photos)
    return d


def _fidelity(clean_dir: Path, marked_dir: Path) -> tuple[float, float]:
    files = sorted(clean_dir.glob("*.png"))
    x = torch.stack([to_tensor01(read_image(p)) for p in files])
    y = torch.stack([to_tensor01(read_image(marked_dir / p.name)) for p in files])
    return float(psnr(y, x).mean()), float(ssim(y, x).mean())


def _measure(model: Path, d: dict[str, Path], out: Path, set_name: str, fpr: float) -> list[dict]:
    ganprint.embed(model, d[set_name], out / f"emb-{set_name}", seed=7)  # a fresh fingerprint per image
    det = ganprint.detect(model, out / f"emb-{set_name}/fingerprinted_images", out / f"det-{set_name}",
                          embedded=out / f"emb-{set_name}/embedded_fingerprints.txt", fpr=fpr)
    # Clean crops share the fingerprinted crops' file names, so each is tested against one issued fingerprint.
    clean = ganprint.detect(model, d[f"{set_name}-clean"], out / f"det-{set_name}-clean",
                            embedded=out / f"emb-{set_name}/embedded_fingerprints.txt", fpr=fpr)
    p, s = _fidelity(d[set_name], out / f"emb-{set_name}/fingerprinted_images")
    vals = {"bit_acc": det["mean_bit_accuracy"], "detected": det["detected_rate"],
            "clean_detected": clean["detected_rate"], "psnr_db": p, "ssim": s}
    return [{"set": set_name, "metric": k, "value": v} for k, v in vals.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("work", type=Path)
    ap.add_argument("--preset", default="demo-32")
    ap.add_argument("--vary", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-count", type=int, default=4000)
    ap.add_argument("--test-count", type=int, default=500)
    ap.add_argument("--fpr", type=float, default=1e-6)
    a = ap.parse_args()
    d = _data(a.work, a.vary, a.train_count, a.test_count)
    run = a.work / f"{a.preset}-{'varied' if a.vary else 'plain'}-s{a.seed}"
    t0 = time.time()
    model = ganprint.train(resolve_config(a.preset, data=str(d["train"]), seed=a.seed), run / "train")
    train_s = time.time() - t0
    rows = [r for s in ("val", "test") for r in _measure(model, d, run, s, a.fpr)]
    for r in rows:
        r.update(preset=a.preset, vary=a.vary, seed=a.seed, train_s=round(train_s, 1))
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for r in rows:
        print(f"{a.preset:10s} vary={a.vary!s:5s} {r['set']:5s} {r['metric']:15s} {r['value']:.4f}")


if __name__ == "__main__":
    main()
