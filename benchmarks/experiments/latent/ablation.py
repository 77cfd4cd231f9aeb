"""One fingerprint fine-tuning run of a latent decoder with config overrides; its held-out curve as JSON lines.

    python benchmarks/experiments/latent/ablation.py --autoencoder AE.safetensors --data DIR --outdir RUN \
        --set kimg=20 batch_size=16 train_decoder=true --out benchmarks/experiments/latent/results/NAME.jsonl

Each `--set key=value` overrides a field of `--preset` (default lfp-32, `ganprint.latent.fingerprint_config`);
values are JSON, bare words are strings. Re-running resumes the run. Every tick's held-out bit accuracy, PSNR
against the original decoder and bit accuracy of the original decoder's images are written to `--out` with the
overrides.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ganprint.core.files import atomic_write_text
from ganprint.latent.fingerprint_config import resolve_config
from ganprint.latent.fingerprint_train import train_latent_fingerprint


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--autoencoder", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--outdir", required=True, type=Path)
    ap.add_argument("--preset", default="lfp-32")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    overrides = dict(kv.split("=", 1) for kv in args.set)
    cfg = resolve_config(args.preset, **{k: _value(v) for k, v in overrides.items()})
    train_latent_fingerprint(cfg, args.autoencoder, args.data, args.outdir, device=cfg.device)
    keep = ("kimg", "bit_acc_train", "bit_accuracy", "psnr", "bit_accuracy_original", "w_img", "time_s")
    rows = [json.loads(line) for line in (args.outdir / "stats.jsonl").read_text().splitlines()]
    lines = [json.dumps({"overrides": overrides, **{k: r[k] for k in keep if k in r}}) for r in rows]
    print(lines[-1])
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, "".join(f"{line}\n" for line in lines))


if __name__ == "__main__":
    main()
