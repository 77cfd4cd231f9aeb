"""Packed image data sets: one memory-mapped `images.npy` plus a `dataset.json` manifest.

Why this format (rather than a folder of PNGs, TFRecords as in the original, or LMDB):
- decoding is free: training reads uint8 pixels straight from the page cache, no PNG inflate per step,
  which on a small CPU costs more than the forward pass of a 32-px generator;
- `np.load(mmap_mode="r")` means memory does not grow with N (only touched pages are resident) and
  DataLoader workers share the same pages;
- it is a single standard .npy file (readable by NumPy alone, no extra dependency) with a JSON
  manifest recording where the images came from, the order and the seed of any shuffle;
- it is written incrementally (plain sequential writes of the .npy, never through a memmap, whose stores
  would die of SIGBUS on a full disk) in a temporary directory beside the output, after a check that the
  disk has room, and renamed into place at the end, so a crash never leaves a half-written data set that
  looks valid.

Layout: `<folder>/images.npy` uint8 [N, R, R, 3]; `<folder>/dataset.json`
`{"format": "ganprint-packed", "version": 1, "count", "resolution", "source", "created", "shuffle", "seed",
"names": [...]}`.
"""

from __future__ import annotations

import datetime
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch.utils.data import Dataset

from ganprint.core import bounds
from ganprint.core.errors import GanprintError
from ganprint.core.files import atomic_write_json, check_writable_dir, read_input_json
from ganprint.core.images import preprocess, read_image
from ganprint.core.paths import check_overlap
from ganprint.data.listing import list_images

log = logging.getLogger(__name__)

FORMAT = "ganprint-packed"
VERSION = 1
MANIFEST = "dataset.json"
IMAGES = "images.npy"

# The authors' CelebA geometry: aligned 178x218 images, 128x128 crop around (89, 121).
CELEBA_SIZE = (178, 218)  # (width, height)
CELEBA_CENTER = (89, 121)  # (x, y)
CELEBA_CROP = 128


class PackedDatasetError(GanprintError):
    """A packed data set that cannot be written or read."""


def is_packed(path: str | os.PathLike) -> bool:
    """True when `path` is a directory holding a ganprint packed data set (manifest + images.npy)."""
    p = Path(path)
    manifest = p / MANIFEST
    if not (p.is_dir() and manifest.is_file() and (p / IMAGES).is_file()):
        return False
    try:
        meta = read_input_json(manifest, "manifest")
    except (OSError, ValueError):  # GanprintError is a ValueError
        return False
    return isinstance(meta, dict) and meta.get("format") == FORMAT


def read_manifest(path: str | os.PathLike) -> dict:
    """The `dataset.json` of a packed data set; raises PackedDatasetError naming the path otherwise."""
    p = Path(path)
    if not is_packed(p):
        raise PackedDatasetError(
            f"{p} is not a ganprint packed data set (expected {MANIFEST} with format '{FORMAT}' and {IMAGES}); "
            "create one with `ganprint dataset from-images` or `ganprint dataset celeba`")
    meta = read_input_json(p / MANIFEST, "manifest")
    if int(meta.get("version", 0)) > VERSION:
        raise PackedDatasetError(f"{p} has packed format version {meta['version']}; this ganprint reads <= {VERSION}")
    return meta


