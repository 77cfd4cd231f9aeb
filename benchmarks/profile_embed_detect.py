"""cProfile of one `api.embed` or `api.detect` in one process (the profiles behind RESULTS-embed-detect.md).

    python benchmarks/bench_embed_detect.py --counts 10000 --resolutions 32 --skip orig-embed orig-detect
    python benchmarks/profile_embed_detect.py embed --threads 1 --io-threads 0 [--sort tottime] [--top 30]
    python benchmarks/profile_embed_detect.py detect --threads 2 --sort cumtime
    python benchmarks/profile_embed_detect.py embed --jobs 2 --count 1000   # profiles the rank-0 child
    python benchmarks/profile_embed_detect.py embed --original-encoder      # bf16 without InferenceEncoder

Inputs are those of a previous bench_embed_detect.py run in --workdir: embed reads in-32-N, detect reads
ours-emb/fingerprinted_images with its embedded_fingerprints.txt. cProfile adds its own cost to every Python call,
so Python-heavy parts look larger than they are; the C calls (convolutions, codecs, system calls) are timed as is.
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
    ap.add_argument("--jobs", type=int, default=1, help="> 1: run --jobs processes and profile the rank-0 child")
    ap.add_argument("--original-encoder", action="store_true",
                    help="embed in bf16 with the original StegaEncoder instead of InferenceEncoder")
    ap.add_argument("--sort", default="tottime")
    ap.add_argument("--top", type=int, default=30)
    a = ap.parse_args()
    os.environ["GANPRINT_IO_THREADS"] = str(a.io_threads)
    import torch

    torch.set_num_threads(a.threads)
    from ganprint import api
    from ganprint.artificial import embed as embed_mod

    w = a.workdir
    out = os.path.join(w, f"profile-{a.kind}")
    shutil.rmtree(out, ignore_errors=True)
    if a.original_encoder:
        embed_mod.InferenceEncoder = lambda enc: enc

    def call():
        if a.kind == "embed":
            api.embed(f"{w}/model-32.safetensors", f"{w}/in-32-{a.count}", out, device="cpu", jobs=a.jobs)
        else:
            api.detect(f"{w}/model-32.safetensors", f"{w}/ours-emb/fingerprinted_images", out,
                       embedded=f"{w}/ours-emb/embedded_fingerprints.txt", device="cpu", jobs=a.jobs)

    def report(prof: cProfile.Profile) -> None:
        pstats.Stats(prof).sort_stats(a.sort).print_stats(a.top)

    t = time.perf_counter()
    if a.jobs > 1:
        from ganprint.artificial import jobs as parallel

        child = parallel._child

        def profiled_child(fn, kwargs, rank, *rest):
            prof = cProfile.Profile()
            prof.enable()
            try:
                child(fn, kwargs, rank, *rest)
            finally:
                prof.disable()
                if rank == 0:
                    report(prof)

        parallel._child = profiled_child
        call()
    else:
        prof = cProfile.Profile()
        prof.enable()
        call()
        prof.disable()
        report(prof)
    print(f"wall {time.perf_counter() - t:.2f} s")


if __name__ == "__main__":
    main()
