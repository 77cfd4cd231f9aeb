"""Issue 25's headline: per-user fingerprinted decoders of a latent diffusion model, attributed among all issued.

Given a latent diffusion model trained here (`ganprint train-autoencoder`, then `train-latent`: one
latent-diffusion export) and its fingerprint-modulated autoencoder (`ganprint train-latent-fingerprint`: a
latent-modulated export and its stega fingerprint decoder), this
1. issues MODELS decoders into a new registry with `ganprint.latent.issue.issue_latent_model` (each issue timed:
   fold, write, record);
2. samples PER_MODEL latents per issued decoder with the denoiser (seeds disjoint between decoders; DDIM), decodes
   them with that user's decoder and with the original (unfingerprinted) one, and reads the fingerprints;
3. attributes every image among all issued fingerprints (Bonferroni over MODELS, FPR per image), clean and under
   JPEG 70, resize 0.5 (down and back up) and a centre crop keeping 0.75 of each side (resized back);
4. attributes CLEAN images of the original decoder and the held-out real photos (none may be attributed);
5. with `--finetuned LABEL=FILE` (denoisers fine-tuned from the same model, e.g. `train-latent --resume-from`),
   samples the first 10 decoders' latents from each and attributes those images too: the fingerprint lives in the
   decoder, so a fine-tuned denoiser must not change attribution.
PSNR/SSIM compare each fingerprinted image with the original decoder's image of the same latent.

    python benchmarks/experiments/latent/attribution.py --ldm RUN/latent-diffusion.safetensors \\
        --modulated FP/latent-modulated.safetensors --decoder FP/fingerprint-decoder.safetensors \\
        --photos data/heldout32 --models 100 --per-model 50 --out benchmarks/experiments/latent/results/attribution.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ganprint.core.artifacts import load_export
from ganprint.data.folders import open_image_dataset
from ganprint.evaluation.quality import psnr, ssim
from ganprint.inference.decoders import Decoder
from ganprint.inference.scoring import UNKNOWN, attribute_bits
from ganprint.latent.autoencoder import ISSUED_KIND
from ganprint.latent.issue import issue_latent_model
from ganprint.latent.model import decode_images, load_latent_diffusion, sample_latents
from ganprint.perturb.attacks import parse_attacks
from ganprint.registry.store import Registry

log = logging.getLogger("latent-attribution")
ATTACKS = {"clean": None, "jpeg70": "jpeg:70", "resize0.5": "resize:0.5", "crop0.75": "crop:0.75"}


def attacked(imgs: torch.Tensor, spec: str | None, seed: int) -> torch.Tensor:
    """uint8 [N, R, R, 3] -> the same images after attack `spec`, quantised to uint8 again (as saved)."""
    if spec is None:
        return imgs
    x = imgs.permute(0, 3, 1, 2).float() / 255
    y = parse_attacks(spec)[0](x, seed).clamp(0, 1)
    return (y * 255).round().to(torch.uint8).permute(0, 2, 3, 1)


def issue_all(modulated: Path, n: int, workdir: Path) -> tuple[Registry, list[dict], list[float]]:
    registry = Registry(workdir / "registry.sqlite")
    rows, seconds = [], []
    for i in range(n):
        t = time.perf_counter()
        row = issue_latent_model(modulated, workdir / "registry.sqlite", workdir / "issued", who=f"user{i}")
        seconds.append(time.perf_counter() - t)
        rows.append({**row, "bits": torch.as_tensor(registry.get(row["fp_id"]).bits, dtype=torch.float32)})
    return registry, rows, seconds


def attribution_stats(rows: list[dict], owners: list[int] | None) -> dict:
    """Share attributed correctly (owners given) or attributed at all (owners None: none should be)."""
    got = [r["attributed"] for r in rows]
    if owners is None:
        return {"n": len(rows), "attributed": sum(g != UNKNOWN for g in got) / max(len(rows), 1)}
    correct = sum(g == o for g, o in zip(got, owners))
    wrong = sum(g not in (o, UNKNOWN) for g, o in zip(got, owners))
    return {"n": len(rows), "accuracy": correct / len(rows), "misattributed": wrong / len(rows),
            "unknown": sum(g == UNKNOWN for g in got) / len(rows)}


def per_decoder(ctx: dict, rec: dict, latents: torch.Tensor, originals: torch.Tensor, index: int) -> dict:
    """Images of one issued decoder: bits read, attributions and quality under every attack."""
    ae, _, _ = load_export(rec["issued_path"], kind=ISSUED_KIND)
    imgs = decode_images(ae, latents)
    truth = rec["bits"]
    x, y = (t.permute(0, 3, 1, 2).float() / 255 for t in (imgs, originals))
    out = {"psnr": float(psnr(x, y).mean()), "ssim": float(ssim(x, y).mean())}
    for name, spec in ATTACKS.items():
        bits = ctx["decoder"].bits(attacked(imgs, spec, index).numpy(), 256)
        rows = attribute_bits(bits, ctx["ids"], ctx["packed"], ctx["k"], ctx["fpr"])
        out[name] = {"bit_accuracy": float((bits == truth).float().mean()),
                     "rows": [r["attributed"] for r in rows]}
    return out


def summarize(per: list[dict], owners: list[int]) -> dict:
    res = {"psnr_db": float(np.mean([p["psnr"] for p in per])), "ssim": float(np.mean([p["ssim"] for p in per]))}
    for name in ATTACKS:
        rows = [{"attributed": a} for p in per for a in p[name]["rows"]]
        res[name] = {"bit_accuracy": float(np.mean([p[name]["bit_accuracy"] for p in per])),
                     **attribution_stats(rows, owners)}
    return res


def run(a: argparse.Namespace) -> dict:
    torch.manual_seed(a.seed)
    ldm = load_latent_diffusion(a.ldm)
    work = Path(tempfile.mkdtemp(prefix="ganprint-latent-attribution-"))
    registry, recs, issue_s = issue_all(Path(a.modulated), a.models, work)
    ids, packed = registry.packed()
    dec = Decoder(a.decoder)
    ctx = {"decoder": dec, "ids": ids, "packed": packed, "k": dec.k, "fpr": a.fpr}
    t = time.perf_counter()
    latents = sample_latents(ldm, list(range(a.models * a.per_model)), a.sampler, a.steps)
    sample_s = time.perf_counter() - t
    originals = decode_images(ldm.autoencoder, latents)
    per, owners = [], []
    for i, rec in enumerate(recs):
        sl = slice(i * a.per_model, (i + 1) * a.per_model)
        per.append(per_decoder(ctx, rec, latents[sl], originals[sl], i))
        owners += [rec["fp_id"]] * a.per_model
    res = {"setup": {**{k: v for k, v in vars(a).items() if k != "out"}, "fingerprint_length": dec.k,
                     "workdir": str(work)},
           "issue_s": {"median": float(np.median(issue_s)), "max": float(np.max(issue_s))},
           "sample_s_per_image": sample_s / len(latents), "issued": summarize(per, owners)}
    res["original_decoder"] = negatives(ctx, originals[:a.clean])
    res["real_photos"] = negatives(ctx, photos(a.photos, dec.resolution, a.clean))
    res["finetuned_denoisers"] = {label: finetuned(ctx, path, recs[:10], a) for label, path in a.finetuned}
    return res


def negatives(ctx: dict, imgs: torch.Tensor) -> dict:
    bits = ctx["decoder"].bits(imgs.numpy(), 256)
    rows = attribute_bits(bits, ctx["ids"], ctx["packed"], ctx["k"], ctx["fpr"])
    return attribution_stats(rows, None) | {"min_log10_p_corrected": min(r["log10_p_corrected"] for r in rows)}


def photos(folder: str, resolution: int, n: int) -> torch.Tensor:
    ds = open_image_dataset(folder, resolution)
    return torch.stack([ds[i]["img"].permute(1, 2, 0) for i in range(min(n, len(ds)))])


def finetuned(ctx: dict, path: str, recs: list[dict], a: argparse.Namespace) -> dict:
    ldm = load_latent_diffusion(path)
    latents = sample_latents(ldm, list(range(len(recs) * a.per_model)), a.sampler, a.steps)
    per, owners = [], []
    for i, rec in enumerate(recs):
        sl = slice(i * a.per_model, (i + 1) * a.per_model)
        per.append(per_decoder(ctx, rec, latents[sl], decode_images(ldm.autoencoder, latents[sl]), i))
        owners += [rec["fp_id"]] * a.per_model
    return {"model": path, **summarize(per, owners)}


def table(res: dict) -> str:
    iss = res["issued"]
    lines = ["| images | bit accuracy | attributed correctly | misattributed | unknown |", "|---|---|---|---|---|"]
    for name in ATTACKS:
        r = iss[name]
        lines.append(f"| issued decoders, {name} | {r['bit_accuracy']:.4f} | {r['accuracy']:.4f} | "
                     f"{r['misattributed']:.4f} | {r['unknown']:.4f} |")
    for key in ("original_decoder", "real_photos"):
        r = res[key]
        lines.append(f"| {key.replace('_', ' ')} ({r['n']}) | | attributed: {r['attributed']:.4f} | | |")
    for label, r in res["finetuned_denoisers"].items():
        lines.append(f"| fine-tuned denoiser {label}, clean | {r['clean']['bit_accuracy']:.4f} | "
                     f"{r['clean']['accuracy']:.4f} | {r['clean']['misattributed']:.4f} | {r['clean']['unknown']:.4f} |")
    lines.append(f"\nPSNR {iss['psnr_db']:.2f} dB, SSIM {iss['ssim']:.4f} against the original decoder; issuing: median "
                 f"{res['issue_s']['median'] * 1000:.0f} ms, max {res['issue_s']['max'] * 1000:.0f} ms")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ldm", required=True, help="latent-diffusion export")
    p.add_argument("--modulated", required=True, help="latent-modulated export (the shared fingerprinted model)")
    p.add_argument("--decoder", required=True, help="its fingerprint decoder (stega-decoder export)")
    p.add_argument("--photos", required=True, help="held-out real photos (never trained on)")
    p.add_argument("--models", type=int, default=100)
    p.add_argument("--per-model", type=int, default=50)
    p.add_argument("--clean", type=int, default=500, help="original-decoder images and photos to attribute")
    p.add_argument("--sampler", default="ddim")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--fpr", type=float, default=1e-6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--finetuned", action="append", default=[], type=lambda s: tuple(s.split("=", 1)),
                   help="LABEL=FILE: a fine-tuned latent-diffusion export (repeatable)")
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    res = run(a)
    print(table(res))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
