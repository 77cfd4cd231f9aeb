"""Wall and CPU seconds of one `api.embed` (or detect) run under thread-count variants (RESULTS-embed-detect.md).

    env TT=2 RT=2 WT=2 python benchmarks/embed_variants.py DATA_DIR MODEL [embed|detect]
    env OMP_WAIT_POLICY=PASSIVE TT=2 RT=1 WT=1 python benchmarks/embed_variants.py DATA_DIR MODEL

TT = torch threads, RT = reader threads, WT = PNG writer threads, PREC = fp32|bf16 (default bf16).
"""

import os
import resource
import shutil
import sys
import time

import torch

torch.set_num_threads(int(os.environ.get("TT", "2")))
from ganprint import api  # noqa: E402
from ganprint.artificial import batches, embed as embed_mod  # noqa: E402

rt, wt = int(os.environ.get("RT", "2")), int(os.environ.get("WT", "2"))
_loader, _Writer = embed_mod.loader, embed_mod.BatchWriter
embed_mod.loader = batches.loader = lambda ds, idx, bs, nw: _loader(ds, idx, bs, nw, read_threads=rt)
embed_mod.BatchWriter = lambda progress: _Writer(progress, threads=wt)

data, model = sys.argv[1], sys.argv[2]
kind = sys.argv[3] if len(sys.argv) > 3 else "embed"
out = "/tmp/embed-variants-out"
shutil.rmtree(out, ignore_errors=True)
prec = os.environ.get("PREC", "bf16")
r0, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
if kind == "embed":
    api.embed(model, data, out, device="cpu", precision=prec)
else:
    api.detect(model, data, out, device="cpu", precision=prec,
               embedded=os.path.join(os.path.dirname(data), "embedded_fingerprints.txt"))
wall, r1 = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF)
cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
print(f"{kind} TT={torch.get_num_threads()} RT={rt} WT={wt} OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '-')} "
      f"precision={prec} wall {wall:.2f} s cpu {cpu:.2f} s")
