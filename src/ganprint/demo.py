"""`ganprint demo`: the whole artificial-fingerprinting pipeline on built-in sample photos, on a laptop CPU.

Train a 32-px fingerprint autoencoder on crops of one set of photos, embed one fingerprint into crops of
photos it never saw, detect it, and measure fidelity (PSNR, SSIM), bit accuracy, detection rate on
fingerprinted images and false-positive rate on clean ones. Writes a Markdown report with a figure.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from ganprint.artificial.config import PRESETS
from ganprint.artificial.detect import detect
from ganprint.artificial.embed import embed
from ganprint.artificial.train import train_stega
from ganprint.core import bounds
from ganprint.core.files import atomic_path, atomic_write_json, atomic_write_text, check_writable_dir
from ganprint.core.images import read_image, to_tensor01
from ganprint.core.paths import OutputFolder
from ganprint.core.runtime import resolve_device
from ganprint.data.samples import write_samples
from ganprint.evaluation.quality import psnr, ssim
from ganprint.artificial.register import register_dataset

log = logging.getLogger(__name__)

RESOLUTION = 32


def run_demo(outdir: str | Path = "demo-out", seed: int = 0, train_count: int = 4000, test_count: int = 500,
             steps: int | None = None, device: str = "auto", fpr: float = 1e-6) -> dict:
    """Run the demo end to end; returns the summary dict (also written to `outdir`/summary.json).

    Re-running with the same arguments resumes: finished stages are not redone. An `outdir` of other settings, or
    one holding files ganprint did not write, is refused (`ganprint.core.paths.OutputFolder`).
    """
    bounds.SEED.check(seed, "seed")
    if steps is not None:
        bounds.STEPS.check(steps, "steps")
    outdir = check_writable_dir(outdir, "outdir")
    resolve_device(device)  # a bad `device` fails before the data are written
    # Each stage records its own identity in its folder (device and precision included); the demo's own settings:
    OutputFolder(outdir, "outdir", "demo", {"seed": seed, "train_count": train_count, "test_count": test_count,
                                            "steps": steps, "fpr": fpr}, labels={},
                 not_data=["examples.png"]).check().claim()
    t0 = time.time()
    timings: dict[str, float] = {}
    dirs = _write_data(outdir, seed, train_count, test_count)
    timings["data_s"] = time.time() - t0

    t1 = time.time()
    cfg = replace(PRESETS["demo-32"], data=str(dirs["train"]), seed=seed, device=device,
                  **({"steps": steps} if steps is not None else {}))
    model_path = train_stega(cfg, outdir / "train")
    timings["train_s"] = time.time() - t1

    t2 = time.time()
    emb = embed(model_path, dirs["heldout"], outdir / "embedded", identical=True, seed=seed, device=device)
    # Recorded so that the service, given this registry.sqlite as its `registry`, detects the demo's fingerprint.
    register_dataset(outdir / "registry.sqlite", "demo", emb["fingerprint"], model_path)
    timings["embed_s"] = time.time() - t2

    t3 = time.time()
    results = _detect_all(model_path, dirs, outdir, emb["fingerprint"], seed, fpr, device)
    timings["detect_s"] = time.time() - t3

    clean, marked = _load_pairs(dirs["heldout"], outdir / "embedded/fingerprinted_images")
    summary = _summary(emb["fingerprint"], train_count, results, clean, marked, fpr)
    summary.update(timings_s={k: round(v, 1) for k, v in timings.items()}, total_s=round(time.time() - t0, 1),
                   model=str(model_path))
    atomic_write_json(outdir / "summary.json", summary)
    _figure(clean, marked, outdir / "examples.png")
    atomic_write_text(outdir / "report.md", _report_md(summary))
    return summary


def _write_data(outdir: Path, seed: int, train_count: int, test_count: int) -> dict[str, Path]:
    """Training crops (varied, see `write_samples`) from one set of photos; test crops (to fingerprint, and
    clean) from photos held out, as they are."""
    dirs = {"train": outdir / "data/train", "heldout": outdir / "data/heldout", "clean": outdir / "data/heldout-clean"}
    plan = (("train", train_count, "train", seed), ("heldout", test_count, "heldout", seed + 1),
            ("clean", test_count, "heldout", seed + 2))
    for key, n, photos, s in plan:
        if not (dirs[key] / "SOURCES.md").exists():
            write_samples(dirs[key], resolution=RESOLUTION, count=n, seed=s, photos=photos, vary=key == "train")
    return dirs


def _detect_all(model_path: Path, dirs: dict[str, Path], outdir: Path, fp_bits: str, seed: int, fpr: float,
                device: str) -> dict[str, dict]:
    """Detection on fingerprinted and on clean images, and with a fresh fingerprint per image: one fingerprint's
    accuracy depends on its bit pattern, a fresh one per image measures the model rather than one draw."""
    out = {
        "fingerprinted": detect(model_path, outdir / "embedded/fingerprinted_images", outdir / "detect-fingerprinted",
                                fingerprint=fp_bits, fpr=fpr, device=device),
        "clean": detect(model_path, dirs["clean"], outdir / "detect-clean", fingerprint=fp_bits, fpr=fpr,
                        device=device),
    }
    out["embed_per_image"] = embed(model_path, dirs["heldout"], outdir / "embedded-per-image", seed=seed,
                                   device=device)
    out["per_image"] = detect(model_path, outdir / "embedded-per-image/fingerprinted_images",
                              outdir / "detect-per-image",
                              embedded=outdir / "embedded-per-image/embedded_fingerprints.txt", fpr=fpr, device=device)
    return out


def _summary(fp_bits: str, train_count: int, r: dict[str, dict], clean: torch.Tensor, marked: torch.Tensor,
             fpr: float) -> dict:
    return {
        "resolution": RESOLUTION,
        "fingerprint_length": len(fp_bits),
        "fingerprint": fp_bits,
        "train_images": train_count,
        "heldout_images": len(clean),
        "bit_accuracy_fingerprinted": r["fingerprinted"]["mean_bit_accuracy"],
        "detected_fingerprinted": r["fingerprinted"]["detected_rate"],
        "bit_accuracy_per_image_fingerprints": r["per_image"]["mean_bit_accuracy"],
        "detected_per_image_fingerprints": r["per_image"]["detected_rate"],
        "per_image_fingerprints": r["embed_per_image"]["fingerprinted"],
        "bit_accuracy_clean": r["clean"]["mean_bit_accuracy"],
        "false_positive_rate_clean": r["clean"]["detected_rate"],
        "nominal_fpr": fpr,
        "psnr_db": float(psnr(marked, clean).mean()),
        "ssim": float(ssim(marked, clean).mean()),
    }


def _load_pairs(clean_dir: Path, marked_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean held-out crops and their fingerprinted versions, matched by relative name, as [N,3,R,R] in [0,1]."""
    clean, marked = [], []
    for p in sorted(marked_dir.rglob("*.png")):
        rel = p.relative_to(marked_dir)
        src = clean_dir / rel
        if not src.exists():
            continue
        clean.append(to_tensor01(read_image(src)))
        marked.append(to_tensor01(read_image(p)))
    return torch.stack(clean), torch.stack(marked)


