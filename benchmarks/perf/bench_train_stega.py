"""Speed of one `ganprint train` step (forward, backward, Adam) on this machine: ms/step and images/s.

    python benchmarks/perf/bench_train_stega.py                    # 32 px batch 64 and 128 px batch 16
    python benchmarks/perf/bench_train_stega.py --res 32 --steps 30 --threads 2

Settings: the original's step (contiguous fp32), ours (channels_last fp32), ours with --amp (bf16 autocast).
They run round-robin, one step each in turn, so that load from other processes hits them alike; prints the
median and min of `--steps` timed steps after `--warmup` untimed ones, one JSON line per setting.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F

from ganprint.artificial.train import init_weights
from ganprint.nets.stega import StegaConfig, StegaModel

SETTINGS = {  # name: (channels_last, bf16 autocast)
    "original-fp32": (False, False),  # the original train.py step: contiguous fp32
    "ganprint-fp32": (True, False),  # ours without --amp: channels_last
    "ganprint-bf16": (True, True),  # ours with --amp
}


def bench(res: int, batch: int, bits: int, names: list[str], steps: int, warmup: int) -> list[dict]:
    """Time the settings round-robin, one step each in turn, so that a busy machine slows them alike."""
    runs = {}
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(batch, 3, res, res, generator=g)
    c = torch.randint(0, 2, (batch, bits), generator=g).float()
    for name in names:
        cl, amp = SETTINGS[name]
        model = StegaModel(StegaConfig(res, bits))
        init_weights(model, "he", 0)
        if cl:
            model = model.to(memory_format=torch.channels_last)
        x = x0.contiguous(memory_format=torch.channels_last) if cl else x0
        runs[name] = (model.train(), torch.optim.Adam(model.parameters(), lr=1e-4), x, amp, [])
    for i in range(warmup + steps):
        for name, (model, opt, x, amp, times) in runs.items():
            t = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                fp, logits = model(c, x)
            loss = F.binary_cross_entropy_with_logits(logits.float(), c) + 10 * F.mse_loss(fp.float(), x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if i >= warmup:
                times.append(time.perf_counter() - t)
    out = []
    for name, (*_, times) in runs.items():
        med = statistics.median(times)
        out.append({"setting": name, "resolution": res, "batch": batch, "bits": bits,
                    "threads": torch.get_num_threads(), "ms_per_step_median": round(1000 * med, 1),
                    "ms_per_step_min": round(1000 * min(times), 1), "images_per_s": round(batch / med, 1),
                    "steps": steps, "load_avg_1min": os.getloadavg()[0]})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--res", type=int, nargs="*", default=None, help="resolutions (default: 32 and 128)")
    p.add_argument("--batch", type=int, default=None, help="batch (default: 64 at 32 px, 16 at 128 px)")
    p.add_argument("--bits", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for res in args.res or [32, 128]:
        batch = args.batch or (64 if res <= 32 else 16)
        for row in bench(res, batch, args.bits, args.settings, args.steps, args.warmup):
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
