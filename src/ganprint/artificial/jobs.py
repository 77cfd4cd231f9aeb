"""Run `api.embed` / `api.detect` in several CPU processes, as torchrun ranks would, from one command.

Why processes: at small resolutions most of the work per image is Python-level file work (decode, encode,
write) plus small convolutions. Threads in one process share the GIL, and reader threads that preempt an
OpenMP thread leave its partner spinning at the next barrier, so on 2 cores one process cannot keep both cores
busy (benchmarks/RESULTS-embed-detect.md). N single-threaded processes that each take every N-th image do.

Each job is a forked child with RANK / WORLD_SIZE set, a FileStore for the process group's rendezvous, and one
torch thread; the API functions then
split the files by rank and rank 0 merges one result, exactly as under torchrun (`ganprint.dist`). A child that
fails stops the others (they would otherwise wait at a barrier) and its error is raised in the caller.
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import tempfile
import traceback

from ganprint.core.errors import GanprintError

log = logging.getLogger(__name__)

# Below this many images per process, starting one (a fork, a process group, a model load) costs more than it saves.
# Detect does less work per image than embed, so it needs more images to pay (benchmarks/RESULTS-embed-detect.md).
MIN_IMAGES_PER_JOB = 500
MIN_IMAGES_PER_DETECT_JOB = 1000


def usable_cores() -> int:
    """CPU cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_jobs(jobs: int | str | None, device: str, n_images: int | None,
                 min_per_job: int = MIN_IMAGES_PER_JOB) -> int:
    """`--jobs`: an int >= 1, or "auto" (None): one process per usable core on CPU when there are at least
    `min_per_job` images per process, else 1. Under torchrun, or on a GPU, always 1."""
    if "WORLD_SIZE" in os.environ:
        if jobs not in (None, "auto", 1, "1"):
            raise GanprintError("--jobs cannot be combined with torchrun (its ranks already split the images)")
        return 1
    if jobs in (None, "auto"):
        if device not in ("cpu", "auto") or (device == "auto" and _cuda()):
            return 1
        cores = usable_cores()
        if n_images is None:
            return cores
        return max(1, min(cores, n_images // min_per_job))
    try:
        j = int(jobs)
    except (TypeError, ValueError):
        raise GanprintError(f"--jobs must be a number >= 1 or 'auto', got {jobs!r}") from None
    if j < 1:
        raise GanprintError(f"--jobs must be >= 1, got {j}")
    if j > 1 and (device == "cuda" or (device == "auto" and _cuda())):
        raise GanprintError("--jobs is for CPU runs; on GPUs launch one process per GPU with torchrun")
    return j


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _child(fn_name: str, kwargs: dict, rank: int, world: int, store: str, threads: int, out_q) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
                      GANPRINT_STORE_FILE=store)
    # Read and write in the job's own thread: the other jobs keep the cores busy, and reader / writer threads
    # only contended with them (10k 32-px images, 2 jobs: embed 9.5 s with none, 10.3 s with 2 of each).
    os.environ.setdefault("GANPRINT_IO_THREADS", "0")
    import torch

    torch.set_num_threads(threads)
    from ganprint.artificial import embed as api
    from ganprint.core import dist

    try:
        result = getattr(api, fn_name)(**kwargs)
        out_q.put((rank, "ok", result if rank == 0 else None))
    except GanprintError as e:
        out_q.put((rank, "error", (type(e).__name__, str(e))))
        raise SystemExit(1) from None
    except BaseException as e:  # noqa: BLE001 - report anything to the parent, then fail
        out_q.put((rank, "crash", (type(e).__name__, "".join(traceback.format_exception(e)))))
        raise SystemExit(1) from None
    finally:
        dist.cleanup()


def run_jobs(fn_name: str, kwargs: dict, jobs: int, threads_per_job: int = 1) -> dict:
    """`api.<fn_name>(**kwargs)` split over `jobs` forked processes; returns rank 0's result."""
    import multiprocessing as mp

    from ganprint.core.artifacts import _ensure_builders_loaded
    from ganprint.core.images import BadImageError

    _ensure_builders_loaded()  # imported once here, inherited by every forked child
    ctx = mp.get_context("fork")  # spawn would re-import torch in every child (~2 s each)
    out_q = ctx.Queue()
    # A file store, not a TCP one: with TCP the rank-0 child serves the store, and a rank that connects before the
    # server listens backs off (0.47 s, seen once; usually 0.03-0.04 s); with a file no rank has to come first.
    tmp = tempfile.mkdtemp(prefix="ganprint-jobs-")
    store = os.path.join(tmp, "store")
    procs = [ctx.Process(target=_child, args=(fn_name, kwargs, r, jobs, store, threads_per_job, out_q),
                         name=f"ganprint-{fn_name}-{r}") for r in range(jobs)]
    log.info("%s: %d processes x %d thread(s)", fn_name, jobs, threads_per_job)
    for p in procs:
        p.start()
    result, failure, done = None, None, set()
    try:
        while len(done) < jobs and failure is None:
            try:
                rank, status, payload = out_q.get(timeout=0.2)
            except queue.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0) and procs.index(p) not in done]
                if dead:
                    failure = ("crash", ("ProcessDied", f"worker process {dead[0].name} exited with code "
                                                        f"{dead[0].exitcode}"))
                continue
            done.add(rank)
            if status == "ok":
                result = payload if rank == 0 else result
            else:
                failure = (status, payload)
    finally:
        if failure is not None:
            for p in procs:
                if p.is_alive():
                    p.terminate()
        for p in procs:
            p.join()
        shutil.rmtree(tmp, ignore_errors=True)
    if failure is not None:
        status, (name, msg) = failure
        if status == "error":
            raise (BadImageError if name == "BadImageError" else GanprintError)(msg)
        raise RuntimeError(f"a worker process failed: {name}\n{msg}")
    return result
