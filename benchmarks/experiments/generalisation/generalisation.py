"""Does a fingerprint model work on photos from sources it never saw? Train on crops of one set of photos, tune
nothing on the test source, and measure on (a) held-out photos of the same packages (validation) and (b) photos
of another source altogether (test: Debian's opencv-doc sample photos, `apt-get install opencv-doc`).

    python benchmarks/experiments/generalisation/generalisation.py WORK [--preset demo-32] [--vary | --no-vary] [--seed 0] [--steps N]
        [--robustness] [--only-val]

Writes WORK/<run>/results.jsonl (one row per set x measure) and prints a table. Re-running resumes every stage.
`--robustness` also runs `ganprint evaluate` (JPEG, blur, noise, crop, resize; with and without `--scale-search
auto`) on each set, as in RESULTS-eval.md §0b. `--only-val` measures the validation set alone: use it while tuning
(e.g. the scale-search floor with scale_search_floor.py on WORK/<run>/emb-val), so that the test set is read once.
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
from ganprint.core.files import atomic_write_text, read_jsonl
from ganprint.core.images import read_image, to_tensor01
from ganprint.data.samples import write_samples
from ganprint.evaluation.evaluate import EvaluateSpec, run_evaluate
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


# The attacks of RESULTS-eval.md §0b (the clean reading is always added).
ATTACKS = ("jpeg:q=90,70,50,30", "blur:sigma=0.5,1,1.5", "noise:std=0.02,0.05,0.1", "crop:frac=0.9,0.75,0.6",
           "resize:scale=0.75,0.5")


def _robustness(model: Path, d: dict[str, Path], out: Path, set_name: str, fpr: float) -> list[dict]:
    """Mean bit accuracy and detection rate per attack, with plain decoding and with `--scale-search auto`."""
    rows = []
    emb = out / f"emb-{set_name}"
    for search in ("none", "auto"):
        ev = out / f"eval-{set_name}-ss-{search}"
        if not (ev / "results.jsonl").is_file():
            run_evaluate(EvaluateSpec(model=model, data=emb / "fingerprinted_images", outdir=ev,
                                      embedded=emb / "embedded_fingerprints.txt", attacks=list(ATTACKS), fpr=fpr,
                                      clean=d[f"{set_name}-clean"], device="cpu", scale_search=search))
        groups: dict[tuple[str, str], list[dict]] = {}
        for r in read_jsonl(ev / "results.jsonl"):
            groups.setdefault((r["set"], r["spec"]), []).append(r)
        for (kind, spec), rs in sorted(groups.items()):
            prefix = "" if kind == "fingerprinted" else "clean_"
            for metric, key in (("bit_acc", "bit_accuracy"), ("detected", "detected")):
                rows.append({"set": set_name, "metric": f"{prefix}{metric}:{spec}:ss-{search}",
                             "value": sum(float(r[key]) for r in rs) / len(rs)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("work", type=Path)
    ap.add_argument("--preset", default="demo-32")
    ap.add_argument("--vary", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-count", type=int, default=4000)
    ap.add_argument("--test-count", type=int, default=500)
    ap.add_argument("--fpr", type=float, default=1e-6)
    ap.add_argument("--steps", type=int, default=None, help="override the preset's training steps")
    ap.add_argument("--robustness", action="store_true", help="also evaluate under image edits (§0b attacks)")
    ap.add_argument("--only-val", action="store_true", help="measure the validation set only (while tuning)")
    ap.add_argument("--at-step", type=int, default=None,
                    help="measure the run's export at this step (a checkpoint of a run still training) instead")
    a = ap.parse_args()
    d = _data(a.work, a.vary, a.train_count, a.test_count)
    steps = "" if a.steps is None else f"-steps{a.steps}"
    run = a.work / f"{a.preset}-{'varied' if a.vary else 'plain'}{steps}-s{a.seed}"
    t0 = time.time()
    if a.at_step is None:
        model = ganprint.train(resolve_config(a.preset, data=str(d["train"]), seed=a.seed, steps=a.steps),
                               run / "train")
    else:
        model, run = run / "train" / f"export-{a.at_step:08d}.safetensors", run / f"at-step-{a.at_step}"
    train_s = time.time() - t0  # of this invocation: a resumed or finished run counts only what was left
    sets = ("val",) if a.only_val else ("val", "test")
    rows = [r for s in sets for r in _measure(model, d, run, s, a.fpr)]
    if a.robustness:
        rows += [r for s in sets for r in _robustness(model, d, run, s, a.fpr)]
    for r in rows:
        r.update(preset=a.preset, vary=a.vary, seed=a.seed, steps=a.steps, at_step=a.at_step,
                 train_s=round(train_s, 1))
    name = "results-val.jsonl" if a.only_val else "results.jsonl"
    atomic_write_text(run / name, "".join(json.dumps(r) + "\n" for r in rows))
    for r in rows:
        print(f"{a.preset:10s} vary={a.vary!s:5s} {r['set']:5s} {r['metric']:40s} {r['value']:.4f}")


if __name__ == "__main__":
    main()
