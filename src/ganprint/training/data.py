"""The trainers' one data pipeline: which images a step trains on, and their decoding.

The images of a step are a pure function of (seed, rank, step), never of interruptions, so a resumed run reads
exactly what the uninterrupted one would have. Two orders exist: `EpochOrder` walks seeded permutations of the
data set, one per epoch (stega, StyleGAN2, diffusion); `DrawOrder` draws each step's images with replacement
(scalable). `Batches` turns an order into uint8 batches [per_rank, 3, R, R]: from memory when the decoded set fits
in `cache_bytes`, otherwise decoded by `workers` DataLoader processes (0: in this process).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ganprint.core.errors import GanprintError
from ganprint.core.seeds import derive_seed
from ganprint.data.folders import open_image_dataset

log = logging.getLogger(__name__)

# Decoded uint8 images are kept in memory up to this many bytes (32 px: 3 KiB each, so ~170k images).
DEFAULT_CACHE_BYTES = 512 * 2**20


class EpochOrder:
    """Global sample position p = step * batch + rank * per_rank + i walks through one seeded permutation of the
    `n` items per epoch; `tag` keeps the stream apart from a trainer's other draws of the same seed."""

    def __init__(self, n: int, batch: int, seed: int, tag: int, rank: int = 0, world: int = 1):
        if batch % world:
            raise GanprintError(f"`batch_size` {batch} must be divisible by the number of processes ({world})")
        self.n, self.batch, self.seed, self.tag = n, batch, seed, tag
        self.rank, self.per_rank = rank, batch // world
        self._perm: tuple[int, torch.Tensor] | None = None

    def permutation(self, epoch: int) -> torch.Tensor:
        """The permutation of the `n` items used in `epoch`."""
        if self._perm is None or self._perm[0] != epoch:
            g = torch.Generator().manual_seed(derive_seed(self.seed, self.tag, epoch))
            self._perm = (epoch, torch.randperm(self.n, generator=g))
        return self._perm[1]

    def indices(self, step: int) -> list[int]:
        """This rank's data indices of `step`."""
        first = step * self.batch + self.rank * self.per_rank
        return [int(self.permutation(p // self.n)[p % self.n]) for p in range(first, first + self.per_rank)]


class DrawOrder:
    """Each step draws this rank's `per_rank` indices with replacement from a generator seeded by (seed, rank,
    step); the same generator then makes the step's other draws (`generator`)."""

    def __init__(self, n: int, per_rank: int, seed: int, rank: int = 0):
        self.n, self.per_rank, self.seed, self.rank = n, per_rank, seed, rank

    def _draw(self, step: int) -> tuple[torch.Tensor, torch.Generator]:
        gen = torch.Generator().manual_seed(derive_seed(self.seed, self.rank, step))
        return torch.randint(0, self.n, (self.per_rank,), generator=gen), gen

    def indices(self, step: int) -> list[int]:
        return self._draw(step)[0].tolist()

    def generator(self, step: int) -> torch.Generator:
        """The step's generator, past its index draw."""
        return self._draw(step)[1]


class StepSampler(Sampler):
    """An order's index lists for steps start, start+1, ... (up to `stop`, or without end when None)."""

    def __init__(self, order, start: int, stop: int | None = None):
        self.order, self.start, self.stop = order, start, stop

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start
        while self.stop is None or step < self.stop:
            yield self.order.indices(step)
            step += 1

    def __len__(self) -> int:
        if self.stop is None:
            raise TypeError("an endless StepSampler has no length")
        return max(0, self.stop - self.start)


def item_image(item: Any) -> torch.Tensor:
    """The image [3, R, R] of a data set item ({"img": ...}, (img, ...) or the image itself), as the item holds it."""
    img = item["img"] if isinstance(item, dict) else item[0] if isinstance(item, (tuple, list)) else item
    return torch.as_tensor(img)


def as_uint8_images(img: torch.Tensor, where: str) -> torch.Tensor:
    """`img` (one image or a batch) as uint8: uint8 as is, a float image in [0, 1] scaled by 255 and rounded.

    The trainers divide by 255 themselves, so a float image in [0, 1] taken as uint8 would train on black images:
    any other dtype or range is refused naming `where` (the data set and item) and the range it holds.
    """
    if img.dtype == torch.uint8:
        return img
    if not img.is_floating_point():
        raise GanprintError(f"{where} holds {str(img.dtype).removeprefix('torch.')} images; give uint8 in "
                            "[0, 255] or float in [0, 1]")
    lo, hi = (float(v) for v in torch.aminmax(img.detach().float())) if img.numel() else (0.0, 0.0)
    if not (0.0 <= lo and hi <= 1.0):  # also refuses NaN, which fails both comparisons
        hint = " (images in [-1, 1]: give (x + 1) / 2)" if lo >= -1.0 and hi <= 1.0 else ""
        raise GanprintError(f"{where} holds float images in [{lo:g}, {hi:g}]; float images must lie in [0, 1]"
                            f"{hint}, or give uint8 in [0, 255]")
    return img.detach().float().mul(255).round_().to(torch.uint8)


class Uint8Images(Dataset):
    """A caller's Dataset whose images reach the trainers as uint8 (`as_uint8_images`, checked item by item)."""

    def __init__(self, data: Dataset, name: str):
        self.data, self.name = data, name

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> torch.Tensor:
        return as_uint8_images(item_image(self.data[i]), f"{self.name} item {i}")


def collate_images(items: list) -> torch.Tensor:
    return torch.stack([item_image(it) for it in items])  # [N, 3, R, R] uint8


def open_training_data(data: Dataset | torch.Tensor | str | os.PathLike | None, resolution: int,
                       celeba: bool = False, resolution_from: str = "`resolution`") -> Dataset | torch.Tensor:
    """`data` as given (a Dataset of {"img": [3, R, R]} items, or a tensor [N, 3, R, R]; uint8 in [0, 255] or float
    in [0, 1], `as_uint8_images`), or the image folder / packed data set it names; refused when empty, of another
    dtype or range, or of another resolution than `resolution` (the message names `resolution_from`, where the
    side came from)."""
    if not isinstance(data, (Dataset, torch.Tensor)):
        if not data:
            raise GanprintError("no training data: give `data`, a folder of images or a packed data set "
                                "(`ganprint data samples DIR` makes one from built-in photos)")
        if not Path(data).exists():
            raise GanprintError(f"`data` {data} does not exist; give a folder of images or a packed data set")
        path, data = data, open_image_dataset(data, resolution, celeba=celeba)
        log.info("data: %s (%d images at %d px)", path, len(data), resolution)
    if len(data) == 0:
        raise GanprintError("`data` holds no images")
    if isinstance(data, torch.Tensor):
        data = as_uint8_images(data, "`data` (a tensor)")
    elif not isinstance(data, Uint8Images):  # a uint8 item passes through unchanged, at no cost
        data = Uint8Images(data, f"`data` ({type(data).__name__})")
    shape = tuple(item_image(data[0]).shape)
    if shape != (3, resolution, resolution):
        raise GanprintError(f"training images are {shape}, expected (3, {resolution}, {resolution}); "
                            f"check {resolution_from}")
    return data


def decode_all(data: Dataset, workers: int = 0) -> torch.Tensor:
    """Every image of a (non-empty) data set as one uint8 tensor [N, 3, R, R], decoded by `workers` processes."""
    loader = DataLoader(data, batch_size=256, shuffle=False, num_workers=workers, collate_fn=collate_images)
    return torch.cat(list(loader))


class Batches:
    """The uint8 batches of one rank (`stream(start)`), and any images by index (`images`)."""

    def __init__(self, data: Dataset | torch.Tensor, order, workers: int = 0,
                 cache_bytes: int = DEFAULT_CACHE_BYTES):
        self.data, self.order, self.workers = data, order, workers
        self.cached = data if isinstance(data, torch.Tensor) else self._cache(cache_bytes)

    def _cache(self, max_bytes: int) -> torch.Tensor | None:
        """Decode the whole data set once when it fits in `max_bytes` (decoding costs a good part of a step)."""
        n = len(self.data)
        if n * item_image(self.data[0]).numel() > max_bytes:
            return None
        log.info("loading %d images into memory", n)
        return decode_all(self.data, self.workers)

    def __len__(self) -> int:
        return len(self.data)

    def images(self, indices) -> torch.Tensor:
        """uint8 [len(indices), 3, R, R] of the given data indices."""
        indices = [int(i) for i in indices]
        if self.cached is not None:
            return self.cached[indices]
        return collate_images([self.data[i] for i in indices])

    def stream(self, start: int, stop: int | None = None) -> Iterator[torch.Tensor]:
        """This rank's batches of steps start, start+1, ... (to `stop`, or without end)."""
        sampler = StepSampler(self.order, start, stop)
        if self.cached is not None:
            return (self.cached[idx] for idx in sampler)
        return iter(DataLoader(self.data, batch_sampler=sampler, num_workers=self.workers, collate_fn=collate_images,
                               persistent_workers=self.workers > 0))
