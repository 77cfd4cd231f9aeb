"""Image generation from exported generators: `ganprint generate`, seed-range parsing, sample grids.

Each image is a pure function of its seed: z and every noise input are drawn from a `torch.Generator` seeded with
the seed alone (edm2's per-seed generators), and the networks run in float64 by default so that the batch size
cannot change a pixel through floating-point summation order.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from ganprint.core import bounds
from ganprint.core.artifacts import load_export
from ganprint.core.errors import GanprintError
from ganprint.core.files import check_writable_dir
from ganprint.core.images import write_grid, write_png
from ganprint.core.paths import GRID, check_overlap, claim_generated
from ganprint.core.runtime import resolve_device
from ganprint.nets.stylegan2 import Generator, seeded_inputs, to_uint8

log = logging.getLogger(__name__)


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


def generate_images(model_path: str | os.PathLike, seeds: list[int], outdir: str | os.PathLike,
                    batch_size: int = 16, grid: bool = False, device: str = "auto", psi: float = 1.0,
                    precision: str = "float64") -> list[Path]:
    """Write `outdir/seed<seed:06d>.png` for every seed (and `grid.png` with `grid`); returns the image paths.

    Args:
        model_path: a `stylegan2-G` export (`ganprint.generate` dispatches other kinds).
        seeds: list of non-negative ints (see `parse_seeds`).
        outdir: output folder (created).
        batch_size: images per forward pass; does not change any image.
        grid: also write `grid.png` of all images.
        device: auto, cpu or cuda.
        psi: truncation (1 = none).
        precision: float64 (batch-size independent) or float32 (faster; a pixel may differ by one level).
    """
    bounds.BATCH.check(batch_size, "--batch-size")
    bounds.TRUNCATION.check(psi, "--trunc")
    if not seeds:
        raise GanprintError("--seeds selects no seeds")
    if precision not in ("float64", "float32"):
        raise GanprintError(f"--precision must be float64 or float32, got {precision!r}")
    check_overlap([("--model", model_path, "model")], [("--outdir", outdir)])
    outdir = check_writable_dir(outdir, "--outdir")
    dev = resolve_device(device)
    G, _, _ = load_export(model_path, kind="stylegan2-G", device=dev)
    identity = {"kind": "stylegan2-G", "trunc": float(psi), "precision": precision}
    claim_generated(outdir, model_path, seeds, grid, dev.type, identity, batch_size)
    dtype = torch.float64 if precision == "float64" else torch.float32
    G = G.to(dtype)
    paths, all_imgs = [], []
    for i in range(0, len(seeds), batch_size):
        chunk = seeds[i: i + batch_size]
        imgs = generate_seeds(G, chunk, dev, batch_size, psi, dtype)
        for s, im in zip(chunk, imgs):
            paths.append(write_png(outdir / f"seed{s:06d}.png", im))
        if grid:
            all_imgs.append(imgs)
        log.info("generated %d / %d images", min(i + batch_size, len(seeds)), len(seeds))
    if grid:
        write_grid(outdir / GRID, np.concatenate(all_imgs))
    return paths
