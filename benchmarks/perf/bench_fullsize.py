"""Speed and peak memory of `embed --keep-size` and `detect` on photos of 256 px and of 4000 x 3000 px.

Each measurement is one whole `ganprint` process (start-up included), its peak RSS read from the kernel (wait4), on
N copies of a photo brought to that size; the images/s of the large photos stand beside the 256-px ones, and two
counts of large photos show whether memory grows with the data set (it must not).

    python benchmarks/perf/bench_fullsize.py --model MODEL [--photo FILE] [--counts 4 16] [--small 256] \
        [--threads 2] [--out benchmarks/perf/results/fullsize.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_photos(photo: str | None, folder: Path, n: int, w: int, h: int) -> None:
    """N distinct copies (a different crop offset each) of `photo` at w x h, or of a smooth synthetic image."""
    folder.mkdir(parents=True, exist_ok=True)
    if photo:
        base = Image.open(photo).convert("RGB").resize((w + 64, h + 64), Image.BICUBIC)
    else:
        y, x = np.mgrid[0:h + 64, 0:w + 64] / max(w, h)
        base = Image.fromarray((np.stack([np.sin(7 * x + 3 * y), np.cos(5 * x - 4 * y), np.sin(9 * y)], -1)
                                * 110 + 128).astype(np.uint8))
    for i in range(n):
        dx, dy = (i * 7) % 64, (i * 13) % 64
        base.crop((dx, dy, dx + w, dy + h)).save(folder / f"photo{i:03d}.jpg", quality=92)


def run(cmd: list[str], threads: int) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one child process."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "GANPRINT_LOG": "WARNING"}
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr.read().decode()[-3000:]}")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--photo", default=None, help="a photo to scale to each size (default: a synthetic image)")
    ap.add_argument("--counts", type=int, nargs="+", default=[4, 16], help="numbers of 4000 x 3000 photos")
    ap.add_argument("--small", type=int, default=256, help="side of the small photos (64 of them)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="append the rows to this JSONL file")
    args = ap.parse_args()
    g = [sys.executable, "-m", "ganprint"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sets = [(f"{args.small}px", 64, args.small, args.small)] + [("4000x3000", n, 4000, 3000) for n in args.counts]
        for label, n, w, h in sets:
            src = Path(tmp) / f"{label}-{n}"
            make_photos(args.photo, src, n, w, h)
            emb, det = Path(tmp) / f"emb-{label}-{n}", Path(tmp) / f"det-{label}-{n}"
            t_e, m_e = run(g + ["embed", "--model", args.model, "--data", str(src), "--outdir", str(emb),
                                "--identical", "--keep-size", "--jobs", "1"], args.threads)
            t_d, m_d = run(g + ["detect", "--model", args.model, "--data", str(emb / "fingerprinted_images"),
                                "--outdir", str(det), "--embedded", str(emb / "embedded_fingerprints.txt"),
                                "--fpr", "0.01", "--jobs", "1"], args.threads)  # 0.01: also for tiny test models
            acc = json.loads((det / "summary.json").read_text()).get("mean_bit_accuracy")
            psnr = json.loads((emb / "manifest.json").read_text()).get("mean_psnr")
            row = {"images": label, "count": n, "threads": args.threads, "embed_s": round(t_e, 2),
                   "embed_images_per_s": round(n / t_e, 3), "embed_peak_mib": round(m_e),
                   "detect_s": round(t_d, 2), "detect_images_per_s": round(n / t_d, 3),
                   "detect_peak_mib": round(m_d), "bit_accuracy": acc, "psnr": psnr}
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)


if __name__ == "__main__":
    main()
