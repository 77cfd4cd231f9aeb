"""Does a diffusers `UNet2DModel` fine-tuned on fingerprinted images carry the fingerprint, through diffusers itself?

Steps (each skipped when its output exists; every training resumes, so re-running continues a run):
  1. crops, a stega model, the fingerprinted crops and the decoder alone (as in diffusion-transfer, or --stega MODEL)
  2. the "released" model: a UNet2DModel built by diffusers with the DDPM ports' settings (flip_sin_to_cos False,
     freq_shift 1, downsample_padding 0, norm_eps 1e-6, one attention head per level) at cpu-32 widths, with a
     DDPMScheduler, written by diffusers' own DDPMPipeline.save_pretrained (OUT/released; diffusers' initial weights)
  3. the fine-tune: ganprint train-diffusion --data OUT/fp/fingerprinted_images --resume-from OUT/released --kimg K
  4. every snapshot of the fine-tune: ganprint generate (DDIM, --steps) then ganprint detect --fpr 1e-6, one row
     each in OUT/results.jsonl
  5. the final fine-tune written with ganprint export-diffusers, loaded with diffusers' DDIMPipeline, sampled there
     (same seeds and steps) and detected: the row "diffusers-pipeline", with the share of its pixels equal to
     ganprint's samples of the same snapshot and the largest difference in levels

    python benchmarks/experiments/diffusers/diffusers_finetune.py --out /work/runs/diffusers --kimg 4 --snapshot-kimg 1 \\
        --samples 32

Prints a Markdown table at the end. Set OMP_NUM_THREADS to keep each process to its share of a shared machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

GANPRINT = [sys.executable, "-m", "ganprint"]


def sh(args: list, log: Path) -> None:
    """Run one ganprint command, echoing it and appending its output to `log`."""
    cmd = [str(a) for a in args]
    print("$ " + " ".join(cmd[2:]).replace("-m ganprint", "ganprint"), flush=True)
    with open(log, "a") as f:
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT)


def prepare(args, out: Path, log: Path) -> tuple[Path, str]:
    """Step 1: (the decoder export, the fingerprint's bits)."""
    if not (out / "data").exists():
        sh([*GANPRINT, "data", "samples", out / "data", "--resolution", 32, "--count", args.count, "--seed", 0,
            "--photos", "train"], log)
    stega = Path(args.stega) if args.stega else out / "stega" / "model.safetensors"
    if not stega.exists():
        sh([*GANPRINT, "train", "--data", out / "data", "--preset", "demo-32", "--steps", 1200, "--target-psnr", 25,
            "--decoder-polish", 200, "--outdir", out / "stega"], log)
    if not (out / "fp" / "embedded_fingerprints.txt").exists():
        sh([*GANPRINT, "embed", "--model", stega, "--data", out / "data", "--outdir", out / "fp", "--identical",
            "--jobs", 1], log)
    decoder = out / "decoder.safetensors"
    if not decoder.exists():
        sh([*GANPRINT, "export", "--model", stega, decoder], log)
    bits = (out / "fp" / "embedded_fingerprints.txt").read_text().split("\n")[0].split()[1]
    return decoder, bits


def release(args, out: Path) -> Path:
    """Step 2: the provider's model, a DDPMPipeline folder written by diffusers itself (OUT/released)."""
    import diffusers

    released = out / "released"
    if not (released / "model_index.json").exists():
        torch.manual_seed(args.seed)
        unet = diffusers.UNet2DModel(
            sample_size=32, block_out_channels=(32, 64, 64), layers_per_block=1,
            down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), attention_head_dim=None,
            flip_sin_to_cos=False, freq_shift=1, downsample_padding=0, norm_eps=1e-6)
        diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler()).save_pretrained(released)
    return released


