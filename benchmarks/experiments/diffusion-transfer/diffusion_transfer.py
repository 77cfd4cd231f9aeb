r"""Does a diffusion model trained on fingerprinted images reproduce the fingerprint? End to end, with a control.

Steps (each skipped when its output exists, and every training resumes, so re-running continues a run):
  1. sample crops:  ganprint data samples OUT/data --resolution R --count N --seed 0 --photos train
  2. a stega model: ganprint train --data OUT/data --preset demo-32 --outdir OUT/stega   (or --stega MODEL)
  3. fingerprint:   ganprint embed --model STEGA --data OUT/data --outdir OUT/fp --identical
     (at R other than the model's 32 px: --keep-size, the residual upsampled onto each R-px crop, and with
     --target-psnr that PSNR per crop)
  4. two diffusion models trained the same way: OUT/clean on OUT/data, OUT/fpdiff on OUT/fp/fingerprinted_images
     (ganprint train-diffusion --preset P --resolution R --kimg K --seed 0; --no-control trains the second only),
     and with --finetune-kimg a fine-tune of the clean model's final export on the fingerprinted images
     (OUT/finetune, --resume-from)
  5. for every snapshot (or one per --eval-every-kimg): ganprint generate --seeds 0-(S-1) --sampler ddim --steps T, then
     ganprint detect --fingerprint F --fpr 1e-6, one row per (run, kimg) in OUT/transfer.jsonl
  6. with --steps-sweep: the last snapshot of each run sampled at several step counts

    python benchmarks/experiments/diffusion-transfer/diffusion_transfer.py --out /work/runs/diffusion --kimg 20 --samples 64 --parallel
    python benchmarks/experiments/diffusion-transfer/diffusion_transfer.py --out runs/dt --stega runs/fp32/model.safetensors --kimg 5 \
        --finetune-kimg 5 --steps-sweep 10,25,50
    python benchmarks/experiments/diffusion-transfer/diffusion_transfer.py --out runs/dt64 --resolution 64 \
        --stega runs/robust32/model.safetensors --target-psnr 30 --kimg 20 --no-control

Rows: {"run", "kimg", "sampler", "steps", "images", "mean_bit_accuracy", "detected_rate", "threshold",
"residual_corr" (correlation of the samples with the mean fingerprint residual of the training crops)}; the
references "data-clean" and "data-fingerprinted" (the training images themselves) come first. Prints a Markdown
table at the end. Set OMP_NUM_THREADS to keep each process to its share of a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from ganprint.core.images import read_image

GANPRINT = [sys.executable, "-m", "ganprint"]
_RESIDUAL: dict[str, np.ndarray] = {}


def mean_residual(out: Path, n: int = 500) -> np.ndarray:
    """The fingerprint pattern common to the training images: mean of (fingerprinted - clean) over n crops."""
    if "r" not in _RESIDUAL:
        clean = sorted((out / "data").glob("**/*.png"))[:n]
        fp = out / "fp" / "fingerprinted_images"
        _RESIDUAL["r"] = np.mean([read_image(fp / p.relative_to(out / "data")).astype(np.float64)
                                  - read_image(p).astype(np.float64) for p in clean], axis=0)
    return _RESIDUAL["r"]


def residual_corr(out: Path, images: Path) -> float:
    """Mean correlation of each generated image (minus its mean colour) with the common fingerprint pattern:
    a decoder-free sign of the pattern coming through before the decoder can read it."""
    r = mean_residual(out)
    cs = []
    for f in sorted(images.glob("seed*.png")):
        x = read_image(f).astype(np.float64)
        x -= x.mean(axis=(0, 1))
        cs.append(float((x * r).sum() / np.sqrt((x * x).sum() * (r * r).sum())))
    return round(float(np.mean(cs)), 4) if cs else None


def sh(args: list, log: Path) -> None:
    """Run one ganprint command, echoing it and appending its output to `log`."""
    cmd = [str(a) for a in args]
    print("$ " + " ".join(cmd[2:]).replace("-m ganprint", "ganprint"), flush=True)
    with open(log, "a") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc:
        sys.exit(f"that command failed (exit {rc}); its output is at the end of {log}")


def train_cmd(args, data: Path, outdir: Path, kimg: float, resume_from: Path | None = None) -> list:
    cmd = [*GANPRINT, "train-diffusion", "--data", data, "--outdir", outdir, "--preset", args.preset, "--kimg", kimg,
           "--seed", args.seed, "--device", args.device, "--resolution", args.resolution]
    for flag, value in (("--snapshot-kimg", args.snapshot_kimg), ("--warmup-kimg", args.warmup_kimg)):
        if value is not None:
            cmd += [flag, value]
    return cmd + (["--resume-from", resume_from] if resume_from else [])


def prepare(args, out: Path, log: Path) -> tuple[Path, str]:
    """Steps 1-3: crops, stega model and fingerprinted crops; returns (stega model, fingerprint bits)."""
    if not (out / "data" / "SOURCES.md").exists():
        sh([*GANPRINT, "data", "samples", out / "data", "--resolution", args.resolution, "--count", args.count,
            "--seed", 0, "--photos", "train"], log)
    stega = Path(args.stega) if args.stega else out / "stega" / "model.safetensors"
    if not stega.exists():
        sh([*GANPRINT, "train", "--data", out / "data", "--preset", "demo-32", "--outdir", out / "stega"], log)
    fp_list = out / "fp" / "embedded_fingerprints.txt"
    if not fp_list.exists():
        sh([*GANPRINT, "embed", "--model", stega, "--data", out / "data", "--outdir", out / "fp", "--identical",
            *embed_size_args(args)], log)
    return stega, fp_list.read_text().split()[1]


def embed_size_args(args) -> list:
    """Embed flags for crops that are not at the stega model's 32 px (kept at their size), or none."""
    if args.resolution == 32:
        return []
    return ["--keep-size"] + ([] if args.target_psnr is None else ["--target-psnr", args.target_psnr])


