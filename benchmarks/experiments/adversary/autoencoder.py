"""Removal through an autoencoder: a remover who trains a small convolutional autoencoder on clean photos of the
kind (never a fingerprinted one) and passes each fingerprinted image through it. No part of the decoder is used.

    python benchmarks/experiments/adversary/autoencoder.py --train DIR --fingerprinted DIR --clean DIR \
        --fingerprint 0x... --model A.safetensors [--model B.safetensors ...] --outdir OUT [--steps 1500]

Trains one autoencoder per latent width (`--latents`: C channels at 1/4 of the side, 32 px -> 8 x 8 x C values
for 32 x 32 x 3: 12x fewer for C = 4, 3x for C = 16), then per model: the
first `--images` fingerprinted images and as many clean ones through each autoencoder, rounded to 8 bits, decoded,
scored at `--fpr`. Writes OUT/autoencoder.jsonl (one row per model x autoencoder x set) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn

from ganprint.core.fingerprints import parse_bits
from ganprint.core.stats import count_matches, decode_bits, match_threshold
from ganprint.evaluation.adversary import _load
from ganprint.evaluation.quality import psnr
from ganprint.evaluation.sources import load_decoder


def autoencoder(latent: int) -> nn.Module:
    """Two stride-2 convolutions down to `latent` channels at 1/4 of the side, and back up."""
    act = nn.LeakyReLU(0.2)
    return nn.Sequential(
        nn.Conv2d(3, 64, 4, 2, 1), act, nn.Conv2d(64, 128, 4, 2, 1), act, nn.Conv2d(128, latent, 3, 1, 1),
        nn.Conv2d(latent, 128, 3, 1, 1), act, nn.ConvTranspose2d(128, 64, 4, 2, 1), act,
        nn.ConvTranspose2d(64, 3, 4, 2, 1), nn.Sigmoid())


def train(x: torch.Tensor, latent: int, steps: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = autoencoder(latent)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    for step in range(steps):
        batch = x[torch.randint(len(x), (64,), generator=g)]
        loss = (net(batch) - batch).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval()


@torch.no_grad()
def through(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([(net(x[i:i + 256]) * 255).round() / 255 for i in range(0, len(x), 256)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=Path, required=True, help="clean crops the remover trains on")
    ap.add_argument("--fingerprinted", type=Path, action="append", required=True,
                    help="the fingerprinted images, once per --model, in the same order")
    ap.add_argument("--clean", type=Path, required=True)
    ap.add_argument("--model", type=Path, action="append", required=True)
    ap.add_argument("--fingerprint", required=True)
    ap.add_argument("--latents", default="4,16")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--fpr", type=float, default=1e-6)
    ap.add_argument("--outdir", type=Path, required=True)
    a = ap.parse_args()
    a.outdir.mkdir(parents=True, exist_ok=True)
    ref = parse_bits(a.fingerprint).float()
    train_x, _ = _load(a.train, 32, ref, None, "train")
    clean, _ = _load(a.clean, 32, ref, a.images, "clean")
    nets = {}
    for c in (int(v) for v in a.latents.split(",")):
        t0 = time.time()
        nets[c] = train(train_x, c, a.steps)
        print(f"autoencoder C={c}: {a.steps} steps in {time.time() - t0:.0f} s; clean-photo PSNR "
              f"{float(psnr(through(nets[c], clean), clean).mean()):.1f} dB")
    rows = []
    for model, folder in zip(a.model, a.fingerprinted):
        decode, _, k, _ = load_decoder(model)
        thr = match_threshold(k, a.fpr)
        marked, _ = _load(folder, 32, ref, a.images, "fingerprinted")
        for c, net in [(None, None), *nets.items()]:
            for set_name, x in (("fingerprinted", marked), ("clean", clean)):
                y = x if net is None else through(net, x)
                with torch.no_grad():
                    m = count_matches(decode_bits(decode(y)), ref)
                rows.append({"model": str(model), "latent": c, "set": set_name, "images": len(x),
                             "psnr": None if net is None else float(psnr(y, x).mean()),
                             "bit_accuracy": float(m.float().mean() / k), "detected": float((m >= thr).float().mean())})
    (a.outdir / "autoencoder.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    print("| model | autoencoder | set | PSNR (dB) | bit acc | detected |\n|---|---|---|---|---|---|")
    for r in rows:
        p = "–" if r["psnr"] is None else f"{r['psnr']:.1f}"
        print(f"| {Path(r['model']).parent.name} | {'none' if r['latent'] is None else 'C=' + str(r['latent'])} | "
              f"{r['set']} | {p} | {r['bit_accuracy']:.3f} | {r['detected']:.3f} |")


if __name__ == "__main__":
    main()
