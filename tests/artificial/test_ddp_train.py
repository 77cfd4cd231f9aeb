"""`torchrun --nproc_per_node 2` on CPU (gloo): two ranks train together, rank 0 writes the run folder."""

import json
import os
import subprocess
import sys
import textwrap

import torch

from ganprint.core.artifacts import load_export
from ganprint.core.files import read_jsonl

DRIVER = textwrap.dedent("""
    import sys, torch
    from ganprint.artificial.config import TrainConfig
    from ganprint.artificial.train import train_stega
    from ganprint.core import dist
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, 256, (16, 3, 16, 16), generator=g, dtype=torch.uint8)
    cfg = TrainConfig(resolution=16, fingerprint_length=8, batch_size=4, steps=3, lr=1e-3, init="he",
                      identity_warmup=1, l2_schedule="psnr", l2_threshold=0.0, l2_await=0, l2_weight=1.0)
    train_stega(cfg, sys.argv[1], data=data, device="cpu", log_every=1, checkpoint_every=2, progress=False)
    print("rank", dist.get_rank(), "world", dist.get_world_size(), flush=True)
    dist.cleanup()
""")


def test_torchrun_two_ranks(tmp_path):
    (tmp_path / "driver.py").write_text(DRIVER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           str(tmp_path / "driver.py"), str(tmp_path / "run")]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "world 2" in res.stdout
    out = tmp_path / "run"
    rows = read_jsonl(out / "stats.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3]  # written once (by rank 0), not twice
    assert json.loads((out / "config.json").read_text())["batch_size"] == 4
    model, _, meta = load_export(out / "model.safetensors", kind="stega")
    assert meta["ganprint.step"] == "3"
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert (out / "export-00000002.safetensors").is_file() and (out / "model-decoder.safetensors").is_file()