class PackedDataset(Dataset):
    """A torch Dataset over a packed directory: item i is {"img": uint8 tensor [3, R, R], "index": i}.

    The array is memory-mapped lazily in each process (so the Dataset pickles cheaply into DataLoader workers).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.meta = read_manifest(self.path)
        self.resolution = int(self.meta["resolution"])
        self.names = list(self.meta.get("names", []))
        self._arr: np.ndarray | None = None
        arr = self._array()
        if arr.ndim != 4 or arr.shape[1:] != (self.resolution, self.resolution, 3) or arr.dtype != np.uint8:
            raise PackedDatasetError(
                f"{self.path / IMAGES} has shape {arr.shape} {arr.dtype}, expected uint8 [N, {self.resolution}, "
                f"{self.resolution}, 3]; re-create the data set")
        if arr.shape[0] != int(self.meta["count"]):
            raise PackedDatasetError(f"{self.path}: {MANIFEST} says count={self.meta['count']} but {IMAGES} holds "
                                     f"{arr.shape[0]} images; re-create the data set")

    def _array(self) -> np.ndarray:
        if self._arr is None:
            self._arr = np.load(self.path / IMAGES, mmap_mode="r")
        return self._arr

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_arr"] = None  # re-opened (memory-mapped) in the worker
        return state

    def __len__(self) -> int:
        return int(self.meta["count"])

    def __getitem__(self, i: int) -> dict:
        img = np.array(self._array()[i])  # copy out of the map: [R, R, 3]
        return {"img": torch.from_numpy(img).permute(2, 0, 1).contiguous(), "index": int(i)}  # [3, R, R]


def write_packed(out: str | os.PathLike, images: Iterable[np.ndarray], count: int, resolution: int, *,
                 source: str, names: list[str], shuffle: bool, seed: int | None) -> Path:
    """Write `count` uint8 [R, R, 3] images into a new packed directory `out`, atomically.

    The array is written, after a check that the disk has room for it, into a temporary sibling directory, which
    is renamed onto `out` only after every image was written; `out` must not exist yet (or be an empty directory).
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PackedDatasetError(f"`outdir` {out} already exists and is not empty; choose a new `outdir` or delete it")
    if len(names) != count:
        raise ValueError(f"names has {len(names)} entries for {count} images")
    try:
        check_writable_dir(out.parent, "outdir")
    except GanprintError:
        raise PackedDatasetError(f"`outdir` {out} cannot be written: its folder {out.parent} cannot be created or is "
                                 "read-only; choose another `outdir`") from None
    shape = (count, resolution, resolution, 3)
    _check_free_space(out, int(np.prod(shape, dtype=np.int64)) + (1 << 20))
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        try:
            _write_npy(tmp / IMAGES, images, shape, names)
            atomic_write_json(tmp / MANIFEST, {
                "format": FORMAT, "version": VERSION, "count": count, "resolution": resolution, "source": source,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "shuffle": bool(shuffle), "seed": seed, "names": names,
            })
        except OSError as e:  # the disk filled up all the same (another writer): one line naming it
            raise PackedDatasetError(f"cannot write {out}: {e.strerror or e}; nothing was kept: free some space, "
                                     "then re-run the same command") from None
        if out.exists():
            out.rmdir()  # empty (checked above); os.replace cannot replace a directory
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("wrote %d images at %dx%d to %s", count, resolution, resolution, out)
    return out


def _check_free_space(out: Path, need: int) -> None:
    """Refuse before any work when the disk under `out` has less than `need` bytes free."""
    st = os.statvfs(out.parent)
    free = st.f_bavail * st.f_frsize
    if free < need:
        raise PackedDatasetError(f"`outdir` {out} needs {need / 2**20:.1f} MiB but its disk has {free / 2**20:.1f} "
                                 "MiB free; free some space, lower `limit` or `resolution`, or choose another "
                                 "`outdir`")


def _write_npy(path: Path, images: Iterable[np.ndarray], shape: tuple[int, int, int, int], names: list[str]) -> None:
    """Write uint8 images of `shape[1:]` one after another as the .npy array `shape`.

    Plain writes, not a memmap: on a full disk a store into a mapped page kills the process with SIGBUS, while a
    write() fails with ENOSPC, which the caller turns into one line.
    """
    count, resolution = shape[0], shape[1]
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False, "shape": shape}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        n = 0
        for img in images:
            if n >= count:
                raise ValueError("more images than announced")
            if img.shape != shape[1:] or img.dtype != np.uint8:
                raise ValueError(f"image {names[n]} has shape {img.shape} {img.dtype}, expected uint8 "
                                 f"[{resolution}, {resolution}, 3]")
            f.write(np.ascontiguousarray(img).tobytes())
            n += 1
            if n % 5000 == 0:
                log.info("packed %d / %d images", n, count)
        if n != count:
            raise ValueError(f"only {n} of {count} images were produced")


def _list_images(src: Path) -> list[Path]:
    """Sorted image files under `src` (recursively), via ganprint.data.listing.list_images."""
    return [Path(p) for p in list_images(src)]


def _read_rgb(path: Path) -> np.ndarray:
    """uint8 [H, W, 3] via ganprint.core.images.read_image (EXIF-aware; clear error naming the file)."""
    return np.asarray(read_image(path))