def detect_row(out: Path, log: Path, run: str, images: Path, decoder: Path, bits: str, extra: dict) -> dict:
    """Detect the fingerprint in a folder of images; returns (and appends) one result row."""
    det = images.parent / "det" if images.name == "images" else out / "eval" / run / "det"
    if not (det / "summary.json").exists():
        sh([*GANPRINT, "detect", "--model", decoder, "--data", images, "--outdir", det, "--fingerprint", bits,
            "--fpr", "1e-6", "--jobs", 1], log)
    s = json.loads((det / "summary.json").read_text())
    row = {"run": run, **extra, "images": s["images"], "mean_bit_accuracy": round(s["mean_bit_accuracy"], 4),
           "detected_rate": round(s["detected_rate"], 4), "threshold": s.get("match_threshold")}
    with open(out / "results.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)
    return row


def snapshot_rows(args, out: Path, log: Path, run: str, decoder: Path, bits: str) -> list[dict]:
    """Step 4: every snapshot of one run, sampled by ganprint and detected."""
    rows = []
    for model in sorted((out / run).glob("network-[0-9]*.safetensors")):
        nimg = model.stem.split("-")[-1]
        where = out / "eval" / run / f"{nimg}-ddim{args.steps}"
        if not (where / "images").exists():
            sh([*GANPRINT, "generate", "--model", model, "--seeds", f"0-{args.samples - 1}", "--outdir",
                where / "images", "--sampler", "ddim", "--steps", args.steps, "--precision", "fp32", "--device",
                "cpu"], log)
        rows.append(detect_row(out, log, run, where / "images", decoder, bits, {"kimg": int(nimg) / 1000}))
    return rows


def pipeline_row(args, out: Path, log: Path, decoder: Path, bits: str) -> dict:
    """Step 5: the exported folder, sampled by diffusers' DDIMPipeline, detected by ganprint."""
    import diffusers

    hub = out / "hub"
    if not hub.exists():
        sh([*GANPRINT, "export-diffusers", "--model", out / "finetune" / "network-final.safetensors", "--decoder",
            decoder, hub], log)
    images = out / "eval" / "diffusers-pipeline" / "images"
    if not images.exists():
        pipe = diffusers.DDIMPipeline.from_pretrained(hub)
        tmp = images.with_name("images.partial")
        tmp.mkdir(parents=True, exist_ok=True)
        for s in range(args.samples):
            img = pipe(batch_size=1, generator=torch.Generator().manual_seed(s), num_inference_steps=args.steps,
                       output_type="np").images[0]
            Image.fromarray(np.round(img * 255).astype(np.uint8)).save(tmp / f"seed{s:06d}.png")
        tmp.rename(images)
    return detect_row(out, log, "diffusers-pipeline", images, decoder, bits, {"kimg": args.kimg,
                                                                            **agreement(out, args, images)})


def agreement(out: Path, args, images: Path) -> dict:
    """How many pixels of the pipeline's samples equal ganprint's samples of the final snapshot (same seeds)."""
    last = sorted((out / "finetune").glob("network-[0-9]*.safetensors"))[-1]
    ours = out / "eval" / "finetune" / f"{last.stem.split('-')[-1]}-ddim{args.steps}" / "images"
    diffs = [np.abs(np.asarray(Image.open(ours / p.name), dtype=int) - np.asarray(Image.open(p), dtype=int))
             for p in sorted(images.glob("seed*.png"))]
    d = np.stack(diffs)
    return {"pixels_equal": round(float((d == 0).mean()), 5), "max_level_diff": int(d.max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="Work folder (data, models, samples, results.jsonl).")
    ap.add_argument("--count", type=int, default=2000, help="Training crops.")
    ap.add_argument("--stega", default=None, help="An existing 32-px stega model (default: train a strong one).")
    ap.add_argument("--kimg", type=float, default=10.0, help="Fine-tuning on the fingerprinted crops.")
    ap.add_argument("--snapshot-kimg", type=float, default=2.5, help="Snapshot (and evaluation) interval.")
    ap.add_argument("--samples", type=int, default=64, help="Samples per evaluation (seeds 0..N-1).")
    ap.add_argument("--steps", type=int, default=25, help="DDIM steps.")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "log.txt"
    decoder, bits = prepare(args, out, log)
    released = release(args, out)
    sh([*GANPRINT, "train-diffusion", "--data", out / "fp" / "fingerprinted_images", "--outdir", out / "finetune",
        "--resume-from", released, "--kimg", args.kimg, "--snapshot-kimg", args.snapshot_kimg, "--seed", args.seed,
        "--device", "cpu"], log)
    (out / "results.jsonl").unlink(missing_ok=True)
    rows = [detect_row(out, log, "data-fingerprinted", out / "fp" / "fingerprinted_images", decoder, bits, {})]
    rows += snapshot_rows(args, out, log, "finetune", decoder, bits)
    rows.append(pipeline_row(args, out, log, decoder, bits))
    print("\n| run | kimg | mean bit accuracy | detected at FPR 1e-6 |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r.get('kimg', '')} | {r['mean_bit_accuracy']:.3f} | "
              f"{round(r['detected_rate'] * r['images'])}/{r['images']} |")


if __name__ == "__main__":
    main()
