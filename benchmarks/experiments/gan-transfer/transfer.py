"""Fingerprint transfer, measured: does a GAN trained on fingerprinted images reproduce the fingerprint?

Artificial Fingerprinting (Yu et al., ICCV 2021; papers.md §1.9) claims that a GAN trained on images that all carry
ONE fingerprint generates images carrying it (bit accuracy 0.93-0.99). This script trains two StyleGAN2
generators side by side, one on clean images and one on the same images fingerprinted with
`ganprint embed --identical`, and at every `--eval-kimg` generates `--n-eval` images from each EMA generator,
decodes them with the stega decoder and records bit accuracy against the embedded fingerprint and the share of
images detected at `--fpr`.

Outputs in WORKDIR: data/ (sample crops), stega/ (when no --stega-model), embedded/ (fingerprinted data),
gan-clean/ and gan-fingerprinted/ (train-gan runs), transfer.jsonl (one row per run and kimg, plus the real data
as reference at kimg 0) and transfer.png (the curve). Re-running the same command resumes everything.

    nice -n 10 python benchmarks/experiments/gan-transfer/transfer.py --workdir runs/transfer --minutes 40
    python benchmarks/experiments/gan-transfer/transfer.py --workdir runs/transfer --stega-model runs/fp32/model.safetensors --max-kimg 200
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger("transfer")


def _run(cmd: list[str]) -> None:
    log.info("$ %s", " ".join(cmd))
    subprocess.run(cmd, check=True)


def _ganprint(*args: str) -> list[str]:
    return [sys.executable, "-m", "ganprint", *args]


def prepare(args) -> tuple[Path, Path, Path, str]:
    """Sample data, a stega model (trained unless given) and the fingerprinted copy; returns paths + fingerprint."""
    work = Path(args.workdir)
    data = work / "data"
    if not (data / "SOURCES.md").exists() or len(list(data.glob("*.png"))) < args.count:
        _run(_ganprint("data", "samples", str(data), "--count", str(args.count), "--resolution", "32",
                       "--photos", "train", "--seed", str(args.seed)))
    stega = Path(args.stega_model) if args.stega_model else work / "stega" / "model.safetensors"
    if not stega.exists():
        if args.stega_model:
            raise SystemExit(f"--stega-model {stega} does not exist")
        steps = ["--steps", str(args.stega_steps)] if args.stega_steps else []
        _run(_ganprint("train", "--data", str(data), "--preset", "demo-32", "--outdir", str(work / "stega"),
                       "--device", args.device, "--seed", str(args.seed), *steps))
    emb = work / "embedded"
    manifest = emb / "manifest.json"
    if not manifest.exists() or json.loads(manifest.read_text()).get("status") != "complete":
        _run(_ganprint("embed", "--model", str(stega), "--data", str(data), "--outdir", str(emb), "--identical",
                       "--seed", str(args.seed), "--device", args.device))
    fingerprint = json.loads((emb / "manifest.json").read_text())["config"]["fingerprint"]
    return data, emb / "fingerprinted_images", stega, fingerprint


@torch.no_grad()
def decode_accuracy(dec, img_u8: np.ndarray, ref: torch.Tensor, threshold: int, device) -> dict:
    """Bit accuracy and detection rate of uint8 [N, H, W, 3] images against the fingerprint `ref` [K]."""
    from ganprint.core.images import to_tensor01
    from ganprint.core.stats import bit_accuracy, decode_bits

    x = to_tensor01(img_u8).to(device)  # [N, 3, H, W] in [0, 1] (the stega decoder's range)
    bits = decode_bits(torch.cat([dec(x[i: i + 256]) for i in range(0, len(x), 256)]))
    acc = bit_accuracy(bits.cpu(), ref)  # [N]
    k = ref.numel()
    matches = (acc * k).round()
    return {"bit_acc_mean": round(acc.mean().item(), 4), "bit_acc_std": round(acc.std().item(), 4),
            "detected": round((matches >= threshold).float().mean().item(), 4), "n_images": len(acc)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--stega-model", default=None, help="a `ganprint train` export; default: train demo-32 here")
    ap.add_argument("--stega-steps", type=int, default=None, help="steps of that demo-32 run (default: preset)")
    ap.add_argument("--count", type=int, default=2000, help="sample crops (GAN training set)")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--channel-base", type=int, default=None, help="override the preset's G and D widths")
    ap.add_argument("--channel-max", type=int, default=None)
    ap.add_argument("--eval-kimg", type=float, default=1.0, help="evaluate both generators every N kimg")
    ap.add_argument("--max-kimg", type=float, default=1000.0)
    ap.add_argument("--minutes", type=float, default=None, help="stop starting new chunks after this wall time")
    ap.add_argument("--n-eval", type=int, default=128, help="generated images decoded per evaluation")
    ap.add_argument("--fpr", type=float, default=1e-6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)

    from ganprint.core.artifacts import load_export
    from ganprint.core.files import append_jsonl, read_jsonl
    from ganprint.core.fingerprints import parse_bits
    from ganprint.core.runtime import resolve_device
    from ganprint.core.stats import match_threshold
    from ganprint.data.folders import open_image_dataset
    from ganprint.gan.config import resolve_config
    from ganprint.gan.generate import generate_seeds
    from ganprint.gan.train import train_gan

    t_start = time.time()
    work = Path(args.workdir)
    clean_dir, fp_dir, stega_path, fp_str = prepare(args)
    dev = resolve_device(args.device)
    stega, _, _ = load_export(stega_path, kind=("stega", "stega-decoder"), device=dev)
    dec = stega.dec.eval()
    ref = parse_bits(fp_str)
    k = ref.numel()
    threshold = match_threshold(k, args.fpr)
    log.info("fingerprint %s (%d bits); detection needs >= %d matching bits at FPR %g", fp_str, k, threshold,
             args.fpr)

    out_jsonl = work / "transfer.jsonl"
    done = {(r["run"], r["kimg"]) for r in read_jsonl(out_jsonl)} if out_jsonl.exists() else set()
    common = {"k": k, "fpr": args.fpr, "threshold": threshold, "seed": args.seed}
    datasets = {"clean": open_image_dataset(clean_dir, 32), "fingerprinted": open_image_dataset(fp_dir, 32)}
    # Reference rows: the training images themselves (upper bound for "fingerprinted", chance for "clean").
    for name, ds in datasets.items():
        if (f"data-{name}", 0.0) not in done:
            imgs = np.stack([ds[i]["img"].permute(1, 2, 0).numpy() for i in range(min(len(ds), args.n_eval))])
            row = {"run": f"data-{name}", "kimg": 0.0, **decode_accuracy(dec, imgs, ref, threshold, dev), **common}
            append_jsonl(out_jsonl, row)
            log.info("%s", row)

    overrides = {"batch_size": args.batch_size, "seed": args.seed, "snapshot_kimg": args.eval_kimg,
                 "kimg_per_tick": min(args.eval_kimg, 1.0)}
    cfg0 = resolve_config(args.preset, 32, **overrides)
    if args.channel_base or args.channel_max:
        widths = {k_: v for k_, v in (("channel_base", args.channel_base), ("channel_max", args.channel_max)) if v}
        cfg0 = dataclasses.replace(cfg0, G=dataclasses.replace(cfg0.G, **widths),
                                   D=dataclasses.replace(cfg0.D, **widths))
    seeds = list(range(10_000, 10_000 + args.n_eval))  # held apart from the fakes-grid seeds 0..63
    target = 0.0
    while target < args.max_kimg:
        target = round(target + args.eval_kimg, 3)
        for name in ("clean", "fingerprinted"):
            if (f"gan-{name}", target) in done:
                continue
            if args.minutes is not None and (time.time() - t_start) / 60 > args.minutes:
                log.info("time budget of %.0f min spent; stopping (re-run to continue)", args.minutes)
                plot(out_jsonl, work / "transfer.png")
                return
            cfg = dataclasses.replace(cfg0, total_kimg=target)
            res = train_gan(cfg, work / f"gan-{name}", datasets[name], device=args.device)
            imgs = generate_seeds(res["G_ema"], seeds, dev, batch_size=64, dtype=torch.float32)
            row = {"run": f"gan-{name}", "kimg": target, **decode_accuracy(dec, imgs, ref, threshold, dev),
                   "train_elapsed_s": round(res["elapsed_s"], 1), **common}
            append_jsonl(out_jsonl, row)
            log.info("%s", row)
        plot(out_jsonl, work / "transfer.png")


def plot(jsonl: Path, png: Path) -> None:
    """Bit accuracy of generated images against kimg, both runs, with the data references as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ganprint.core.files import atomic_path, read_jsonl

    rows = read_jsonl(jsonl)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    colors = {"clean": "tab:blue", "fingerprinted": "tab:red"}
    for name, color in colors.items():
        pts = sorted((r["kimg"], r["bit_acc_mean"], r["bit_acc_std"], r["detected"]) for r in rows
                     if r["run"] == f"gan-{name}")
        if pts:
            x, y, e, det = map(np.array, zip(*pts))
            ax.plot(x, y, "o-", color=color, label=f"GAN on {name} data")
            ax.fill_between(x, y - e, y + e, color=color, alpha=0.15)
            ax2.plot(x, det, "o-", color=color, label=f"GAN on {name} data")
        ref = [r for r in rows if r["run"] == f"data-{name}"]
        if ref:
            ax.axhline(ref[0]["bit_acc_mean"], color=color, ls="--", lw=1, label=f"{name} training images")
            ax2.axhline(ref[0]["detected"], color=color, ls="--", lw=1, label=f"{name} training images")
    ax.axhline(0.5, color="gray", ls=":", lw=1)
    ax.set_xlabel("kimg (real images shown to D)")
    ax.set_ylabel("bit accuracy of generated images")
    ax.set_ylim(0.3, 1.02)
    ax.set_title("Fingerprint transfer into StyleGAN2 (32 px, mean +- std)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fpr = rows[0].get("fpr", 1e-6) if rows else 1e-6
    ax2.set_xlabel("kimg (real images shown to D)")
    ax2.set_ylabel(f"share of generated images detected (FPR {fpr:g})")
    ax2.set_ylim(-0.02, 1.02)
    ax2.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


if __name__ == "__main__":
    main()
