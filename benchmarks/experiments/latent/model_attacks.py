"""Model attacks on an issued latent decoder: bit accuracy and attribution after each.

    python benchmarks/experiments/latent/model_attacks.py --run RUN --data DIR --models 20 --images 64 \
        --steps 0 25 50 100 200 --out runs/latent-attacks

RUN is a `train-latent-fingerprint` run folder (latent-modulated.safetensors, fingerprint-decoder.safetensors and
config.json, whose "autoencoder" names the original autoencoder; `--autoencoder` overrides it). `--models` decoders
are issued from the shared model into a temporary registry; the first is the victim. Its images are the decodes of
the latents of `--images` clean images of DATA (encoded by the original autoencoder), read by the fingerprint
decoder and attributed among the issued fingerprints at `--fpr`. Attacks (ganprint.evaluation.latent_attacks and
model_attacks): none, swapping in the original decoder, float16, int8 per tensor, relative weight noise, and
fine-tuning the decoder on the other clean images of DATA (Adam, `--lr`), read at every `--steps` value. Writes
OUT/rows.jsonl (one row per attack) and OUT/finetune.png (bit accuracy and attribution against steps).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from ganprint.core.artifacts import load_export
from ganprint.core.fingerprints import parse_bits
from ganprint.core.images import preprocess, read_image
from ganprint.data.listing import list_images
from ganprint.evaluation.latent_attacks import finetune_decoder, read_attacked, swap_decoder, to_float16
from ganprint.evaluation.model_attacks import quantize_weights, weight_noise
from ganprint.latent.autoencoder import encode
from ganprint.latent.issue import issue_loaded_latent
from ganprint.registry.store import Registry


def _images(data: Path, resolution: int, limit: int) -> torch.Tensor:
    files = list_images(data)[:limit]
    return torch.from_numpy(np.stack([preprocess(read_image(f), resolution) for f in files])).permute(0, 3, 1, 2)


def _setup(args, tmp: Path) -> dict:
    shared, _, _ = load_export(args.run / "latent-modulated.safetensors", kind="latent-modulated")
    fdec, _, _ = load_export(args.run / "fingerprint-decoder.safetensors", kind="stega-decoder")
    ae_path = args.autoencoder or Path(json.loads((args.run / "config.json").read_text())["autoencoder"])
    original, _, _ = load_export(ae_path, kind="latent-autoencoder")
    reg = Registry(tmp / "reg.sqlite")
    rows = [issue_loaded_latent(shared, "bench", reg, tmp / "issued", who=f"user{i}") for i in range(args.models)]
    victim, _, _ = load_export(rows[0]["issued_path"], kind="latent-autoencoder-issued")
    imgs = _images(args.data, shared.ae_cfg.resolution, args.images + args.finetune_images)
    held, tune = imgs[:args.images], imgs[args.images:]
    with torch.no_grad():
        latents = encode(original, held.float() / 127.5 - 1)
    bits = parse_bits(rows[0]["bits_hex"], shared.fingerprint_length)
    return {"fdec": fdec, "original": original, "victim": victim, "latents": latents, "tune": tune,
            "bits": bits.float(), "fp_id": rows[0]["fp_id"], "issued": reg.packed()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True, help="Clean images: the latents read and the fine-tuning set.")
    ap.add_argument("--autoencoder", type=Path, default=None)
    ap.add_argument("--models", type=int, default=20)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--finetune-images", type=int, default=256)
    ap.add_argument("--steps", type=int, nargs="+", default=[0, 25, 50, 100, 200])
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--fpr", type=float, default=1e-6)
    ap.add_argument("--noise", type=float, nargs="+", default=[0.01, 0.03, 0.1], help="Relative weight-noise stds.")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ganprint-latent-attacks-") as tmp:
        s = _setup(args, Path(tmp))

        def read(model) -> dict:
            return read_attacked(model, s["fdec"], s["latents"], s["bits"], s["fp_id"], s["issued"], args.fpr)

        attacks = [("none", None, s["victim"]), ("swap-original", None, swap_decoder(s["victim"], s["original"])),
                   ("float16", None, to_float16(s["victim"])), ("int8", None, quantize_weights(s["victim"], bits=8))]
        attacks += [("weight-noise", std, weight_noise(s["victim"], std, relative=True)) for std in args.noise]
        rows = [{"attack": name, "strength": strength, **read(model)} for name, strength, model in attacks]
        curve: dict[int, dict] = {}
        steps = sorted(set(args.steps))
        finetune_decoder(s["victim"], s["tune"], steps[-1], lr=args.lr, every=1,  # one run, read at each step listed
                         on_checkpoint=lambda step, m: curve.__setitem__(step, read(m)) if step in steps else None)
        rows += [{"attack": "finetune", "strength": step, "lr": args.lr, **curve[step]} for step in steps]
    meta = {"run": str(args.run), "models": args.models, "fpr": args.fpr, "finetune_images": len(s["tune"])}
    with (args.out / "rows.jsonl").open("w") as f:
        f.writelines(json.dumps({**r, **meta}) + "\n" for r in rows)
    for r in rows:
        print(json.dumps(r))
    _plot(rows, args.out / "finetune.png")


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ft = [r for r in rows if r["attack"] == "finetune"]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([r["strength"] for r in ft], [r["bit_accuracy"] for r in ft], "o-", label="bit accuracy")
    ax.plot([r["strength"] for r in ft], [r["attributed_own"] for r in ft], "s-", label="attributed to its holder")
    ax.set_xlabel("fine-tuning steps (decoder, clean images)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
