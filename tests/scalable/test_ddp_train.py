"""train-scalable under torchrun with 2 CPU processes (gloo): runs, keeps the ranks in sync, writes one set of outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from ganprint.data.packed import write_packed


def test_torchrun_two_processes(tmp_path):
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (16, 16, 3), dtype=np.uint8) for _ in range(16)]
    data = write_packed(tmp_path / "data", iter(imgs), 16, 16, source="test", names=[str(i) for i in range(16)],
                        shuffle=False, seed=None)
    ganprint = Path(sys.executable).parent / "ganprint"
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(ganprint),
           "train-scalable", "--data", str(data), "--outdir", str(out), "--resolution", "16", "--fingerprint-length",
           "8", "--modulated-res", "4-16", "--preset", "tiny", "--kimg", "0.016", "--device", "cpu"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = [json.loads(x) for x in (out / "stats.jsonl").read_text().splitlines()]
    assert rows and all(row["world_size"] == 2 for row in rows)  # only rank 0 writes
    assert rows[-1]["kimg"] == 0.016 and rows[-1]["step"] == 4  # batch 4 = 2 per rank
    assert (out / "scalable-G.safetensors").exists() and (out / "scalable-decoder.safetensors").exists()
    assert len((out / "metric-bit-accuracy.jsonl").read_text().splitlines()) >= 1
    assert "ranks diverged" not in r.stderr
