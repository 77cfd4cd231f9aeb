"""Generation from scalable fingerprinting generators (`scalable-G`, `scalable-G-issued`).

`ganprint generate` delegates here for kinds starting with "scalable". Per seed, z, the fingerprint c and every
noise input come from a generator seeded with that seed alone (the original's RandomState(seed)), and the network
runs in float64, so an image is a pure function of its seed whatever the batch size. Unlike the original, the
fingerprint used for each image is written out (`fingerprints.txt`, `fingerprints.jsonl`).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from ganprint.core import bounds
from ganprint.core.artifacts import load_export
from ganprint.core.errors import GanprintError
from ganprint.core.files import atomic_write_text, check_writable_dir
from ganprint.core.fingerprints import bits_to_hex, bits_to_str, parse_bits
from ganprint.core.images import write_grid, write_png
from ganprint.core.paths import GRID, check_overlap, claim_generated
from ganprint.core.runtime import resolve_device
from ganprint.nets.scalable import fingerprint_length_of, seeded_inputs
from ganprint.nets.stylegan2 import to_uint8

log = logging.getLogger(__name__)

KINDS = ("scalable-G", "scalable-G-issued")
FINGERPRINT_META = "ganprint.fingerprint"  # hex of the folded fingerprint in a scalable-G-issued export
FP_ID_META = "ganprint.fp_id"


@torch.no_grad()
def generate_batch(G: torch.nn.Module, seeds: list[int], device: torch.device | str, issued: bool,
                   fixed: torch.Tensor | None = None, z0: torch.Tensor | None = None,
                   c0: torch.Tensor | None = None) -> tuple[np.ndarray, torch.Tensor]:
    """The images of `seeds` as uint8 [n, R, R, 3] and the fingerprints used, float [n, K] 0/1 on the CPU.

    G should be in float64 (what makes an image independent of the batch). z, c and the noise come from each
    seed; `z0` / `c0` replace every z / c (identical latent / fingerprint), `fixed` replaces every c. An issued
    model (`issued`) takes no c: its fingerprint is folded into its weights.
    """
    n = len(seeds)
    z, c, noise = seeded_inputs(G, seeds)
    if z0 is not None:
        z = z0.repeat(n, 1)
    if fixed is not None:
        c = fixed[None].repeat(n, 1)
    elif c0 is not None:
        c = c0.repeat(n, 1)
    z, noise = z.to(device).double(), [t.to(device).double() for t in noise]
    img = G(z, noise=noise) if issued else G(z, c.to(device).double(), noise=noise)
    return to_uint8(img), c.float().cpu()


@torch.no_grad()
def generate(model_path: str | os.PathLike, seeds: list[int], outdir: str | os.PathLike, batch_size: int = 16,
             grid: bool = False, fingerprint: str | None = None, identical_latent: bool = False,
             identical_fingerprint: bool = False, device: str = "auto") -> list[Path]:
    """Write `outdir/seed<seed:06d>.png` per seed plus `fingerprints.txt` / `.jsonl`; returns the image paths.

    Args:
        fingerprint: fixes c for every image (0/1 string or 0x-hex); not allowed for issued models.
        identical_latent / identical_fingerprint: every image takes the first seed's z / c.
    """
    bounds.BATCH.check(batch_size, "--batch-size")
    if not seeds:
        raise GanprintError("--seeds selects no seeds")
    check_overlap([("--model", model_path, "model")], [("--outdir", outdir)])
    outdir = check_writable_dir(outdir, "--outdir")
    dev = resolve_device(device)
    G, cfg, meta = load_export(model_path, kind=KINDS, device=dev)
    issued = meta["ganprint.kind"] == "scalable-G-issued"
    k = fingerprint_length_of(cfg)
    fixed = None
    if issued:
        if fingerprint is not None:
            raise GanprintError(f"{model_path} is an issued model with its fingerprint built in; drop --fingerprint "
                                "(or use the shared scalable-G model)")
        fixed = parse_bits(meta[FINGERPRINT_META], k)
    elif fingerprint is not None:
        fixed = parse_bits(fingerprint, k)
    claim_generated(outdir, model_path, seeds, grid, dev.type,
                    {"kind": meta["ganprint.kind"], "fingerprint": bits_to_str(fixed) if fixed is not None else None,
                     "identical_latent": bool(identical_latent), "identical_fingerprint": bool(identical_fingerprint)},
                    batch_size)
    G = G.double()
    z0, c0, _ = seeded_inputs(G, seeds[:1])
    paths, lines, rows, imgs_all = [], [], [], []
    for i in range(0, len(seeds), batch_size):
        chunk = seeds[i:i + batch_size]
        imgs, c = generate_batch(G, chunk, dev, issued, fixed, z0 if identical_latent else None,
                                 c0 if identical_fingerprint else None)  # [n, R, R, 3] uint8, [n, K]
        for s, im, bits in zip(chunk, imgs, c):
            name = f"seed{s:06d}.png"
            paths.append(write_png(outdir / name, im))
            lines.append(f"{name} {bits_to_str(bits)}")
            row = {"file": name, "seed": s, "fingerprint": bits_to_str(bits), "hex": bits_to_hex(bits)}
            if issued and FP_ID_META in meta:
                row["fp_id"] = int(meta[FP_ID_META])
            rows.append(row)
        if grid:
            imgs_all.append(imgs)
        log.info("generated %d / %d images", min(i + batch_size, len(seeds)), len(seeds))
    atomic_write_text(outdir / "fingerprints.txt", "\n".join(lines) + "\n")
    atomic_write_text(outdir / "fingerprints.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    if grid:
        write_grid(outdir / GRID, np.concatenate(imgs_all))
    return paths


