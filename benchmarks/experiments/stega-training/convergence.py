"""Convergence benchmark of `ganprint train`: N seeds, steps and minutes until held-out bit accuracy >= 0.99 at
PSNR >= 30 dB.

Training crops come from the sample photos' train split and the held-out crops from photos never trained on
(`ganprint data samples --photos train|heldout`). Every `--eval-every` steps the model embeds fixed random
fingerprints into the held-out crops (8-bit rounded, as a saved PNG would be) and decodes them.

    python benchmarks/experiments/stega-training/convergence.py --preset demo-32 --seeds 0-4 --out benchmarks/convergence-demo32.jsonl
    python benchmarks/experiments/stega-training/convergence.py --preset agf-original --resolution 32 --fingerprint-length 64 \
        --steps 1500 --seeds 0 --out benchmarks/convergence-original.jsonl

    python benchmarks/experiments/stega-training/convergence.py --diagnose     # why the original stalls at bit accuracy 0.5
    python benchmarks/experiments/stega-training/convergence.py --eval-export RUN/model.safetensors HELDOUT_DIR   # one model, held out

Writes one JSONL row per seed ({"seed", "reached", "steps_to_target", "minutes_to_target", "final_bit_acc",
"final_psnr", "curve": [[step, minutes, bit_acc, psnr], ...]}) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import torch

from ganprint.artificial.config import resolve_config
from ganprint.artificial.train import train_stega
from ganprint.training.data import decode_all
from ganprint.data.folders import open_image_dataset
from ganprint.data.samples import write_samples


def parse_seeds(s: str) -> list[int]:
    out: list[int] = []
    for part in s.split(","):
        a, _, b = part.partition("-")
        out += list(range(int(a), int(b) + 1)) if b else [int(a)]
    return out


def parse_sets(items: list[str]) -> dict:
    """["lr_schedule=cosine", "psnr_acc_floor=0.98"] -> config overrides, values parsed as JSON where possible."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.replace("-", "_")] = value
    return out


def heldout_eval(model, imgs: torch.Tensor, bits: torch.Tensor) -> tuple[float, float]:
    """(bit accuracy, PSNR dB) of the model on held-out uint8 images [N,3,R,R] with fingerprints `bits`."""
    with torch.no_grad():
        x = imgs.float() / 255
        fp = model.enc(bits, x)
        fp = torch.round(fp * 255) / 255  # what a saved 8-bit PNG holds
        acc = ((model.dec(fp) > 0).float() == bits).float().mean().item()
        mse = torch.mean((fp - x) ** 2).item()
    return acc, 10 * math.log10(1 / max(mse, 1e-12))


def run_seed(args, seed: int, train, held: torch.Tensor) -> dict:
    cfg = resolve_config(args.preset, seed=seed, resolution=args.resolution, fingerprint_length=args.fingerprint_length,
                         steps=args.steps, lr=args.lr, batch_size=args.batch_size, amp=args.amp, **parse_sets(args.set))
    cfg = dataclasses.replace(cfg, data="", device="cpu")
    g = torch.Generator().manual_seed(1234)
    bits = torch.randint(0, 2, (len(held), cfg.fingerprint_length), generator=g).float()
    curve: list[list[float]] = []
    state = {"t0": time.perf_counter(), "eval_s": 0.0, "hit": None}

    def callback(step, model):
        if step % args.eval_every:
            return False
        t = time.perf_counter()
        minutes = (t - state["t0"] - state["eval_s"]) / 60  # training time only, evaluations excluded
        acc, psnr = heldout_eval(model, held, bits)
        state["eval_s"] += time.perf_counter() - t
        curve.append([step, round(minutes, 3), round(acc, 4), round(psnr, 2)])
        print(f"seed {seed} step {step} min {minutes:.2f} heldout bit_acc {acc:.4f} psnr {psnr:.2f}",
              file=sys.stderr, flush=True)
        if state["hit"] is None and acc >= args.target_acc and psnr >= args.target_psnr:
            state["hit"] = (step, minutes)
            return not args.keep_going
        return False

    outdir = Path(args.workdir) / f"{args.preset}{args.tag}-seed{seed}"
    train_stega(cfg, outdir, data=train, device="cpu", log_every=args.eval_every, snapshot_every=0,
                checkpoint_every=0, progress=False, callback=callback)
    hit = state["hit"]
    return {"preset": args.preset, "tag": args.tag, "overrides": parse_sets(args.set), "seed": seed, "resolution": cfg.resolution, "bits": cfg.fingerprint_length,
            "config": cfg.to_dict(), "threads": torch.get_num_threads(), "reached": hit is not None,
            "steps_to_target": hit[0] if hit else None, "minutes_to_target": round(hit[1], 2) if hit else None,
            "final_step": curve[-1][0] if curve else 0, "final_bit_acc": curve[-1][2] if curve else None,
            "final_psnr": curve[-1][3] if curve else None, "curve": curve}


