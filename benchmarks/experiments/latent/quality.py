"""Quality of a fingerprinted latent decoder on held-out images: bit accuracy clean and attacked, fidelity to the
original decoder, and the no-fingerprint controls.

For every held-out image (none of them seen in training) the frozen original encoder gives the latent z; the
modulated decoder of RUN decodes it with a fresh random fingerprint c (x_c) and the original decoder decodes it
plainly (x_0). Both are saved as 8-bit images. Reported: bit accuracy of RUN's fingerprint decoder on x_c clean and
after JPEG 70, resize 0.5 and crop 0.75 (`ganprint.perturb` attacks); PSNR and SSIM of x_c against x_0; and the
bit accuracy (against the same c) of x_0 and of the real photos, which carry no fingerprint and should read ~0.5.

    python benchmarks/experiments/latent/quality.py --run RUN --autoencoder AE.safetensors --data HELDOUT \
        --out benchmarks/experiments/latent/results/quality-NAME.json

Prints a markdown table; WOUAF's published figures (32 bits, Stable Diffusion at 512 px: a different set-up) are
printed beside it for orientation, not as a like-for-like comparison.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ganprint.core.files import atomic_write_json
from ganprint.evaluation.quality import psnr, ssim
from ganprint.inference.decoders import Decoder, DecoderOptions
from ganprint.latent.autoencoder import decode, encode
from ganprint.latent.fingerprint_train import DECODER_EXPORT, MODEL_EXPORT, load_trained, read_autoencoder
from ganprint.perturb.attacks import parse_attacks
from ganprint.training.data import decode_all, open_training_data

ATTACKS = {"jpeg 70": "jpeg:70", "resize 0.5": "resize:0.5", "crop 0.75": "crop:0.75"}
WOUAF = {"clean": 0.991, "jpeg 70": 0.955, "psnr": 31.2}  # WOUAF (CVPR 2024), 32 bits, SD 512 px


def _u8(x: torch.Tensor) -> torch.Tensor:
    return (x * 127.5 + 128).clamp(0, 255).floor().to(torch.uint8)


@torch.no_grad()
def measure(run: Path, autoencoder: str, data: str, limit: int, seed: int, batch: int = 64) -> dict:
    model, _ = load_trained(run)
    ae_cfg, vae = read_autoencoder(autoencoder)
    reader = Decoder(run / DECODER_EXPORT, DecoderOptions(layout="nchw"))
    real = decode_all(open_training_data(data, ae_cfg.resolution))[:limit]
    g = torch.Generator().manual_seed(seed)
    c = torch.randint(0, 2, (len(real), model.fingerprint_length), generator=g).float()
    xc, x0 = [], []
    for s in range(0, len(real), batch):
        z = encode(vae, real[s:s + batch].float() / 127.5 - 1)
        xc.append(_u8(model.decode(z, c[s:s + batch])))
        x0.append(_u8(decode(vae, z)))
    xc, x0 = torch.cat(xc), torch.cat(x0)

    def acc(images_u8: torch.Tensor) -> float:
        return float((reader.bits(images_u8, batch) == c).float().mean())

    out = {"run": str(run), "images": len(real), "fingerprint_length": model.fingerprint_length,
           "bit_accuracy": {"clean": acc(xc)}}
    for name, spec in ATTACKS.items():
        chain = parse_attacks(spec)[0]
        attacked = chain(xc.float() / 255, seed)
        out["bit_accuracy"][name] = acc((attacked * 255).round().clamp(0, 255).to(torch.uint8))
    out["bit_accuracy"]["original decoder"] = acc(x0)
    out["bit_accuracy"]["real photos"] = acc(real)
    a, b = xc.float() / 255, x0.float() / 255
    out["psnr_db"] = float(psnr(a, b).mean())
    out["ssim"] = float(ssim(a, b).mean())
    out["original_reconstruction_psnr_db"] = float(psnr(b, real.float() / 255).mean())
    stats = run / "stats.jsonl"
    if stats.is_file():
        last = json.loads(stats.read_text().splitlines()[-1])
        out["trained_kimg"] = last.get("kimg")
    return out


def table(r: dict) -> str:
    acc = r["bit_accuracy"]
    rows = ["| figure | this run | WOUAF (different set-up) |", "|---|---|---|"]
    rows.append(f"| bit accuracy, clean | {acc['clean']:.3f} | {WOUAF['clean']} |")
    for name in ATTACKS:
        rows.append(f"| bit accuracy, {name} | {acc[name]:.3f} | {WOUAF.get(name, '—')} |")
    rows.append(f"| PSNR x_c vs x_0 (dB) | {r['psnr_db']:.2f} | {WOUAF['psnr']} |")
    rows.append(f"| SSIM x_c vs x_0 | {r['ssim']:.3f} | — |")
    rows.append(f"| bit accuracy, original decoder's images | {acc['original decoder']:.3f} | — |")
    rows.append(f"| bit accuracy, real photos | {acc['real photos']:.3f} | — |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, type=Path, help=f"a train-latent-fingerprint run folder ({MODEL_EXPORT})")
    ap.add_argument("--autoencoder", required=True, help="the original autoencoder the run started from")
    ap.add_argument("--data", required=True, help="held-out images at the model's resolution (not the training set)")
    ap.add_argument("--limit", type=int, default=500, help="at most this many images")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="JSON file for the figures")
    args = ap.parse_args()
    r = measure(args.run, args.autoencoder, args.data, args.limit, args.seed)
    print(table(r))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.out, r)


if __name__ == "__main__":
    main()
