"""What embed and detect share: model set-up, batched reading, tensor layout and precision, PNG writing, progress.

Both stream the data in batches (memory does not grow with the number of images), use the SAME preprocessing
(centre crop + resize, or the CelebA crop), and split the files across ranks under torchrun or `--jobs`.
"""

from __future__ import annotations

import functools
import os
import posixpath
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from ganprint.artificial.jobs import resolve_jobs
from ganprint.artificial.records import append_progress
from ganprint.core import bounds
from ganprint.core import dist
from ganprint.core.artifacts import load_export, read_config, read_metadata
from ganprint.core.errors import GanprintError
from ganprint.core.files import output_error, read_input_json
from ganprint.core.fingerprints import bits_to_str, parse_bits
from ganprint.core.images import IMAGE_EXTENSIONS, write_png
from ganprint.core.runtime import resolve_device, resolve_precision
from ganprint.data.folders import collate, one_listing, open_image_dataset
# the precision and layout helpers live with the decoder adapter; embed runs its encoder with them too
from ganprint.inference.decoders import memory_format, net_dtype, prepare, to_float01  # noqa: F401

FP_DIR = "fingerprinted_images"
MANIFEST = "manifest.json"

# zlib level of the fingerprinted PNGs: lossless at any level, and level 1 encodes faster for a few % more bytes.
PNG_LEVEL = 1


def png_name(relpath: str) -> str:
    """`relpath` with its suffix replaced by .png (as PurePosixPath.with_suffix, by string operations for the usual
    image extensions)."""
    stem, ext = posixpath.splitext(relpath)
    if ext.lower() in IMAGE_EXTENSIONS:
        return stem + ".png"
    return str(PurePosixPath(relpath).with_suffix(".png"))


def as_bits(fingerprint, k: int) -> torch.Tensor:
    """A fingerprint given as 0/1 or 0x-hex string, or as a [K] tensor/array of 0/1 -> float [K]."""
    if isinstance(fingerprint, (torch.Tensor, np.ndarray, list, tuple)):
        fingerprint = bits_to_str(np.asarray(fingerprint, dtype=np.float32))
    return parse_bits(str(fingerprint), k)


def setup(model, resolution, celeba, device, need_encoder, batch_size, precision="fp32"):
    """Check the batch size, load the model, pick the device (initialising torch.distributed under torchrun), the
    resolution and the precision ("fp32" or "bf16", resolved for that device)."""
    bounds.BATCH.check(batch_size, "--batch-size")
    if resolution is not None:
        bounds.RESOLUTION.check(resolution, "--resolution")
    dev = resolve_device(device)
    try:
        prec = resolve_precision(precision, dev)
    except ValueError as e:
        raise GanprintError(str(e)) from None
    dist.init(dev)
    dev = dist.local_device(dev)
    kinds = ("stega",) if need_encoder else ("stega", "stega-decoder")
    if need_encoder and read_metadata(model)["ganprint.kind"] == "stega-decoder":
        raise GanprintError(f"{model} is a decoder-only export; embedding needs the full 'stega' model")
    module, config, _meta = load_export(model, kind=kinds, device=dev)
    r = int(config["resolution"])
    if resolution is not None and int(resolution) != r:
        raise GanprintError(f"--resolution {resolution} does not match the model's {r}; omit --resolution or pass {r}")
    if celeba and r != 128:
        raise GanprintError(f"--celeba needs a 128-px model, but {model} is {r}-px; drop --celeba")
    return module, config, r, dev, prec


def item_names(ds) -> list[str]:
    """Names of a data set's items: paths relative to the folder, a packed set's names, or the index."""
    if hasattr(ds, "relpath"):
        return [ds.relpath(i) for i in range(len(ds))]
    names = list(getattr(ds, "names", None) or [])
    if len(names) == len(ds):
        return [str(x) for x in names]
    return [f"{i:06d}.png" for i in range(len(ds))]


def _num_workers(num_workers):
    # Default 0: with a DataLoader worker *and* several torch threads the main process's peak memory grew with
    # the data set (flat with none), for a few % of wall time. Decoding large photos benefits from --num-workers.
    return 0 if num_workers is None else bounds.WORKERS.check(num_workers, "--num-workers")


def io_threads() -> int:
    """Reader / PNG-writer threads per process: 2, or GANPRINT_IO_THREADS (0 = read and write in the calling thread,
    which `--jobs` processes use: there the other processes keep the cores busy, and threads would only contend)."""
    return max(0, int(os.environ.get("GANPRINT_IO_THREADS", "2")))


