"""ms/image of the 32-px stega encoder (batch 64) in the variants RESULTS-embed-detect.md compares.

    python benchmarks/perf/encoder_speed.py --threads 1
    python benchmarks/perf/encoder_speed.py --threads 2

Rows: fp32 eager, bf16 autocast, pure bf16 weights, and pure bf16 weights of `InferenceEncoder` (the up blocks as
transposed convs; what embed runs in bf16), each in the plain and the channels_last layout; TorchScript frozen and
optimize_for_inference (fp32) and frozen pure bf16; the decoder in pure bf16, plain vs channels_last. An untrained StegaModel(32, 100), seed 0. Each figure is the
best of `--rounds` rounds (the machine's speed wanders by up to 40 % between runs).
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from ganprint.nets.stega import InferenceEncoder, StegaConfig, StegaModel

ROUNDS = 5


def bench(fn, bits, x, n=8) -> float:
    best = float("inf")
    with torch.inference_mode():
        for _ in range(2):
            fn(bits, x)
        for _ in range(ROUNDS):
            t0 = time.perf_counter()
            for _ in range(n):
                fn(bits, x)
            best = min(best, time.perf_counter() - t0)
    return best / n / x.shape[0] * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-script", action="store_true", help="skip the TorchScript rows")
    a = ap.parse_args()
    global ROUNDS
    ROUNDS = a.rounds
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    r, b = a.resolution, a.batch
    enc = StegaModel(StegaConfig(r, 100)).eval().enc
    x, bits = torch.rand(b, 3, r, r), torch.randint(0, 2, (b, 100)).float()
    for fmt in (torch.contiguous_format, torch.channels_last):
        m = copy.deepcopy(enc).to(memory_format=fmt)
        xf = x.contiguous(memory_format=fmt)

        def autocast(bb, xx, m=m):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return m(bb, xx)

        mb = copy.deepcopy(m).to(torch.bfloat16)
        fused = InferenceEncoder(copy.deepcopy(enc)).to(torch.bfloat16, memory_format=fmt)
        unfused = InferenceEncoder(copy.deepcopy(enc), fuse=False).to(torch.bfloat16, memory_format=fmt)
        print(f"{str(fmt):>26}: fp32 {bench(m, bits, xf):.3f}  bf16 autocast {bench(autocast, bits, xf):.3f}  "
              f"pure bf16 {bench(mb, bits.bfloat16(), xf.bfloat16()):.3f}  "
              f"InferenceEncoder pure bf16 unfused {bench(unfused, bits.bfloat16(), xf.bfloat16()):.3f}, "
              f"fused {bench(fused, bits.bfloat16(), xf.bfloat16()):.3f} ms/image")
    dec = StegaModel(StegaConfig(r, 100)).eval().dec.to(torch.bfloat16)
    plain = bench(lambda bb, xx: dec(xx), bits, x.bfloat16())
    dcl = copy.deepcopy(dec).to(memory_format=torch.channels_last)
    cl = bench(lambda bb, xx: dcl(xx), bits, x.bfloat16().contiguous(memory_format=torch.channels_last))
    print(f"decoder pure bf16: plain {plain * 1e3:.1f}  channels_last {cl * 1e3:.1f} us/image")
    if a.no_script:
        return
    with torch.inference_mode():
        frozen = torch.jit.freeze(torch.jit.trace(copy.deepcopy(enc), (bits, x)))
        opt = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(copy.deepcopy(enc), (bits, x))))
        frozen_bf16 = torch.jit.freeze(torch.jit.trace(copy.deepcopy(enc).to(torch.bfloat16),
                                                       (bits.bfloat16(), x.bfloat16())))
    print(f"TorchScript: frozen fp32 {bench(frozen, bits, x):.3f}  optimize_for_inference {bench(opt, bits, x):.3f}  "
          f"frozen pure bf16 {bench(frozen_bf16, bits.bfloat16(), x.bfloat16()):.3f} ms/image")


if __name__ == "__main__":
    main()
