"""Fingerprint fine-tuning of an untrained 16 px autoencoder: does a pair that attribution could use come out?

    python benchmarks/experiments/latent/smoke_pair.py --outdir OUT --kimg 3 --images 40 \
        --set '{"style_gain": 1.0, "train_decoder": true, "decoder_lr": 1e-3}'

An untrained `AutoencoderKL` (16 px, channels (32, 32), no mid attention, seed 0) is exported to OUT, then
`train_latent_fingerprint` runs its `lfp-smoke` preset (with `--set`'s fields replaced) on `--images` smooth random
colour fields; it prints the held-out bit accuracy, PSNR and the original decoder's reading per tick
(OUT/run/stats.jsonl).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from ganprint.core.artifacts import save_export
from ganprint.latent import autoencoder as ae
from ganprint.latent.fingerprint_config import PRESETS
from ganprint.latent.fingerprint_train import train_latent_fingerprint

AE = ae.AutoencoderConfig(resolution=16, channels=(32, 32), latent_channels=4, mid_attention=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--outdir", type=Path, required=True)
    ap.add_argument("--kimg", type=float, default=2.0)
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--set", default="{}", help="JSON object of LatentFingerprintConfig fields to replace.")
    args = ap.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    low = torch.rand(args.images, 3, 4, 4, generator=g)
    imgs = (torch.nn.functional.interpolate(low, size=16, mode="bilinear") * 255).round().to(torch.uint8)
    args.outdir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    ae_path = args.outdir / "ae.safetensors"
    save_export(ae_path, ae.build_autoencoder(AE).eval(), ae.EXPORT_KIND, ae.export_config(AE))
    cfg = dataclasses.replace(PRESETS["lfp-smoke"], device="cpu", kimg=args.kimg, **json.loads(args.set))
    train_latent_fingerprint(cfg, ae_path, imgs, args.outdir / "run")
    for line in (args.outdir / "run" / "stats.jsonl").read_text().splitlines():
        r = json.loads(line)
        print(json.dumps({k: r.get(k) for k in ("kimg", "bit_acc_train", "bit_accuracy", "psnr",
                                                "bit_accuracy_original")}))


if __name__ == "__main__":
    main()
