"""Image data sets: folders of image files (read lazily) and packed data sets (`ganprint.packed`).

Which files are images: the listing takes every non-hidden entry whose name has an image extension (a link
is followed); reading it then applies the rule of `ganprint.core.images.open_image_file` (regular files of bounded
size only), so a FIFO, a device or a link to one is reported by name (or skipped with --skip-bad), never read.

Items are dicts `{"img": uint8 tensor [3, R, R], "index": int}`. With `skip_bad=True` an unreadable
file yields `{"img": None, "index": i, "error": "..."}`; pass `collate` to the DataLoader so such
items are dropped and reported instead of crashing the loader. Memory does not grow with the data
set: only the list of paths is held.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import Dataset

from ganprint.core.errors import GanprintError
from ganprint.core.images import IMAGE_EXTENSIONS, BadImageError, is_image_file, load_preprocessed

log = logging.getLogger(__name__)


def list_images(root: str | os.PathLike) -> list[Path]:
    """All image files under `root` (recursive, sorted by relative path, hidden entries skipped), or [root] for a file.

    Raises GanprintError when `root` is missing, is not an image file, or holds no images.
    """
    return [Path(p) for _, p in _find_images(root)]


_shared: dict[str, list[tuple[str, str]]] | None = None  # listings kept inside `one_listing()`


@contextlib.contextmanager
def one_listing():
    """Within this block each folder is walked once. `--jobs` counts the images before it forks its processes,
    which then inherit the listing (forked memory) instead of walking the folder again, each of them."""
    global _shared
    outer = _shared
    _shared = {} if outer is None else outer
    try:
        yield
    finally:
        _shared = outer


def _find_images(root: str | os.PathLike) -> list[tuple[str, str]]:
    """`list_images` as (POSIX path relative to `root`, path) string pairs: a data set of 10k files names and opens
    them without building 10k Path objects (listing 10k files took 0.3-0.4 s per process in profiles)."""
    if _shared is None:
        return _walk_images(root)
    key = os.path.realpath(root)
    if key not in _shared:
        _shared[key] = _walk_images(root)
    return _shared[key]


def _walk_images(root: str | os.PathLike) -> list[tuple[str, str]]:
    root = Path(root)
    exts = ", ".join(e.lstrip(".") for e in IMAGE_EXTENSIONS)
    if not root.is_dir():
        if not os.path.lexists(root):
            raise GanprintError(f"data path {root} does not exist; pass a folder of images or one image file")
        if not is_image_file(root):
            raise GanprintError(f"{root} is not an image file (supported extensions: {exts})")
        return [(root.name, os.fspath(root))]  # read under the image-file rule, which refuses non-regular files
    found: list[tuple[str, str]] = []
    seen_dirs: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:  # a symlink loop: do not walk the same folder twice
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        reldir = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if reldir == "." else reldir + "/"
        for name in filenames:
            if name.startswith(".") or not is_image_file(name):
                continue
            found.append((prefix + name, os.path.join(dirpath, name)))
    if not found:
        raise GanprintError(f"no images ({exts}) found under {root}; check --data")
    found.sort(key=lambda t: t[0])
    return found


class ImageFolderDataset(Dataset):
    """Image files preprocessed to [3, R, R] uint8; items `{"img", "index"}` (see module docstring)."""

    def __init__(self, root_or_paths: str | os.PathLike | Sequence[str | os.PathLike], resolution: int,
                 celeba: bool = False, skip_bad: bool = False):
        if isinstance(root_or_paths, (str, os.PathLike)):
            root = Path(root_or_paths)
            found = _find_images(root)
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
            img = load_preprocessed(path, self.resolution, self.celeba)
        except BadImageError as e:
            if not self.skip_bad:
                raise
            return {"img": None, "index": int(index), "error": str(e)}
        return {"img": torch.from_numpy(img).permute(2, 0, 1).contiguous(), "index": int(index)}  # [3, R, R]


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
    return {"img": img, "index": index, "skipped": skipped}


def open_image_dataset(path: str | os.PathLike, resolution: int | None, celeba: bool = False,
                       skip_bad: bool = False) -> Dataset:
    """A folder/file of images as ImageFolderDataset, or a packed data set (dataset.json + images.npy).

    Raises GanprintError when a packed data set's resolution differs from `resolution` (None accepts
    the packed set's own; a folder needs a resolution).
    """
    path = Path(path)
    if path.is_dir() and (path / "dataset.json").is_file():
        from ganprint.data import packed  # lazy: owned by another module, heavy to import for plain folders

        if packed.is_packed(path):
            ds = packed.PackedDataset(path)
            got = getattr(ds, "resolution", None)
            if got is not None and resolution is not None and int(got) != int(resolution):
                raise GanprintError(
                    f"packed data set {path} holds {got}x{got} images but resolution {resolution} was asked for; "
                    f"use --resolution {got} or repack with --resolution {resolution}"
                )
            if celeba:
                log.warning("--celeba is ignored for packed data set %s (its images are already preprocessed)", path)
            return ds
    return ImageFolderDataset(path, resolution, celeba=celeba, skip_bad=skip_bad)
