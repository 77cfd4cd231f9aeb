"""StyleGAN2 training under torchrun with 2 CPU processes (gloo): ranks stay in step, rank 0 writes the files."""

import json
import os
import subprocess
import sys
import textwrap

import torch

SCRIPT = textwrap.dedent("""
    import sys, dataclasses, torch
    sys.path.insert(0, {tests!r})
    from test_train import TensorImages, tiny_cfg
    from ganprint.core import dist
    from ganprint.gan.train import train_gan

    out = train_gan(tiny_cfg(total_kimg={kimg}), {outdir!r}, TensorImages(), device="cpu")
    flat = {{k: torch.cat([p.detach().flatten() for p in out[k].parameters()]) for k in ("G", "D", "G_ema")}}
    sums = {{k: v.double().sum().item() for k, v in flat.items()}}
    sums["w_avg"] = out["G"].mapping.w_avg.double().sum().item()
    allsums = dist.all_gather_object(sums)
    assert dist.get_world_size() == 2
    if dist.get_rank() == 0:
        assert allsums[0] == allsums[1], allsums
        torch.save(flat["G_ema"], {outdir!r} + "/rank0_G_ema.pt")
    dist.cleanup()  # no barrier first: rank 1 may leave while rank 0 still writes
""")


def _torchrun(tmp_path, outdir, kimg):
    script = tmp_path / "ddp_script.py"
    script.write_text(SCRIPT.format(tests=os.path.dirname(__file__), outdir=str(outdir), kimg=kimg))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    # torchrun's own report fills the tail; the failing rank's error is in its prefixed lines
    errors = [line for line in res.stderr.splitlines() if line.startswith("[rank") and "Error" in line]
    assert res.returncode == 0, "\n".join(errors[:10]) + "\n" + res.stdout[-2000:] + res.stderr[-2000:]
    assert "still referenced after destroy_process_group" not in res.stderr  # the gloo threads end with the group


def test_ddp_two_processes_stay_in_sync_and_resume(tmp_path):
    from ganprint.core.artifacts import latest_training_state, load_training_state

    out = tmp_path / "run"
    _torchrun(tmp_path, out, 0.012)
    _torchrun(tmp_path, out, 0.024)  # resume under torchrun
    st = load_training_state(latest_training_state(out))
    assert st["nimg"] == 24 and st["step"] == 6
    assert (out / "network-final.safetensors").is_file()
    rows = [json.loads(line) for line in (out / "stats.jsonl").read_text().splitlines()]
    # One row per tick (on the 0.008-kimg grid, resumed or not, and one at each run's end), written once (rank 0
    # only), tick count kept over the resume.
    assert [(r["tick"], r["kimg"]) for r in rows] == [(1, 0.008), (2, 0.012), (3, 0.016), (4, 0.024)]
    g_ema = torch.load(out / "rank0_G_ema.pt", weights_only=True)
    torch.testing.assert_close(g_ema, torch.cat([v.flatten() for k, v in st["G_ema"].items()
                                                 if not k.endswith(("w_avg", "noise_const"))]))
