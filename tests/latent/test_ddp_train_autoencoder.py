"""Autoencoder training under torchrun with 2 CPU processes (gloo): ranks stay in step, rank 0 writes the files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("diffusers")

SCRIPT = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {root!r})
    from tests.latent.conftest import tiny_ae_config
    from ganprint.core import dist
    from ganprint.data.folders import open_image_dataset
    from ganprint.latent.train_autoencoder import train_autoencoder

    cfg = tiny_ae_config(total_kimg={kimg}, snapshot_kimg=0.008, kimg_per_tick=0.008)
    out = train_autoencoder(cfg, {outdir!r}, open_image_dataset({data!r}, 16), device="cpu")
    sums = [sum(p.double().sum().item() for p in out[k].parameters()) for k in ("autoencoder", "ema")]
    allsums = dist.all_gather_object(sums)
    assert dist.get_world_size() == 2
    if dist.get_rank() == 0:
        assert allsums[0] == allsums[1], allsums
    dist.cleanup()
""")


def _torchrun(tmp_path, outdir, data, kimg):
    root = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
    script = tmp_path / "ddp_script.py"
    script.write_text(SCRIPT.format(root=root, outdir=str(outdir), data=str(data), kimg=kimg))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]


def test_ddp_two_processes_stay_in_sync_and_resume(tmp_path, sample_folder):
    out = tmp_path / "run"
    _torchrun(tmp_path, out, sample_folder, 0.008)
    _torchrun(tmp_path, out, sample_folder, 0.016)  # resume under torchrun
    rows = [json.loads(line) for line in (out / "stats.jsonl").read_text().splitlines()]
    assert [(r["tick"], r["kimg"]) for r in rows] == [(1, 0.008), (2, 0.016)]  # written once, by rank 0
    assert all(r["psnr_held_out"] > 0 for r in rows)
    assert (out / "latent-autoencoder.safetensors").is_file()
