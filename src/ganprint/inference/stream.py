"""The image stream: batches of a data set's images, decoded ahead of the network, in bounded memory.

Embed and detect read their data through `loader` (the same preprocessing for both: the data set's), and each
rank takes its own indices; `walk_once` makes one listing of every data folder serve the whole run.
"""

from __future__ import annotations

import functools
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from torch.utils.data import DataLoader, Subset

from ganprint.core import bounds
from ganprint.data.folders import collate, one_listing

# Read by `io_threads`; the supervisor's processes set it to 0 (`ganprint.inference.jobs`).
IO_THREADS_ENV = "GANPRINT_IO_THREADS"


def item_names(ds) -> list[str]:
    """Names of a data set's items: paths relative to the folder, a packed set's names, or the index."""
    if hasattr(ds, "relpath"):
        return [ds.relpath(i) for i in range(len(ds))]
    names = list(getattr(ds, "names", None) or [])
    if len(names) == len(ds):
        return [str(x) for x in names]
    return [f"{i:06d}.png" for i in range(len(ds))]


def _workers(workers):
    # Default 0: with a DataLoader worker *and* several torch threads the main process's peak memory grew with
    # the data set (flat with none), for a few % of wall time. Decoding large photos benefits from `workers`.
    return 0 if workers is None else bounds.WORKERS.check(workers, "`workers`")


def io_threads() -> int:
    """Reader / PNG-writer threads per process: 2, or GANPRINT_IO_THREADS (0 = read and write in the calling thread,
    which the supervisor's processes use: there the other processes keep the cores busy, and threads would only
    contend)."""
    return max(0, int(os.environ.get(IO_THREADS_ENV, "2")))


def loader(ds, indices, batch_size, workers, read_threads: int | None = None, prefetch: int = 2):
    """Batches (`data.collate` dicts) of `ds[indices]`, in order.

    With `workers` processes: a DataLoader. Without (the default): `read_threads` threads decode the next
    `prefetch` batches while the caller runs the network; Pillow and the resize release the GIL, so this
    overlaps real work, and at most `prefetch` decoded batches exist at any time (memory stays flat).
    With 0 read threads the batches are decoded when taken.
    """
    nw = _workers(workers)
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


def walk_once(fn):
    """Run `fn` with each data folder walked once (`data.one_listing`), also by its supervised processes."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with one_listing():
            return fn(*args, **kwargs)
    return wrapper
