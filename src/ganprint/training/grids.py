"""The one image-grid writer of the trainers: float images in a value range -> a uint8 PNG tiling."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ganprint.core import dist
from ganprint.core.images import write_grid
from ganprint.training.data import Batches
from ganprint.training.run import SNAPSHOT_DIR, writing


def to_uint8(images: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """Float images [N, C, H, W] spanning `value_range` -> uint8 [N, H, W, C] (rounded to the nearest level)."""
    lo, hi = value_range
    levels = ((images.detach().float().cpu() - lo) * (255 / (hi - lo))).round().clamp(0, 255)
    return levels.to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def save_grid(path: str | os.PathLike, images: torch.Tensor | np.ndarray, cols: int | None = None,
              value_range: tuple[float, float] = (-1.0, 1.0)) -> Path:
    """Write images (float [N, C, H, W] in `value_range`, or uint8 [N, H, W, C]) as one PNG, `cols` per row."""
    arr = images if isinstance(images, np.ndarray) else to_uint8(images, value_range)
    with writing(Path(path)):
        return write_grid(path, arr, cols=cols)


def save_reals(outdir: Path, batches: Batches, indices: Sequence[int] | torch.Tensor, cols: int | None = None) -> None:
    """Rank 0 writes the training images `indices`, as the trainer reads them, to snapshots/reals.png of a run folder
    that has none yet (a resumed run keeps the first)."""
    reals = outdir / SNAPSHOT_DIR / "reals.png"
    if dist.get_rank() == 0 and not reals.exists():
        save_grid(reals, batches.images(indices).permute(0, 2, 3, 1).numpy(), cols)
