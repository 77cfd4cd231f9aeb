"""cProfile of one `api.embed` or `api.detect` in one process (the profiles behind RESULTS-embed-detect.md).

    python benchmarks/perf/bench_embed_detect.py --counts 10000 --resolutions 32 --skip orig-embed orig-detect
    python benchmarks/perf/profile_embed_detect.py embed --threads 1 --io-threads 0 [--sort tottime] [--top 30]
    python benchmarks/perf/profile_embed_detect.py detect --threads 2 --sort cumtime

Inputs are those of a previous bench_embed_detect.py run in --workdir: embed reads in-32-N, detect reads
ours-emb/fingerprinted_images with its embedded_fingerprints.txt. cProfile adds its own cost to every Python call,
so Python-heavy parts look larger than they are; the C calls (convolutions, codecs, system calls) are timed as is.
One process only: the profiles of a `--jobs` child and of the encoder without InferenceEncoder (cited in
RESULTS-embed-detect.md) were made by patching ganprint internals, which this script no longer does; git history
keeps that version (before issue 21).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["embed", "detect"])
    ap.add_argument("--workdir", default="/tmp/ganprint-bench")
    ap.add_argument("--count", type=int, default=10000, help="embed: which in-32-COUNT folder")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--io-threads", type=int, default=0, help="GANPRINT_IO_THREADS (reader / PNG-writer threads)")
    ap.add_argument("--sort", default="tottime")
    ap.add_argument("--top", type=int, default=30)
    a = ap.parse_args()
    os.environ["GANPRINT_IO_THREADS"] = str(a.io_threads)
    import torch

    torch.set_num_threads(a.threads)
    from ganprint import api

    w = a.workdir
    out = os.path.join(w, f"profile-{a.kind}")
    shutil.rmtree(out, ignore_errors=True)

    def call():
        if a.kind == "embed":
            api.embed(f"{w}/model-32.safetensors", f"{w}/in-32-{a.count}", out, device="cpu", jobs=1)
        else:
            api.detect(f"{w}/model-32.safetensors", f"{w}/ours-emb/fingerprinted_images", out,
                       embedded=f"{w}/ours-emb/embedded_fingerprints.txt", device="cpu", jobs=1)

    def report(prof: cProfile.Profile) -> None:
        pstats.Stats(prof).sort_stats(a.sort).print_stats(a.top)

    t = time.perf_counter()
    prof = cProfile.Profile()
    prof.enable()
    call()
    prof.disable()
    report(prof)
    print(f"wall {time.perf_counter() - t:.2f} s")


if __name__ == "__main__":
    main()
