"""Image data sets: folders of image files (read lazily) and packed data sets (`ganprint.data.packed`).

Which files are images: the listing takes every non-hidden entry whose name has an image extension (a link
is followed); reading it then applies the rule of `ganprint.core.images.open_image_file` (regular files of bounded
size only), so a FIFO, a device or a link to one is reported by name (or skipped with `skip_bad`), never read.

Items are dicts `{"img": uint8 tensor [3, R, R], "index": int}`; with `keep_size` they also hold `"full"`, the
image as read (uint8 [H, W, 3] numpy, any size), of which "img" is the decoder's view, and `"grey"`, whether
the file is stored greyscale. With `skip_bad=True` an unreadable
file yields `{"img": None, "index": i, "error": "..."}`; pass `collate` to the DataLoader so such
items are dropped and reported instead of crashing the loader. Memory does not grow with the data
set: only the list of paths is held.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import Dataset

from ganprint.core.errors import GanprintError
from ganprint.core.images import BadImageError, is_greyscale_file, load_preprocessed, preprocess, read_image
from ganprint.data import packed
from ganprint.data.listing import find_images, list_images, one_listing  # noqa: F401  (list_images, one_listing: re-exported)

log = logging.getLogger(__name__)


class ImageFolderDataset(Dataset):
    """Image files preprocessed to [3, R, R] uint8; items `{"img", "index"}` (see module docstring)."""

    def __init__(self, root_or_paths: str | os.PathLike | Sequence[str | os.PathLike], resolution: int,
                 celeba: bool = False, skip_bad: bool = False, keep_size: bool = False):
        if isinstance(root_or_paths, (str, os.PathLike)):
            root = Path(root_or_paths)
            found = find_images(root)
            self._files = [p for _, p in found]
            self._rel: list[str] | None = [r for r, _ in found]
            self.root = root if root.is_dir() else root.parent
        else:
            self._files = [os.fspath(p) for p in root_or_paths]
            self._rel = None
            if not self._files:
                raise GanprintError("ImageFolderDataset got an empty list of image paths")
            self.root = Path(os.path.commonpath([Path(p).parent.resolve() for p in self._files]))
        if resolution is None:
            raise GanprintError("a resolution is needed to read a folder of images (only packed data sets have one)")
        self.resolution = int(resolution)
        self.celeba = celeba
        self.skip_bad = skip_bad
        self.keep_size = keep_size

    @property
    def paths(self) -> list[Path]:
        return [Path(p) for p in self._files]

    def __len__(self) -> int:
        return len(self._files)

    def relpath(self, index: int) -> str:
        """The path of item `index` relative to the data root, POSIX style (used to name outputs)."""
        if self._rel is not None:
            return self._rel[index]
        p = Path(self._files[index])
        try:
            return p.relative_to(self.root).as_posix()
        except ValueError:
            return p.resolve().relative_to(self.root).as_posix()

    def __getitem__(self, index: int) -> dict:
        path = self._files[index]
        try:
            full = read_image(path) if self.keep_size else None
            img = load_preprocessed(path, self.resolution, self.celeba) if full is None else \
                preprocess(full, self.resolution, self.celeba)
        except BadImageError as e:
            if not self.skip_bad:
                raise
            return {"img": None, "index": int(index), "error": str(e)}
        item = {"img": torch.from_numpy(img).permute(2, 0, 1).contiguous(), "index": int(index)}  # [3, R, R]
        if full is not None:
            item["full"] = full
            item["grey"] = is_greyscale_file(path)
        return item


def collate(batch: list[dict]) -> dict:
    """DataLoader collate that drops items whose image failed to load.

    Returns `{"img": uint8 [N, 3, R, R], "index": long [N], "skipped": [(index, error), ...]}`;
    when every item failed, "img" is an empty uint8 tensor of shape [0].
    """
    good = [b for b in batch if b.get("img") is not None]
    skipped = [(int(b["index"]), b.get("error", "unreadable")) for b in batch if b.get("img") is None]
    for i, err in skipped:
        log.warning("skipping bad image (index %d): %s", i, err)
    img = torch.stack([b["img"] for b in good]) if good else torch.empty(0, dtype=torch.uint8)  # [N, 3, R, R]
    index = torch.tensor([int(b["index"]) for b in good], dtype=torch.long)
    out = {"img": img, "index": index, "skipped": skipped}
    if good and "full" in good[0]:
        out["full"] = [b["full"] for b in good]  # sizes differ: a list, never stacked
        out["grey"] = [b["grey"] for b in good]
    return out


def open_image_dataset(path: str | os.PathLike, resolution: int | None, celeba: bool = False,
                       skip_bad: bool = False, keep_size: bool = False) -> Dataset:
    """A folder/file of images as ImageFolderDataset, or a packed data set (dataset.json + images.npy).
    `keep_size` adds each image as read to its item (a packed set's images are R x R already: refused).

    Raises GanprintError when a packed data set's resolution differs from `resolution` (None accepts
    the packed set's own; a folder needs a resolution).
    """
    path = Path(path)
    if path.is_dir() and (path / "dataset.json").is_file():
        if packed.is_packed(path):
            ds = packed.PackedDataset(path)
            got = getattr(ds, "resolution", None)
            if got is not None and resolution is not None and int(got) != int(resolution):
                raise GanprintError(
                    f"packed data set {path} holds {got}x{got} images but resolution {resolution} was asked for; "
                    f"use `resolution` {got} or repack with `resolution` {resolution}"
                )
            if celeba:
                log.warning("`celeba` is ignored for packed data set %s (its images are already preprocessed)", path)
            if keep_size:
                raise GanprintError(f"`keep_size` reads images at their own size, but {path} is a packed data set of "
                                    f"{got}x{got} images; pass the folder of the original images")
            return ds
    return ImageFolderDataset(path, resolution, celeba=celeba, skip_bad=skip_bad, keep_size=keep_size)