def loader(ds, indices, batch_size, num_workers, read_threads: int | None = None, prefetch: int = 2):
    """Batches (`data.collate` dicts) of `ds[indices]`, in order.

    With worker processes: a DataLoader. Without (the default): `read_threads` threads decode the next
    `prefetch` batches while the caller runs the network; Pillow and the resize release the GIL, so this
    overlaps real work, and at most `prefetch` decoded batches exist at any time (memory stays flat).
    With 0 read threads the batches are decoded when taken.
    """
    nw = _num_workers(num_workers)
    if nw:
        yield from DataLoader(Subset(ds, indices), batch_size=batch_size, shuffle=False, num_workers=nw,
                              collate_fn=collate, pin_memory=False, persistent_workers=False)
        return
    read_threads = io_threads() if read_threads is None else read_threads
    if read_threads == 0:
        for i in range(0, len(indices), batch_size):
            yield collate([ds[j] for j in indices[i:i + batch_size]])
        return
    yield from _threaded_batches(ds, indices, batch_size, read_threads, prefetch)


def _threaded_batches(ds, indices, batch_size, read_threads: int, prefetch: int):
    chunks = iter([indices[i:i + batch_size] for i in range(0, len(indices), batch_size)])
    with ThreadPoolExecutor(read_threads, thread_name_prefix="ganprint-read") as pool:
        def submit(chunk):
            # Each thread decodes a share of the batch; collate happens when the batch is taken.
            parts = [chunk[j::read_threads] for j in range(read_threads)]
            return chunk, [pool.submit(lambda part: {i: ds[i] for i in part}, part) for part in parts if part]

        pending = deque(submit(c) for _, c in zip(range(prefetch), chunks))
        while pending:
            chunk, futures = pending.popleft()
            items: dict = {}
            for f in futures:
                items.update(f.result())
            nxt = next(chunks, None)
            if nxt is not None:
                pending.append(submit(nxt))
            yield collate([items[i] for i in chunk])


def progress_bar(total, desc):
    return tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True,
                disable=dist.get_rank() != 0 or not sys.stderr.isatty())


def _write_one(path: str, img: np.ndarray) -> None:
    try:
        write_png(path, img, PNG_LEVEL)
    except OSError as e:
        raise output_error(path, e) from None


class BatchWriter:
    """Writes each batch's PNGs on a small thread pool (zlib releases the GIL, so this overlaps the network),
    then appends the batch's resume records; at most `depth` batches are in flight, so memory stays bounded.
    A write that fails (a full disk) raises a one-line GanprintError naming the file; batches recorded before
    it stay recorded."""

    def __init__(self, progress: Path, threads: int | None = None, depth: int = 2):
        threads = io_threads() if threads is None else threads
        self.progress, self.depth = progress, depth
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="ganprint-png") if threads else None
        self.pending: deque = deque()

    def submit(self, items: list[tuple[str, np.ndarray]], rows: list[dict]) -> None:
        if self.pool is None:  # no threads: write now
            for p, a in items:
                _write_one(p, a)
            self._record(rows)
            return
        self.pending.append(([self.pool.submit(_write_one, p, a) for p, a in items], rows))
        while len(self.pending) > self.depth:
            self._finish_one()

    def _record(self, rows: list[dict]) -> None:
        try:
            append_progress(self.progress, rows)  # after the PNGs: a record always means a finished file
        except OSError as e:
            raise output_error(self.progress, e) from None

    def _finish_one(self) -> None:
        futures, rows = self.pending.popleft()
        for f in futures:
            f.result()
        self._record(rows)

    def close(self, failed: bool = False) -> None:
        """Finish (or, after a failure, only wait for) the batches in flight, then stop the threads."""
        try:
            while self.pending and not failed:
                self._finish_one()
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True)


def plan_jobs(jobs, device, data, model, min_per_job: int) -> int:
    """Resolve `jobs`. "auto": one process per core for models of at most 64 px when each process gets enough
    images, else 1. At 128 px the network dominates and two threads use the cores as well as two processes, at half
    the memory."""
    n = None
    if jobs in (None, "auto") and "WORLD_SIZE" not in os.environ:
        res = read_config(model).get("resolution")
        if res is not None and int(res) > 64:
            return 1
        n = len(open_image_dataset(data, res))  # folder or packed set, as the run itself will open it
    return resolve_jobs(jobs, str(device), n, min_per_job)


def walk_once(fn):
    """Run `fn` with each data folder walked once (`data.one_listing`), also by its `--jobs` processes."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with one_listing():
            return fn(*args, **kwargs)
    return wrapper


def read_json(path: Path) -> dict | None:
    try:
        return read_input_json(path, "manifest")
    except (OSError, ValueError):  # GanprintError is a ValueError
        return None
