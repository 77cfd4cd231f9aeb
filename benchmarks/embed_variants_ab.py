"""Wall seconds of a one-process, one-thread `api.embed` of a folder, alternating encoder variants round by round
(the machine's speed wanders, so variants are interleaved rather than run in blocks).

    python benchmarks/embed_variants_ab.py --rounds 3   # after bench_embed_detect.py made /tmp/ganprint-bench

Variants (bf16): `fused-cl` = the default (InferenceEncoder, oneDNN conv+ReLU, channels_last); `fused-plain` = the
same in the plain layout; `unfused-plain` = InferenceEncoder with separate ReLUs, plain layout.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

CHILD = """
import os, sys, shutil, time
import torch
torch.set_num_threads(1)
from ganprint.artificial import batches, embed as api
from ganprint.nets import stega
variant, w, data = sys.argv[1], sys.argv[2], sys.argv[3]
if variant != "fused-cl":
    batches.memory_format = lambda dev, prefer_cl=False: torch.contiguous_format
if variant == "unfused-plain":
    stega._fused_ops = lambda: None
out = w + "/variants-out"
shutil.rmtree(out, ignore_errors=True)
t = time.perf_counter()
api.embed(w + "/model-32.safetensors", data, out, device="cpu", jobs=1)
print(f"{time.perf_counter() - t:.2f}")
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default="/tmp/ganprint-bench")
    ap.add_argument("--data", default=None, help="default: WORKDIR/in-32-10000")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--variants", nargs="+", default=["fused-cl", "fused-plain", "unfused-plain"])
    a = ap.parse_args()
    data = a.data or os.path.join(a.workdir, "in-32-10000")
    env = {**os.environ, "GANPRINT_IO_THREADS": "0", "OMP_NUM_THREADS": "1"}
    walls: dict[str, list[str]] = {v: [] for v in a.variants}
    for _ in range(a.rounds):
        for v in a.variants:
            out = subprocess.run([sys.executable, "-c", CHILD, v, a.workdir, data], env=env, check=True,
                                 capture_output=True, text=True).stdout.strip().splitlines()[-1]
            walls[v].append(out)
            print(v, out, file=sys.stderr, flush=True)
    print("| variant | wall s per round |")
    print("|---|---|")
    for v, w in walls.items():
        print(f"| {v} | {' / '.join(w)} |")


if __name__ == "__main__":
    main()
