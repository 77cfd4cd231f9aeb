"""Wall seconds of one single-process `api.detect` per (torch threads, reader threads) pair, on the folder and model
of a previous `bench_embed_detect.py` run (default: 1k fingerprinted 32-px images in /tmp/ganprint-bench).

    python benchmarks/perf/detect_threads.py --rounds 2

Each measurement is a fresh process (threads cannot be changed once torch has started them).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

CHILD = """
import os, sys, shutil, time
import torch
torch.set_num_threads(int(sys.argv[1]))
from ganprint import api
w = sys.argv[2]
shutil.rmtree(w + "/threads-det", ignore_errors=True)
t = time.perf_counter()
api.detect(w + "/model-32.safetensors", w + "/ours-emb/fingerprinted_images", w + "/threads-det",
           embedded=w + "/ours-emb/embedded_fingerprints.txt", device="cpu", jobs=1)
print(f"{time.perf_counter() - t:.3f}")
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default="/tmp/ganprint-bench")
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    print("| torch threads | reader threads | wall s per round |")
    print("|---|---|---|")
    results: dict[tuple[int, int], list[str]] = {}
    for _ in range(a.rounds):
        for io in (0, 1, 2):
            for tt in (1, 2):
                env = {**os.environ, "GANPRINT_IO_THREADS": str(io), "OMP_NUM_THREADS": str(tt)}
                out = subprocess.run([sys.executable, "-c", CHILD, str(tt), a.workdir], env=env, check=True,
                                     capture_output=True, text=True).stdout.strip().splitlines()[-1]
                results.setdefault((tt, io), []).append(out)
    for (tt, io), walls in sorted(results.items()):
        print(f"| {tt} | {io} | {' / '.join(walls)} |")


if __name__ == "__main__":
    main()