def train_all(args, out: Path, log: Path) -> None:
    """Step 4: the clean and the fingerprinted-data models (side by side with --parallel), then the fine-tune."""
    jobs = [train_cmd(args, out / "data", out / "clean", args.kimg)] if args.control else []
    jobs.append(train_cmd(args, out / "fp" / "fingerprinted_images", out / "fpdiff", args.kimg))
    if args.parallel:
        with open(log, "a") as f:
            procs = []
            for cmd in jobs:
                print("$ " + " ".join(str(c) for c in cmd[2:]) + " &", flush=True)
                procs.append(subprocess.Popen([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT))
            if any(p.wait() for p in procs):
                sys.exit("a training failed; see " + str(log))
    else:
        for cmd in jobs:
            sh(cmd, log)
    if args.finetune_kimg:
        start = Path(args.finetune_from) if args.finetune_from else out / "clean" / "network-final.safetensors"
        sh(train_cmd(args, out / "fp" / "fingerprinted_images", out / "finetune", args.finetune_kimg, start), log)


def detect_row(args, out: Path, log: Path, run: str, images: Path, stega: Path, bits: str, extra: dict) -> dict:
    """Detect --fingerprint in a folder of images; returns (and appends) one result row."""
    det = images.parent / "det" if images.name == "images" else out / "eval" / run / "det"
    if not (det / "summary.json").exists():
        sh([*GANPRINT, "detect", "--model", stega, "--data", images, "--outdir", det, "--fingerprint", bits, "--fpr",
            args.fpr], log)
    s = json.loads((det / "summary.json").read_text())
    row = {"run": run, **extra, "images": s["images"], "mean_bit_accuracy": round(s["mean_bit_accuracy"], 4),
           "detected_rate": round(s["detected_rate"], 4), "threshold": s.get("match_threshold"),
           "residual_corr": residual_corr(out, images) if images.name == "images" else None}
    with open(out / "transfer.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    return row


def sample_and_detect(args, out: Path, log: Path, run: str, model: Path, steps: int, stega: Path, bits: str) -> dict:
    nimg = model.stem.split("-")[-1]
    where = out / "eval" / run / f"{nimg}-{args.sampler}{steps}"
    if not (where / "det" / "summary.json").exists():
        sh([*GANPRINT, "generate", "--model", model, "--seeds", f"0-{args.samples - 1}", "--outdir", where / "images",
            "--sampler", args.sampler, "--steps", steps, "--precision", "fp32", "--batch-size", 32,
            "--device", args.device], log)
    kimg = int(nimg) / 1000 if nimg.isdigit() else None
    return detect_row(args, out, log, run, where / "images", stega, bits,
                      {"kimg": kimg, "sampler": args.sampler, "steps": steps})


def pick_snapshots(snaps: list[Path], every_kimg: float | None) -> list[Path]:
    """The snapshots that first pass each multiple of `every_kimg` (all of them when None), and the last one."""
    if not every_kimg or not snaps:
        return snaps
    step, picked, last_bucket = every_kimg * 1000, [], -1
    for m in snaps:
        bucket = int(int(m.stem.split("-")[-1]) // step)
        if bucket > last_bucket:
            picked.append(m)
            last_bucket = bucket
    return picked if picked[-1] == snaps[-1] else picked + [snaps[-1]]


def evaluate_all(args, out: Path, log: Path, stega: Path, bits: str) -> list[dict]:
    """Steps 5-6: references, the snapshots (every --eval-every-kimg), the step sweep on the last ones."""
    (out / "transfer.jsonl").unlink(missing_ok=True)
    rows = [detect_row(args, out, log, "data-clean", out / "data", stega, bits, {}),
            detect_row(args, out, log, "data-fingerprinted", out / "fp" / "fingerprinted_images", stega, bits, {})]
    for run in ("clean", "fpdiff", "finetune"):
        snaps = pick_snapshots(sorted((out / run).glob("network-[0-9]*.safetensors")), args.eval_every_kimg)
        rows += [sample_and_detect(args, out, log, run, m, args.steps, stega, bits) for m in snaps]
        if snaps and args.steps_sweep and run in args.sweep_runs.split(","):
            rows += [sample_and_detect(args, out, log, run, snaps[-1], int(t), stega, bits)
                     for t in args.steps_sweep.split(",") if int(t) != args.steps]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="Work folder (data, models, samples, transfer.jsonl).")
    ap.add_argument("--count", type=int, default=2000, help="Training crops.")
    ap.add_argument("--stega", default=None, help="An existing 32-px stega model (default: train demo-32).")
    ap.add_argument("--resolution", type=int, default=32, help="Side of the crops and of the diffusion models.")
    ap.add_argument("--target-psnr", type=float, default=None,
                    help="With --resolution other than 32: each crop's fingerprint strength set for this PSNR.")
    ap.add_argument("--no-control", dest="control", action="store_false",
                    help="Train no clean control model (the fingerprinted one only).")
    ap.add_argument("--preset", default="cpu-32", help="train-diffusion preset.")
    ap.add_argument("--kimg", type=float, default=20.0, help="Training length of the clean and fingerprinted models.")
    ap.add_argument("--snapshot-kimg", type=float, default=None, help="Snapshot interval (default: the preset's).")
    ap.add_argument("--warmup-kimg", type=float, default=None, help="Learning-rate warm-up (default: the preset's).")
    ap.add_argument("--finetune-kimg", type=float, default=0.0,
                    help="Fine-tune length on fingerprinted data (0: none).")
    ap.add_argument("--finetune-from", default=None, help="Export to fine-tune (default: OUT/clean's final one).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--parallel", action="store_true", help="Train the clean and fingerprinted models side by side.")
    ap.add_argument("--samples", type=int, default=64, help="Generated images per evaluated snapshot.")
    ap.add_argument("--sampler", default="ddim", choices=["ddim", "ddpm", "dpm"])
    ap.add_argument("--steps", type=int, default=50, help="Sampler steps.")
    ap.add_argument("--sweep-runs", default="clean,fpdiff,finetune", help="Runs that get the step sweep.")
    ap.add_argument("--eval-every-kimg", type=float, default=None, help="Evaluate one snapshot per this many kimg "
                    "(default: every snapshot).")
    ap.add_argument("--steps-sweep", default="", help="Comma-separated step counts for the last snapshots.")
    ap.add_argument("--fpr", type=float, default=1e-6)
    ap.add_argument("--skip-training", action="store_true", help="Only evaluate the snapshots there are.")
    args = ap.parse_args()
    if args.resolution < 16:
        sys.exit(f"--resolution {args.resolution}: give the crops' side in pixels, 16 or more")
    if args.resolution != 32 and not args.stega:
        sys.exit("--resolution other than 32 needs --stega: the demo-32 model this would train reads 32-px crops")
    if args.finetune_kimg and not args.control and not args.finetune_from:
        sys.exit("--finetune-kimg starts from the clean control, which --no-control does not train: "
                 "give --finetune-from")
    if args.target_psnr is not None and args.resolution == 32:
        sys.exit("--target-psnr needs --resolution other than 32 (it is an option of embed --keep-size)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "transfer-log.txt"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    stega, bits = prepare(args, out, log)
    if not args.skip_training:
        train_all(args, out, log)
    rows = evaluate_all(args, out, log, stega, bits)
    print("\n| run | kimg | sampler | steps | images | mean bit accuracy | detected at FPR %g | corr. with pattern |"
          % args.fpr)
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        corr = "" if r["residual_corr"] is None else f"{r['residual_corr']:.3f}"
        print(f"| {r['run']} | {r.get('kimg', '')} | {r.get('sampler', '')} | {r.get('steps', '')} | {r['images']} | "
              f"{r['mean_bit_accuracy']:.4f} | {r['detected_rate']:.3f} | {corr} |")


if __name__ == "__main__":
    main()
