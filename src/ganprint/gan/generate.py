"""Images from stylegan2-G exports: the generator half of `generate` for GANs (`ganprint.inference.generation`).

Each image is a pure function of its seed: z and every noise input are drawn from a `torch.Generator` seeded with
the seed alone (edm2's per-seed generators), and the networks run in float64 by default so that the batch size
cannot change a pixel through floating-point summation order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ganprint.core.artifacts import load_export
from ganprint.inference.generation import PRECISIONS, GenerateSpec, claim, open_generation, write_seed_images
from ganprint.nets.stylegan2 import Generator, seeded_inputs, to_uint8


@torch.no_grad()
def generate_seeds(G: Generator, seeds: list[int], device: torch.device | str = "cpu", batch_size: int = 16,
                   psi: float = 1.0, dtype: torch.dtype = torch.float64) -> np.ndarray:
    """uint8 [N, R, R, 3] images of `seeds` from a stylegan2 Generator, each a pure function of its seed.

    The network runs in `dtype` (a float64 copy by default; G itself is left untouched).
    """
    Gx = G if next(G.parameters()).dtype == dtype else _cast_copy(G, dtype)
    out = []
    for i in range(0, len(seeds), batch_size):
        z, noise = seeded_inputs(Gx, seeds[i: i + batch_size], device)
        img = Gx(z.to(dtype), psi=psi, noise=[n.to(dtype) for n in noise], fused=False)
        out.append(to_uint8(img))
    return np.concatenate(out) if out else np.zeros((0, G.img_resolution, G.img_resolution, 3), np.uint8)


def _cast_copy(G: Generator, dtype: torch.dtype) -> Generator:
    import copy

    return copy.deepcopy(G).to(dtype).eval()


def generate_images(spec: GenerateSpec) -> list[Path]:
    """Write `outdir/seed<seed:06d>.png` for every seed of `spec` from a `stylegan2-G` export (and `grid.png` with
    `grid`); returns the image paths. `ganprint.generate` dispatches other kinds. `batch_size` does not change any
    image in fp64."""
    spec.refuse(("fingerprint", "identical_latent", "identical_fingerprint"), "scalable-G generators")
    spec.refuse(("sampler", "steps"), "diffusion models")
    spec.refuse(("decoder",), "latent diffusion models")
    outdir, dev = open_generation(spec)
    G, _, _ = load_export(spec.model, kind="stylegan2-G", device=dev)
    # "trunc": the identity key the folders of earlier versions hold.
    claim(spec, outdir, dev, {"kind": "stylegan2-G", "trunc": float(spec.trunc), "precision": spec.precision})
    dtype = PRECISIONS[spec.precision]
    G = G.to(dtype)
    return write_seed_images(spec, outdir, lambda chunk: generate_seeds(G, chunk, dev, spec.batch_size, spec.trunc,
                                                                        dtype))
