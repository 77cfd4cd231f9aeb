"""Generation from scalable fingerprinting generators (`scalable-G`, `scalable-G-issued`).

`ganprint generate` delegates here for kinds starting with "scalable". Per seed, z, the fingerprint c and every
noise input come from a generator seeded with that seed alone (the original's RandomState(seed)), and the network
runs in float64, so an image is a pure function of its seed whatever the batch size. Unlike the original, the
fingerprint used for each image is written out (`fingerprints.txt`, `fingerprints.jsonl`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ganprint.core.artifacts import load_export
from ganprint.core.errors import GanprintError
from ganprint.core.files import atomic_write_text
from ganprint.core.fingerprints import bits_to_hex, bits_to_str, parse_bits
from ganprint.inference.generation import GenerateSpec, claim, open_generation, seed_file, write_seed_images
from ganprint.nets.scalable import fingerprint_length_of, seeded_inputs
from ganprint.nets.stylegan2 import to_uint8
from ganprint.registry.issued import FINGERPRINT_META, FP_ID_META

KINDS = ("scalable-G", "scalable-G-issued")


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
def generate(spec: GenerateSpec) -> list[Path]:
    """Write `outdir/seed<seed:06d>.png` per seed of `spec` plus `fingerprints.txt` / `.jsonl`; returns the image
    paths. `fingerprint` fixes c for every image (0/1 string or 0x-hex; not for issued models);
    `identical_latent` / `identical_fingerprint`: every image takes the first seed's z / c."""
    spec.refuse(("trunc",), "stylegan2-G generators")
    spec.refuse(("sampler", "steps"), "diffusion models")
    spec.refuse(("decoder",), "latent diffusion models")
    outdir, dev = open_generation(spec)
    G, cfg, meta = load_export(spec.model, kind=KINDS, device=dev)
    issued = meta["ganprint.kind"] == "scalable-G-issued"
    fixed = _fixed_fingerprint(spec, meta, fingerprint_length_of(cfg), issued)
    claim(spec, outdir, dev, {"kind": meta["ganprint.kind"],
                              "fingerprint": bits_to_str(fixed) if fixed is not None else None,
                              "identical_latent": bool(spec.identical_latent),
                              "identical_fingerprint": bool(spec.identical_fingerprint)})
    G = G.double()
    z0, c0, _ = seeded_inputs(G, spec.seeds[:1])
    lines, rows = [], []

    def make(chunk: list[int]) -> np.ndarray:
        imgs, c = generate_batch(G, chunk, dev, issued, fixed, z0 if spec.identical_latent else None,
                                 c0 if spec.identical_fingerprint else None)  # [n, R, R, 3] uint8, [n, K]
        for s, bits in zip(chunk, c):
            name = seed_file(s)
            lines.append(f"{name} {bits_to_str(bits)}")
            row = {"file": name, "seed": s, "fingerprint": bits_to_str(bits), "hex": bits_to_hex(bits)}
            if issued and FP_ID_META in meta:
                row["fp_id"] = int(meta[FP_ID_META])
            rows.append(row)
        return imgs

    paths = write_seed_images(spec, outdir, make)
    atomic_write_text(outdir / "fingerprints.txt", "\n".join(lines) + "\n")
    atomic_write_text(outdir / "fingerprints.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    return paths


def _fixed_fingerprint(spec: GenerateSpec, meta: dict, k: int, issued: bool) -> torch.Tensor | None:
    """The one c of every image: an issued model's own, or `fingerprint`; None: each seed draws its own."""
    if issued:
        if spec.fingerprint is not None:
            raise GanprintError(f"{spec.model} is an issued model with its fingerprint built in; drop `fingerprint` "
                                "(or use the shared scalable-G model)")
        return parse_bits(meta[FINGERPRINT_META], k)
    return parse_bits(spec.fingerprint, k) if spec.fingerprint is not None else None
