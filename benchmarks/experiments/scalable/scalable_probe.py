"""How fast can G and the decoder learn the fingerprint at all? G+E on the bit loss alone (no D, no consistency).

A diagnostic for the scalable preset's slow start: each variant trains a fresh G and decoder for --steps steps
on the bit BCE only and prints the training bit accuracy (running mean) and a held-out bit accuracy of G (not
EMA) on 256 images with random z and c every --every steps. One JSON row per evaluation goes to --out.

    python benchmarks/experiments/scalable/scalable_probe.py --steps 600 --set batch=8 --set e_beta1=0.0 --tag base --out probe.jsonl
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from ganprint.core.stats import bit_accuracy, decode_bits
from ganprint.nets.scalable import ScalableConfig, ScalableDecoder, ScalableGenerator, parse_res_range
from ganprint.scalable.train import eval_bit_accuracy

DEFAULTS = dict(batch=8, lr=0.002, e_lr=None, e_beta1=0.0, g_beta1=0.0, bits=64, res=32, z_dim=32, w_dim=128,
                mapping=2, lrmul=1.0, cbase=1024, cmax=128, seed=0, threads=2, noise=1, pm1=0, frozen_g=0, bf16=0, modres="4-32")


class _Centered(torch.nn.Module):
    """G fed 2c - 1 instead of c (the pm1 variant), with G's interface."""

    def __init__(self, G):
        super().__init__()
        self.G, self.z_dim, self.fingerprint_length = G, G.z_dim, G.fingerprint_length

    def forward(self, z, c, **kw):
        return self.G(z, 2 * c - 1, **kw)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--set", action="append", default=[], help="KEY=VALUE over " + json.dumps(DEFAULTS))
    ap.add_argument("--tag", default="")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    o = dict(DEFAULTS)
    for kv in a.set:
        k, v = kv.split("=", 1)
        if k not in o:
            raise SystemExit(f"unknown key {k}")
        o[k] = type(o[k] if o[k] is not None else 1.0)(v)  # the default's type (e_lr: float)
    torch.set_num_threads(int(o["threads"]))
    torch.manual_seed(int(o["seed"]))
    cfg = ScalableConfig(resolution=int(o["res"]), fingerprint_length=int(o["bits"]), z_dim=int(o["z_dim"]),
                         w_dim=int(o["w_dim"]), mapping_layers=int(o["mapping"]), mapping_lr_multiplier=o["lrmul"],
                         channel_base=int(o["cbase"]), channel_max=int(o["cmax"]),
                         modulated_res=parse_res_range(o["modres"], int(o["res"])),
                         use_noise=bool(int(o["noise"])))
    G, E = ScalableGenerator(cfg), ScalableDecoder(cfg)
    G.fused = False
    e_lr = o["e_lr"] or o["lr"]
    opt_G = torch.optim.Adam(G.parameters(), lr=o["lr"], betas=(o["g_beta1"], 0.99))
    opt_E = torch.optim.Adam(E.parameters(), lr=e_lr, betas=(o["e_beta1"], 0.99))
    b, run, t0 = int(o["batch"]), 0.5, time.time()
    for step in range(1, a.steps + 1):
        z = torch.randn(b, cfg.z_dim)
        c = torch.randint(0, 2, (b, cfg.fingerprint_length)).float()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(o["bf16"])):
            _, logits = E(G(z, 2 * c - 1 if o["pm1"] else c))
        logits = logits.float()
        loss = F.binary_cross_entropy_with_logits(logits, c)
        opt_G.zero_grad(), opt_E.zero_grad()
        loss.backward()
        opt_E.step()
        if not o["frozen_g"]:
            opt_G.step()
        run = 0.95 * run + 0.05 * float(bit_accuracy(decode_bits(logits.detach()), c).mean())
        if step % a.every == 0 or step == a.steps:
            held = eval_bit_accuracy(_Centered(G) if o["pm1"] else G, E, 256, 12345, torch.device("cpu"))
            row = dict(tag=a.tag, step=step, images=step * b, train_acc_run=round(run, 4), heldout_acc=round(held, 4),
                       sec=round(time.time() - t0, 1), **o)
            print(json.dumps({k: row[k] for k in ("tag", "step", "images", "train_acc_run", "heldout_acc", "sec")}),
                  flush=True)
            if a.out:
                with open(a.out, "a") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
