"""Image generation from exported generators: `ganprint generate`, seed-range parsing, sample grids.

Each image is a pure function of its seed: z and every noise input are drawn from a `torch.Generator` seeded with
the seed alone (edm2's per-seed generators), and the networks run in float64 by default so that the batch size
cannot change a pixel through floating-point summation order.
"""

from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_export, read_metadata
from .errors import GanprintError
from .imageio import write_png
from .models.stylegan2 import Generator, seeded_inputs, to_uint8
from .utils import resolve_device

log = logging.getLogger(__name__)

_SEED_MAX = 2**63 - 1


def parse_seeds(text: str, flag: str = "--seeds") -> list[int]:
    """Parse "0-63", "0,5,7-9" (inclusive ranges, order kept, duplicates removed) into a list of ints >= 0.

    Raises GanprintError naming `flag` on malformed input.
    """
    if text is None or not str(text).strip():
        raise GanprintError(f"{flag} is empty; give e.g. 0-63 or 0,5,7-9")
    out: list[int] = []
    seen: set[int] = set()
    for part in str(text).replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise GanprintError(f"{flag} {text!r}: {part!r} is not a seed or an a-b range of non-negative integers")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        if b < a:
            raise GanprintError(f"{flag} {text!r}: range {part!r} runs backwards; write {b}-{a}")
        if b > _SEED_MAX:
            raise GanprintError(f"{flag} {text!r}: seeds must be < 2**63")
        if b - a >= 10_000_000:
            raise GanprintError(f"{flag} {text!r}: range {part!r} has more than 10 million seeds")
        for s in range(a, b + 1):
            if s not in seen:
                seen.add(s)
                out.append(s)
    return out


def write_grid(path: str | os.PathLike, img_u8: np.ndarray, cols: int | None = None) -> Path:
    """Tile uint8 [N, H, W, C] into one PNG (row-major, `cols` wide; default ~square), written atomically."""
    n, h, w, c = img_u8.shape
    cols = cols or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    grid = np.zeros((rows * h, cols * w, c), dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        grid[r * h: (r + 1) * h, q * w: (q + 1) * w] = img_u8[i]
    return write_png(path, grid)


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
                    fingerprint: str | None = None, identical_latent: bool = False,
                    identical_fingerprint: bool = False, precision: str = "float64") -> list[Path]:
    """Write `outdir/seed<seed:06d>.png` for every seed (and `grid.png` with `grid`); returns the image paths.

    Args:
        model_path: a `stylegan2-G` export (or a `scalable-G*` one, delegated to `ganprint.scalable_api`).
        seeds: list of non-negative ints (see `parse_seeds`).
        outdir: output folder (created).
        batch_size: images per forward pass; does not change any image.
        grid: also write `grid.png` of all images.
        device: auto, cpu or cuda.
        psi: truncation (1 = none).
        fingerprint, identical_latent, identical_fingerprint: scalable generators only.
        precision: float64 (batch-size independent) or float32 (faster; a pixel may differ by one level).
    """
    if batch_size < 1:
        raise GanprintError(f"--batch-size must be >= 1, got {batch_size}")
    if not seeds:
        raise GanprintError("--seeds selects no seeds")
    kind = read_metadata(model_path)["ganprint.kind"]
    if kind.startswith("scalable"):
        if psi != 1:
            raise GanprintError(f"--trunc applies to stylegan2-G generators; {model_path} is '{kind}': drop --trunc")
        from . import scalable_api  # lazy: written by the scalable-fingerprint module

        return scalable_api.generate(model_path, seeds, outdir, batch_size, grid, fingerprint, identical_latent,
                                     identical_fingerprint, device)
    used = [f for f, v in (("--fingerprint", fingerprint), ("--identical-latent", identical_latent),
                           ("--identical-fingerprint", identical_fingerprint)) if v]
    if used:
        raise GanprintError(f"{model_path} is a '{kind}' generator, which takes no fingerprint: drop "
                            f"{', '.join(used)} (those flags are for scalable-G models)")
    if precision not in ("float64", "float32"):
        raise GanprintError(f"--precision must be float64 or float32, got {precision!r}")
    dev = resolve_device(device)
    G, _, _ = load_export(model_path, kind="stylegan2-G", device=dev)
    dtype = torch.float64 if precision == "float64" else torch.float32
    G = G.to(dtype)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
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
        write_grid(outdir / "grid.png", np.concatenate(all_imgs))
    return paths
