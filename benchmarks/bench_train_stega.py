"""Speed of one `ganprint train` step (forward, backward, Adam) on this machine: ms/step and images/s.

    python benchmarks/bench_train_stega.py                    # 32 px batch 64 and 128 px batch 16, fp32 and bf16
    python benchmarks/bench_train_stega.py --res 32 --batch 64 --steps 30 --threads 2

Uses the training loop's own model set-up (He init, channels_last) and loss; prints the median and min of
`--steps` timed steps after `--warmup` untimed ones, one JSON line per setting.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from ganprint.models.stega import StegaConfig, StegaModel
from ganprint.train.stega_loop import init_weights


def bench(res: int, batch: int, bits: int, amp: bool, steps: int, warmup: int) -> dict:
    model = StegaModel(StegaConfig(res, bits))
    init_weights(model, "he", 0)
    model = model.to(memory_format=torch.channels_last).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, res, res, generator=g).contiguous(memory_format=torch.channels_last)
    c = torch.randint(0, 2, (batch, bits), generator=g).float()
    times = []
    for i in range(warmup + steps):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            fp, logits = model(c, x)
        loss = F.binary_cross_entropy_with_logits(logits.float(), c) + 10 * F.mse_loss(fp.float(), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    med = statistics.median(times)
    return {"resolution": res, "batch": batch, "bits": bits, "precision": "bf16" if amp else "fp32",
            "threads": torch.get_num_threads(), "ms_per_step_median": round(1000 * med, 1),
            "ms_per_step_min": round(1000 * min(times), 1), "images_per_s": round(batch / med, 1), "steps": steps}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--res", type=int, nargs="*", default=None, help="resolutions (default: 32 and 128)")
    p.add_argument("--batch", type=int, default=None, help="batch (default: 64 at 32 px, 16 at 128 px)")
    p.add_argument("--bits", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", choices=["fp32", "bf16", "both"], default="both")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for res in args.res or [32, 128]:
        batch = args.batch or (64 if res <= 32 else 16)
        for amp in {"fp32": [False], "bf16": [True], "both": [False, True]}[args.precision]:
            print(json.dumps(bench(res, batch, args.bits, amp, args.steps, args.warmup)), flush=True)


if __name__ == "__main__":
    main()