def _figure(clean: torch.Tensor, marked: torch.Tensor, path: Path, n: int = 8) -> None:
    n = min(n, len(clean))
    fig = Figure(figsize=(1.6 * n, 5.2))  # no pyplot: no global backend state
    axes = fig.subplots(3, n)
    for i in range(n):
        c, m = clean[i].permute(1, 2, 0).numpy(), marked[i].permute(1, 2, 0).numpy()
        r = np.clip(0.5 + 10 * (m - c), 0, 1)  # residual amplified 10x around grey
        for row, im in enumerate((c, m, r)):
            axes[row, i].imshow(im, interpolation="nearest")
            axes[row, i].axis("off")
    for row, name in enumerate(("clean", "fingerprinted", "residual x10")):
        axes[row, 0].set_title(name, fontsize=9, loc="left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def _report_md(s: dict) -> str:
    t = s["timings_s"]
    return f"""# ganprint demo report

A {s['resolution']} px fingerprint autoencoder with {s['fingerprint_length']}-bit fingerprints was trained on
{s['train_images']} crops of one set of sample photos, then one fingerprint was embedded into {s['heldout_images']}
crops of photos the model never saw in training.

| measure | value |
|---|---|
| bit accuracy, fingerprinted held-out images | {s['bit_accuracy_fingerprinted']:.4f} |
| detected at FPR {s['nominal_fpr']:g} (fingerprinted) | {s['detected_fingerprinted']:.3f} |
| bit accuracy, a fresh random fingerprint per held-out image | {s['bit_accuracy_per_image_fingerprints']:.4f} |
| detected at FPR {s['nominal_fpr']:g} (fresh fingerprint per image) | {s['detected_per_image_fingerprints']:.3f} |
| bit accuracy, clean held-out images | {s['bit_accuracy_clean']:.4f} |
| false positives at FPR {s['nominal_fpr']:g} (clean) | {s['false_positive_rate_clean']:.3f} |
| PSNR (fingerprinted vs clean) | {s['psnr_db']:.2f} dB |
| SSIM (fingerprinted vs clean) | {s['ssim']:.4f} |
| time: data / train / embed / detect / total | {t.get('data_s')} / {t.get('train_s')} / {t.get('embed_s')} / {t.get('detect_s')} / {s['total_s']} s |

Fingerprint: `{s['fingerprint']}`

![examples: clean, fingerprinted, residual x10](examples.png)

Files: `train/` (model, stats.jsonl, snapshots), `embedded/` (fingerprinted images, embedded_fingerprints.txt),
`registry.sqlite` (the fingerprint, registered as data set "demo" for `ganprint serve`),
`detect-fingerprinted/` and `detect-clean/` (detected_fingerprints.txt, detections.jsonl), `embedded-per-image/` and
`detect-per-image/` (the same with a fresh fingerprint per image), `summary.json`.
"""


def format_summary(s: dict) -> str:
    """A short terminal summary of a demo run."""
    acc = min(s["bit_accuracy_fingerprinted"], s["bit_accuracy_per_image_fingerprints"])
    ok = acc >= 0.99 and s["psnr_db"] >= 30 and s["false_positive_rate_clean"] == 0
    lines = [
        f"bit accuracy (fingerprinted, held-out photos): {s['bit_accuracy_fingerprinted']:.4f}",
        f"detected at FPR {s['nominal_fpr']:g}:                  {100 * s['detected_fingerprinted']:.1f} %",
        f"bit accuracy, fresh fingerprint per image:     {s['bit_accuracy_per_image_fingerprints']:.4f}",
        f"bit accuracy (clean):                          {s['bit_accuracy_clean']:.4f}",
        f"false positives (clean):                       {100 * s['false_positive_rate_clean']:.1f} %",
        f"PSNR / SSIM:                                   {s['psnr_db']:.2f} dB / {s['ssim']:.4f}",
        f"total time:                                    {s['total_s'] / 60:.1f} min",
        "result: " + ("PASS (bit acc >= 0.99, PSNR >= 30 dB, no clean image detected)" if ok else "below target"),
    ]
    return "\n".join(lines)
