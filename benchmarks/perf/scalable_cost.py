"""What one scalable-fingerprinting training step costs: FLOPs per image and dispatched operations per step.

    python benchmarks/perf/scalable_cost.py --resolution 64 --bits 128

FLOPs: one forward pass of G and of the decoder, per image, for each preset (torch's FlopCounterMode).
Operations: aten calls per training step of the `small` preset (batch 8, CPU), counted with a dispatch mode over
two short runs (4 and 20 steps) and differenced, so that set-up, metric and export work cancel out; once with the adversarial gate
closed (G + decoder only) and once open. On a GPU every such call is at least one kernel launch, which is why
`gpu_scalable.sh` trains with a large batch: the step's cost is mostly these launches, not arithmetic.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from ganprint.data.packed import write_packed
from ganprint.nets.scalable import ScalableDecoder, ScalableGenerator
from ganprint.scalable.config import PRESETS, resolve_config
from ganprint.scalable.train import train_scalable


class _Count(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += 1
        return func(*args, **(kwargs or {}))


def flops(preset: str, res: int, bits: int) -> dict:
    cfg = dataclasses.replace(PRESETS[preset], resolution=res, fingerprint_length=bits,
                              modulated_res=f"4-{res}").model_config()
    G, E = ScalableGenerator(cfg), ScalableDecoder(cfg)
    z, c = torch.randn(1, cfg.z_dim), torch.randint(0, 2, (1, bits)).float()
    with torch.no_grad(), FlopCounterMode(display=False) as fg:
        img = G(z, c)
    with torch.no_grad(), FlopCounterMode(display=False) as fe:
        E(img)
    return {"preset": preset, "G_forward_gflop": fg.get_total_flops() / 1e9,
            "decoder_forward_gflop": fe.get_total_flops() / 1e9,
            "G_params_M": sum(p.numel() for p in G.parameters()) / 1e6,
            "decoder_params_M": sum(p.numel() for p in E.parameters()) / 1e6}


def ops_per_step(res: int, bits: int, gated: bool, tmp: Path, batch: int = 8) -> float:
    data = tmp / f"data{res}"
    if not data.exists():
        rng = np.random.default_rng(0)
        imgs = [rng.integers(0, 255, (res, res, 3), dtype=np.uint8) for _ in range(64)]
        write_packed(data, iter(imgs), 64, res, source="random", names=[str(i) for i in range(64)], shuffle=False,
                     seed=None)
    counts = {}
    for steps in (4, 20):  # 16 steps apart: one R1 step (every 16) among them
        kw = dict(data=str(data), resolution=res, fingerprint_length=bits,
                  modulated_res=f"4-{res}", kimg=steps * batch / 1000, batch_size=batch,
                  snapshot_kimg=1e6, metric_kimg=1e6, tick_kimg=1e6, device="cpu")
        if not gated:
            kw.update(consistency_gate_kimg=0.0, consistency_gate_acc=0.0)
        with _Count() as c:
            train_scalable(resolve_config("small", **kw), tmp / f"run{res}{gated}{steps}")
        counts[steps] = c.n
    return (counts[20] - counts[4]) / 16


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--bits", type=int, default=128)
    a = p.parse_args()
    out = {"resolution": a.resolution, "bits": a.bits,
           "flops": [flops(k, a.resolution, a.bits) for k in ("small", "paper")]}
    with tempfile.TemporaryDirectory() as tmp:
        out["small_ops_per_step_gate_closed"] = ops_per_step(a.resolution, a.bits, True, Path(tmp))
        out["small_ops_per_step_gate_open"] = ops_per_step(a.resolution, a.bits, False, Path(tmp))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
