"""The batch writer: each batch's PNGs written on a few threads while the network runs on, then the batch's resume
records, so that a record always means a finished file."""

from __future__ import annotations

import posixpath
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np

from ganprint.core.files import append_jsonl, output_error
from ganprint.core.images import IMAGE_EXTENSIONS, write_image
from ganprint.inference.stream import io_threads

# zlib level of the written PNGs: lossless at any level, and level 1 encodes faster for a few % more bytes.
PNG_LEVEL = 1


def png_name(relpath: str) -> str:
    """`relpath` with its suffix replaced by .png (as PurePosixPath.with_suffix, by string operations for the usual
    image extensions)."""
    stem, ext = posixpath.splitext(relpath)
    if ext.lower() in IMAGE_EXTENSIONS:
        return stem + ".png"
    return str(PurePosixPath(relpath).with_suffix(".png"))


def _write_one(path: str, img: np.ndarray) -> None:
    try:
        write_image(path, img, PNG_LEVEL)  # the format the name's suffix says: PNG unless a photo keeps its own
    except OSError as e:
        raise output_error(path, e) from None


class BatchWriter:
    """Writes each batch's PNGs on a small thread pool (zlib releases the GIL, so this overlaps the network),
    then appends the batch's resume records (JSON rows) to `progress`; at most `depth` batches are in flight, so
    memory stays bounded. A write that fails (a full disk) raises a one-line GanprintError naming the file; batches
    recorded before it stay recorded."""

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
            append_jsonl(self.progress, rows)  # after the PNGs, in one write for the whole batch
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