def center_crop_resize(img: np.ndarray, resolution: int) -> np.ndarray:
    """uint8 [H, W, 3] -> the largest centred square resized to [R, R, 3] (ganprint.core.images.preprocess)."""
    return np.asarray(preprocess(img, resolution))


def _order(n: int, shuffle: bool, seed: int) -> np.ndarray:
    # Like the original dataset_tool: the selected files are permuted with a seeded RandomState.
    bounds.SEED32.check(seed, "seed")
    return np.random.RandomState(seed).permutation(n) if shuffle else np.arange(n)


def _select(src: Path, limit: int | None) -> list[Path]:
    if not src.is_dir():
        raise PackedDatasetError(f"`data` {src} does not exist or is not a directory; give the folder of images")
    files = _list_images(src)  # raises GanprintError when there are none
    if limit is not None:
        bounds.IMAGES.check(limit, "`limit`")
        if limit > len(files):
            raise PackedDatasetError(f"`limit` {limit} but {src} holds only {len(files)} images")
        files = files[:limit]
    return files


def _pack(src: Path, out: Path, files: list[Path], resolution: int, fn: Callable[[Path], np.ndarray], *,
          source: str, shuffle: bool, seed: int) -> Path:
    order = _order(len(files), shuffle, seed)
    files = [files[i] for i in order]
    names = [f.relative_to(src).as_posix() for f in files]
    return write_packed(out, (fn(f) for f in files), len(files), resolution, source=source, names=names,
                        shuffle=shuffle, seed=seed if shuffle else None)


def pack_celeba(data: str | os.PathLike, outdir: str | os.PathLike, limit: int = 30000, *,
                shuffle: bool = False, seed: int = 123) -> Path:
    """Pack the first `limit` sorted aligned-CelebA PNGs of the folder `data` as 128x128 crops centred at
    (x=89, y=121), no resize, into the new packed folder `outdir`.

    Every image must be 178x218 (the aligned CelebA size); another size raises PackedDatasetError naming it.
    """
    check_overlap([("data", data, "source folder")], [("outdir", outdir)])
    src, out = Path(data), Path(outdir)
    if not src.is_dir():
        raise PackedDatasetError(f"`data` {src} does not exist; give CelebA's img_align_celeba_png folder")
    files = sorted(p for p in src.iterdir() if p.is_file() and p.suffix.lower() == ".png")
    if not files:
        raise PackedDatasetError(f"no .png files in {src}; point `data` at CelebA's img_align_celeba_png folder")
    bounds.IMAGES.check(limit, "`limit`")
    if limit > len(files):
        raise PackedDatasetError(f"`limit` {limit} but {src} holds {len(files)} PNGs")
    files = files[:limit]
    cx, cy = CELEBA_CENTER
    half = CELEBA_CROP // 2

    def crop(path: Path) -> np.ndarray:
        img = _read_rgb(path)
        if img.shape != (CELEBA_SIZE[1], CELEBA_SIZE[0], 3):
            raise PackedDatasetError(
                f"{path} is {img.shape[1]}x{img.shape[0]} (channels {img.shape[2:] or 1}); aligned CelebA images "
                f"are {CELEBA_SIZE[0]}x{CELEBA_SIZE[1]} RGB: use `ganprint dataset from-images` for other images")
        return np.ascontiguousarray(img[cy - half:cy + half, cx - half:cx + half])  # [128, 128, 3]

    return _pack(src, out, files, CELEBA_CROP, crop, source=f"celeba:{src.resolve()}", shuffle=shuffle, seed=seed)


def pack_images(data: str | os.PathLike, outdir: str | os.PathLike, resolution: int, limit: int | None = None,
                *, shuffle: bool = False, seed: int = 123) -> Path:
    """Pack images under the folder `data` (sorted, the first `limit`) into the new packed folder `outdir`:
    centre-crop to a square, resize to `resolution`."""
    check_overlap([("data", data, "source folder")], [("outdir", outdir)])
    src, out = Path(data), Path(outdir)
    bounds.RESOLUTION.check(resolution, "resolution")
    if resolution < 4 or resolution & (resolution - 1):
        raise PackedDatasetError(f"`resolution` must be a power of two >= 4, got {resolution}")
    files = _select(src, limit)

    def load(path: Path) -> np.ndarray:
        return center_crop_resize(_read_rgb(path), resolution)

    return _pack(src, out, files, resolution, load, source=f"images:{src.resolve()}", shuffle=shuffle, seed=seed)