def diagnose(res: int = 32, bits: int = 64, batch: int = 64) -> None:
    """Print, for PyTorch's default init and for He init, what the untrained networks do with a batch:
    the encoder output's spread across the batch, the decoder's logit spread and the bit-loss gradient norms."""
    import torch.nn.functional as F

    from ganprint.artificial.train import init_weights
    from ganprint.nets.stega import StegaConfig, StegaModel

    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, res, res, generator=g)
    c = torch.randint(0, 2, (batch, bits), generator=g).float()
    for scheme in ("torch", "he"):
        m = StegaModel(StegaConfig(res, bits))
        init_weights(m, scheme, 0)
        fp, logits = m(c, x)
        F.binary_cross_entropy_with_logits(logits, c).backward()
        row = {"init": scheme, "enc_out_std_over_batch": fp.std(0).mean().item(), "enc_out_mean": fp.mean().item(),
               "logit_std": logits.std().item(),
               "grad_norm": {n: f"{p.grad.norm().item():.1e}" for n, p in m.named_parameters()
                             if n.endswith("weight") and any(k in n for k in ("secret_dense", "conv1.", "conv5",
                                                                               "residual", "decoder.0.", "dense.2"))}}
        print(json.dumps(row))


def main() -> None:
    if sys.argv[1:] == ["--diagnose"]:
        diagnose()
        return
    if sys.argv[1:2] == ["--eval-export"]:  # --eval-export MODEL HELDOUT_DIR: one trained model on held-out crops
        from ganprint.core.artifacts import load_export

        model, cfg, meta = load_export(sys.argv[2], kind="stega")
        held = decode_all(open_image_dataset(sys.argv[3], cfg["resolution"]))
        g = torch.Generator().manual_seed(1234)
        bits = torch.randint(0, 2, (len(held), cfg["fingerprint_length"]), generator=g).float()
        acc, psnr = heldout_eval(model, held, bits)
        print(json.dumps({"model": sys.argv[2], "step": meta.get("ganprint.step"), "heldout_images": len(held),
                          "bit_acc": round(acc, 4), "psnr": round(psnr, 2)}))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="demo-32")
    p.add_argument("--seeds", default="0-4")
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--fingerprint-length", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field of the preset (repeatable), e.g. --set lr_schedule=cosine")
    p.add_argument("--tag", default="", help="suffix of the run folders (to keep variants apart)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--train-count", type=int, default=4000)
    p.add_argument("--heldout-count", type=int, default=256)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--target-acc", type=float, default=0.99)
    p.add_argument("--target-psnr", type=float, default=30.0)
    p.add_argument("--keep-going", action="store_true", help="train all steps even after reaching the target")
    p.add_argument("--workdir", default="conv-runs")
    p.add_argument("--out", default="benchmarks/convergence.jsonl")
    args = p.parse_args()

    res = resolve_config(args.preset, resolution=args.resolution).resolution
    data_dir = Path(args.workdir) / "data"
    write_samples(data_dir / f"train{res}", resolution=res, count=args.train_count, seed=0, photos="train")
    write_samples(data_dir / f"heldout{res}", resolution=res, count=args.heldout_count, seed=1, photos="heldout")
    train = decode_all(open_image_dataset(data_dir / f"train{res}", res))
    held = decode_all(open_image_dataset(data_dir / f"heldout{res}", res))

    rows = []
    for seed in parse_seeds(args.seeds):
        row = run_seed(args, seed, train, held)
        rows.append(row)
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
    print("| preset | seed | reached | steps to target | minutes to target | final bit acc | final PSNR |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['preset']} | {r['seed']} | {r['reached']} | {r['steps_to_target']} | {r['minutes_to_target']} "
              f"| {r['final_bit_acc']} | {r['final_psnr']} |")


if __name__ == "__main__":
    main()
