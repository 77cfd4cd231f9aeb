"""Probe: can the fingerprint-modulated decoder learn to reproduce a trained stega encoder's fingerprints?

The end-to-end trainer (`train-latent-fingerprint`) has to discover a code and a reader at once and stayed at
chance (RESULTS-latent.md). This probe removes the discovery: a trained, robust stega model (`ganprint train`,
e.g. the robust-32 preset) is frozen; for random fingerprints c its encoder turns the original decoder's image x_0
into the target Enc(c, x_0), and the modulated decoder is trained towards it (MSE, weight --img-weight) and towards
the frozen stega decoder reading c (BCE, --bit-weight). The stega decoder reads the targets themselves at the
"teacher" accuracy, so a modulation able to express the fingerprints would climb towards it.
Latents are the frozen encoder's posterior means of the first --images training images (the last 128 held out).

    python benchmarks/experiments/latent/distill_probe.py --autoencoder AE/latent-autoencoder.safetensors \\
        --stega ROBUST32/model.safetensors --data data/train32 --steps 300 --lr 3e-3
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F

from ganprint.core.artifacts import load_export
from ganprint.latent.autoencoder import AutoencoderConfig, decode, encode
from ganprint.latent.modulated import ModulationConfig, from_autoencoder
from ganprint.training.data import open_training_data

HELD = 128


def cached_latents(vae, data: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    ds = open_training_data(data, int(vae.config.sample_size))
    x = torch.stack([ds[i] for i in range(min(n, len(ds)))]).float() / 127.5 - 1
    with torch.no_grad():
        z = torch.cat([encode(vae, x[i:i + 200]) for i in range(0, len(x), 200)])
        x0 = torch.cat([decode(vae, z[i:i + 200]) for i in range(0, len(z), 200)]).clamp(-1, 1)
    return z, x0


def evaluate(m, stega, z: torch.Tensor, x0: torch.Tensor, k: int) -> dict:
    c = torch.randint(0, 2, (len(z), k), generator=torch.Generator().manual_seed(1)).float()
    with torch.no_grad():
        xc = (m.decode(z, c).clamp(-1, 1) + 1) / 2
        ref = (x0 + 1) / 2
        teacher = stega.enc(c, ref).clamp(0, 1)
        return {"bit_accuracy": ((stega.dec(xc) > 0).float() == c).float().mean().item(),
                "psnr_db": (10 * torch.log10(1 / F.mse_loss(xc, ref))).item(),
                "teacher_bit_accuracy": ((stega.dec(teacher) > 0).float() == c).float().mean().item(),
                "teacher_psnr_db": (10 * torch.log10(1 / F.mse_loss(teacher, ref))).item()}


def run(a: argparse.Namespace) -> list[dict]:
    torch.manual_seed(a.seed)
    vae, cfg, _ = load_export(a.autoencoder, kind="latent-autoencoder")
    stega, _, _ = load_export(a.stega, kind="stega")
    vae.requires_grad_(False), stega.requires_grad_(False)
    k = stega.cfg.fingerprint_length
    z, x0 = cached_latents(vae, a.data, a.images)
    mod = ModulationConfig(fingerprint_length=k, style_gain=a.style_gain, layers=a.layers, demodulate=a.demodulate)
    m = from_autoencoder(vae, AutoencoderConfig.from_dict(cfg["autoencoder"]), mod)
    m.autoencoder.requires_grad_(a.decoder_lr > 0)
    groups = [{"params": [*m.mapping.parameters(), *m.affine.parameters()], "lr": a.lr}]
    if a.decoder_lr > 0:
        groups.append({"params": list(m.autoencoder.decoder.parameters()), "lr": a.decoder_lr})
    opt = torch.optim.Adam(groups, betas=(0.9, 0.99))
    rows, t0, n = [], time.perf_counter(), len(z) - HELD
    for step in range(1, a.steps + 1):
        idx = torch.randint(0, n, (a.batch_size,))
        c = torch.randint(0, 2, (a.batch_size, k)).float()
        with torch.no_grad():
            target = stega.enc(c, (x0[idx] + 1) / 2).clamp(0, 1)
        xc = (m.decode(z[idx], c).clamp(-1, 1) + 1) / 2
        loss = a.img_weight * F.mse_loss(xc, target) + a.bit_weight * F.binary_cross_entropy_with_logits(
            stega.dec(xc), c)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % a.every == 0 or step == a.steps:
            rows.append({"step": step, "seconds": round(time.perf_counter() - t0, 1),
                         **evaluate(m, stega, z[n:], x0[n:], k)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--autoencoder", required=True)
    p.add_argument("--stega", required=True, help="a trained stega export (kind stega) at the autoencoder's size")
    p.add_argument("--data", required=True)
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--decoder-lr", type=float, default=0.0, help="also train the decoder's weights (0: frozen)")
    p.add_argument("--style-gain", type=float, default=0.1)
    p.add_argument("--layers", default="all")
    p.add_argument("--demodulate", action="store_true")
    p.add_argument("--img-weight", type=float, default=10.0)
    p.add_argument("--bit-weight", type=float, default=0.1)
    p.add_argument("--every", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="JSONL of the evaluations")
    a = p.parse_args(argv)
    rows = run(a)
    if a.out:
        with open(a.out, "w") as f:
            f.writelines(json.dumps({**r, "setup": {k: v for k, v in vars(a).items() if k != "out"}}) + "\n"
                         for r in rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
