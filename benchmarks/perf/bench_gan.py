"""Seconds per kimg of StyleGAN2 training (default: the `small` preset) on this machine.

Runs the real training loop on random uint8 images held in memory (no disk I/O), with snapshots pushed past the
end so that only training steps are timed, and reports the median s/kimg over ticks after the first (warm-up).

    OMP_NUM_THREADS=2 nice -n 10 python benchmarks/perf/bench_gan.py --preset small --kimg 1.5 --threads 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import torch


class RandomImages(torch.utils.data.Dataset):
    def __init__(self, n: int, res: int):
        self.imgs = torch.randint(0, 256, (n, 3, res, res), generator=torch.Generator().manual_seed(0),
                                  dtype=torch.uint8)

    def __len__(self):
        return len(self.imgs)

    def __getitem__(self, i):
        return {"img": self.imgs[i], "index": i}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--kimg", type=float, default=1.5, help="images timed in total (thousands)")
    ap.add_argument("--tick-kimg", type=float, default=0.256)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=None, help="append the result row to this JSONL file")
    args = ap.parse_args(argv)

    from ganprint.core.files import append_jsonl, read_jsonl
    from ganprint.core.runtime import git_sha
    from ganprint.gan.config import PRESETS
    from ganprint.gan.train import train_gan

    torch.set_num_threads(args.threads)
    cfg = PRESETS[args.preset]
    cfg = dataclasses.replace(cfg, total_kimg=args.kimg, kimg_per_tick=args.tick_kimg, snapshot_kimg=1e9,
                              grid_seeds=4, batch_size=args.batch_size or cfg.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        train_gan(cfg, tmp, RandomImages(256, cfg.resolution), device=args.device)
        wall = time.time() - t0
        rows = read_jsonl(f"{tmp}/stats.jsonl")
    timed = [r["sec_per_kimg"] for r in rows[1:]] or [r["sec_per_kimg"] for r in rows]
    row = {"bench": "gan_sec_per_kimg", "preset": args.preset, "batch_size": cfg.batch_size,
           "threads": args.threads, "device": args.device, "sec_per_kimg_median": round(statistics.median(timed), 2),
           "sec_per_kimg_ticks": timed, "wall_s": round(wall, 1), "cpu": platform.processor() or platform.machine(),
           "torch": torch.__version__, "git_sha": git_sha(),
           "loadavg_1m_at_end": round(os.getloadavg()[0], 2), "cpu_count": os.cpu_count()}
    json.dump(row, sys.stdout)
    sys.stdout.write("\n")
    if args.out:
        append_jsonl(args.out, row)
    return row


if __name__ == "__main__":
    main()
