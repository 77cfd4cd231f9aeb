"""Fingerprint fine-tuning under torchrun with 2 CPU processes (gloo): each rank trains on its half of the batch,
the ranks stay in step, rank 0 writes the files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("diffusers")

SCRIPT = textwrap.dedent("""
    import dataclasses, json, sys, torch
    sys.path.insert(0, {root!r})
    from ganprint.core import dist
    from ganprint.latent import fingerprint_train
    from ganprint.latent.fingerprint_config import PRESETS
    from ganprint.latent.fingerprint_train import load_trained, train_latent_fingerprint
    from tests.latent.test_fingerprint_train import _images

    batches = []  # the size of every batch this rank trains on, seen on the way into the real step
    step = fingerprint_train._Run.step
    fingerprint_train._Run.step = lambda self, img: batches.append(len(img)) or step(self, img)

    torch.manual_seed(0)
    cfg = dataclasses.replace(PRESETS["lfp-smoke"], device="cpu", batch_size=8, kimg=0.016, tick_kimg=0.008,
                              snapshot_kimg=0.008, eval_images=4)
    train_latent_fingerprint(cfg, {ae_path!r}, _images(40), {outdir!r})
    model, dec = load_trained({outdir!r})
    sums = [sum(p.double().sum().item() for p in m.parameters()) for m in (model, dec)]
    everything = dist.all_gather_object((batches, sums))
    if dist.get_rank() == 0:
        print("BATCHES", json.dumps([r for r, _ in everything]))
        assert everything[0][1] == everything[1][1], everything
    dist.cleanup()
""")


def test_two_processes_read_half_the_batch_each_and_stay_in_step(tmp_path):
    import torch

    from ganprint.core.artifacts import save_export
    from ganprint.latent import autoencoder as ae
    from tests.latent.test_fingerprint_train import AE

    torch.manual_seed(0)
    ae_path = tmp_path / "ae.safetensors"
    save_export(ae_path, ae.build_autoencoder(AE).eval(), ae.EXPORT_KIND, ae.export_config(AE))
    root = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
    script = tmp_path / "ddp_script.py"
    script.write_text(SCRIPT.format(root=root, ae_path=str(ae_path), outdir=str(tmp_path / "run")))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    res = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    batches = json.loads(next(line for line in res.stdout.splitlines() if line.startswith("BATCHES"))[8:])
    assert batches == [[4, 4], [4, 4]], batches  # 2 steps of batch 8 over 2 ranks: 4 images per rank and step
    rows = [json.loads(line) for line in (tmp_path / "run" / "stats.jsonl").read_text().splitlines()]
    assert [r["kimg"] for r in rows] == [0.008, 0.016]  # written once, by rank 0
