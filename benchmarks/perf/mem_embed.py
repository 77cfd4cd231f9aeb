"""Peak memory of `api.embed` for N images: python benchmarks/perf/mem_embed.py N WORKERS THREADS (inputs in inN/,
made with write_samples(f"in{N}", 32, N, 0)); prints N, workers, wall s, peak RSS MB of the main process."""
import resource
import sys
from dataclasses import asdict

import torch

torch.set_num_threads(int(sys.argv[3]))
from ganprint import api
from ganprint.core.artifacts import save_export
from ganprint.nets.stega import StegaConfig, StegaModel

n = sys.argv[1]
cfg = StegaConfig(32, 64); save_export("m.safetensors", StegaModel(cfg), "stega", asdict(cfg))
import time; t=time.time()
api.embed("m.safetensors", f"in{n}", f"out{n}-{sys.argv[2]}", device="cpu", workers=int(sys.argv[2]))
print(n, sys.argv[2], round(time.time()-t,1), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024)
