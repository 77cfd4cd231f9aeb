"""Run a function in several CPU processes, as torchrun ranks would, from one command (`jobs`).

Why processes: at small resolutions most of the work per image is Python-level file work (decode, encode,
write) plus small convolutions. Threads in one process share the GIL, and reader threads that preempt an
OpenMP thread leave its partner spinning at the next barrier, so on 2 cores one process cannot keep both cores
busy. N single-threaded processes that each take every N-th image do.

Each job is a forked child with RANK / WORLD_SIZE set, a FileStore for the process group's rendezvous, and one
torch thread; the function it runs (passed by the caller, e.g. embed's per-rank body, with its spec) splits the
files by rank and rank 0 merges one result, exactly as under torchrun (`ganprint.core.dist`).

Starting and stopping, in one place: the workers stay in the caller's process group (a signal to the group
reaches them all). While they run, SIGTERM, SIGINT, SIGQUIT and SIGHUP sent to the caller stop and reap every
worker and remove their temporary folder before the signal takes its usual effect. Each worker follows its
parent: it gets SIGTERM when the parent dies (PR_SET_PDEATHSIG on Linux, and a thread that polls the parent's
pid elsewhere or as a fallback), and then exits at once, removing the temporary folder. A worker that fails stops
the others, and its error is raised in the caller (a GanprintError stays one line).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import multiprocessing as mp
import os
import queue
import re
import shutil
import signal
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch

from ganprint.core import bounds
from ganprint.core import dist
from ganprint.core.artifacts import _ensure_builders_loaded, read_config
from ganprint.core.errors import GanprintError
from ganprint.core.files import pid_alive
from ganprint.core.images import BadImageError
from ganprint.data.folders import open_image_dataset
from ganprint.inference.stream import IO_THREADS_ENV

log = logging.getLogger(__name__)

# Below this many images per process, starting one (a fork, a process group, a model load) costs more than it saves.
# Detect does less work per image than embed, so it needs more images to pay.
MIN_IMAGES_PER_JOB = 500
MIN_IMAGES_PER_DETECT_JOB = 1000

STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP") if hasattr(signal, n))
_TMP_PREFIX = "ganprint-jobs-"
_PR_SET_PDEATHSIG = 1


def usable_cores() -> int:
    """CPU cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_jobs(jobs: int | str | None, device: str, n_images: int | None,
                 min_per_job: int = MIN_IMAGES_PER_JOB) -> int:
    """`jobs`: an int >= 1, or "auto" (None): one process per usable core on CPU when there are at least
    `min_per_job` images per process, else 1. Under torchrun, or on a GPU, always 1."""
    if "WORLD_SIZE" in os.environ:
        if jobs not in (None, "auto", 1, "1"):
            raise GanprintError("`jobs` cannot be combined with torchrun (its ranks already split the images)")
        return 1
    if jobs in (None, "auto"):
        if device not in ("cpu", "auto") or (device == "auto" and torch.cuda.is_available()):
            return 1
        cores = usable_cores()
        if n_images is None:
            return cores
        return max(1, min(cores, n_images // min_per_job))
    try:
        j = int(jobs)
    except (TypeError, ValueError):
        raise GanprintError(f"`jobs` must be a number >= 1 or 'auto', got {jobs!r}") from None
    bounds.PROCESSES.check(j, "`jobs`")
    if j > 1 and (device == "cuda" or (device == "auto" and torch.cuda.is_available())):
        raise GanprintError("`jobs` is for CPU runs; on GPUs launch one process per GPU with torchrun")
    return j


def plan_jobs(jobs, device, data, model, min_per_job: int) -> int:
    """Resolve `jobs` for a run over the images of `data` with `model`. "auto": one process per core for models of
    at most 64 px when each process gets enough images, else 1. At 128 px the network dominates and two threads use
    the cores as well as two processes, at half the memory."""
    n = None
    if jobs in (None, "auto") and "WORLD_SIZE" not in os.environ:
        res = read_config(model).get("resolution")
        if res is not None and int(res) > 64:
            return 1
        n = len(open_image_dataset(data, res))  # folder or packed set, as the run itself will open it
    return resolve_jobs(jobs, str(device), n, min_per_job)


class _Signalled(BaseException):
    """A stop signal reached the caller while its workers ran."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class _StopSignals:
    """While workers run, a stop signal raises _Signalled in the main thread (so that run_jobs reaps them); a signal
    that comes while it is cleaning up only waits. On leaving, a signal received is delivered again to the handler
    that was installed before (by default the process then ends by that signal, as if nothing had caught it)."""

    def __init__(self):
        self.old: dict[int, object] = {}
        self.cleaning = False
        self.signum: int | None = None

    def _handle(self, signum, _frame):
        if self.signum is None:
            self.signum = signum
        if not self.cleaning:
            raise _Signalled(signum)

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in STOP_SIGNALS:
                prev = signal.getsignal(s)
                if prev not in (signal.SIG_IGN, None):  # ignored signals (nohup) stay ignored
                    self.old[s] = prev
                    signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> bool:
        for s, prev in self.old.items():
            signal.signal(s, prev)
        if self.signum is not None:
            signal.raise_signal(self.signum)
            raise SystemExit(128 + self.signum)  # the previous handler returned: still stop here
        return False


def _set_parent_death_signal(signum: int) -> None:
    """Linux: have the kernel send `signum` to this process when its parent dies (else a no-op)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _follow_parent(parent: int, tmp: str) -> None:
    """In a worker: exit at once on a stop signal or when the parent is gone (then removing the temporary folder,
    which the parent can no longer do)."""
    def leave(signum, _frame=None):
        if os.getppid() != parent:
            shutil.rmtree(tmp, ignore_errors=True)
        os._exit(128 + signum)

    for s in STOP_SIGNALS:
        signal.signal(s, leave)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # blocked by the parent around the fork
    _set_parent_death_signal(signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the death signal was set
        leave(signal.SIGTERM)

    def watch():  # also where prctl does not exist, or when the main thread is stuck in C code
        while os.getppid() == parent:
            time.sleep(0.2)
        leave(signal.SIGTERM)

    threading.Thread(target=watch, name="ganprint-watch-parent", daemon=True).start()


def _child(fn: Callable[[Any], dict], spec: Any, rank: int, world: int, tmp: str, threads: int, out_q,
           parent: int) -> None:
    _follow_parent(parent, tmp)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
                      GANPRINT_STORE_FILE=os.path.join(tmp, "store"))
    # Read and write in the job's own thread: the other jobs keep the cores busy, and reader / writer threads
    # only contend with them.
    os.environ.setdefault(IO_THREADS_ENV, "0")
    torch.set_num_threads(threads)
    try:
        result = fn(spec)
        out_q.put((rank, "ok", result if rank == 0 else None))
    except GanprintError as e:
        out_q.put((rank, "error", (type(e).__name__, str(e))))
        raise SystemExit(1) from None
    except BaseException as e:
        out_q.put((rank, "crash", (type(e).__name__, "".join(traceback.format_exception(e)))))
        raise SystemExit(1) from None
    finally:
        dist.cleanup()


def _remove_stale_folders() -> None:
    """Temporary folders of earlier runs whose parent was killed outright (SIGKILL to the whole group)."""
    pattern = re.compile(re.escape(_TMP_PREFIX) + r"(\d+)-")
    try:
        entries = list(os.scandir(tempfile.gettempdir()))
    except OSError:
        return
    for e in entries:
        m = pattern.match(e.name)
        if m and e.is_dir(follow_symlinks=False) and not pid_alive(int(m.group(1))):
            shutil.rmtree(e.path, ignore_errors=True)


def _collect(procs, out_q, jobs: int):
    """Wait for every worker's report; returns (rank 0's result, the first failure or None)."""
    result, failure, done = None, None, set()
    while len(done) < jobs and failure is None:
        try:
            rank, status, payload = out_q.get(timeout=0.2)
        except queue.Empty:
            failure = _died(procs, done)
            continue
        done.add(rank)
        if status == "ok":
            result = payload if rank == 0 else result
        else:
            failure = (status, payload)
    if failure is not None and failure[0] == "crash":
        # A worker killed on its own makes its peers crash in the collective they share; name the killed one,
        # which may take a moment to be seen as dead.
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            died = _died(procs, done, signalled_only=True)
            if died is not None:
                return result, died
            time.sleep(0.05)
    return result, failure


def _died(procs, done: set, signalled_only: bool = False):
    """The failure report for the first worker that ended without reporting (by a signal, or any code)."""
    dead = [p for r, p in enumerate(procs) if p.exitcode not in (None, 0) and r not in done
            and (p.exitcode < 0 or not signalled_only)]
    if not dead:
        return None
    p = dead[0]
    how = f"was killed by signal {-p.exitcode}" if p.exitcode < 0 else f"exited with code {p.exitcode}"
    return ("error", ("ProcessDied", f"worker process {p.name} {how} before it finished; finished "
                                     "work is kept: re-run the same command to go on"))


def _reap(procs, grace: float) -> None:
    """Wait up to `grace` s for the workers to end by themselves, then terminate and, if need be, kill them."""
    deadline = time.monotonic() + grace
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + 5.0
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()


def run_jobs(fn: Callable[[Any], dict], spec: Any, jobs: int, threads_per_job: int = 1) -> dict:
    """`fn(spec)` in `jobs` forked processes (ranks 0..jobs-1); returns rank 0's result. Each rank receives the
    command's spec whole (forked, so as it is, not pickled)."""
    _ensure_builders_loaded()  # imported once here, inherited by every forked child
    _remove_stale_folders()
    ctx = mp.get_context("fork")  # spawn would re-import torch in every child; fork passes `fn` as is
    out_q = ctx.Queue()
    # A file store, not a TCP one: with TCP the rank-0 child serves the store, and a rank that connects before the
    # server listens backs off for a while; with a file no rank has to come first.
    tmp = tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{os.getpid()}-")
    name = getattr(fn, "__name__", "job").strip("_<>")
    procs = [ctx.Process(target=_child, args=(fn, spec, r, jobs, tmp, threads_per_job, out_q, os.getpid()),
                         name=f"ganprint-{name}-{r}") for r in range(jobs)]
    log.info("%s: %d processes x %d thread(s)", name, jobs, threads_per_job)
    result, failure, finished = None, None, False
    with _StopSignals() as stop:
        try:
            # Stop signals wait while forking, so that no child runs the parent's handler before it has its own.
            signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
            try:
                for p in procs:
                    p.start()
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
            result, failure = _collect(procs, out_q, jobs)
            finished = failure is None
        finally:
            stop.cleaning = True
            # After success the workers only tear down their process group: give them time to exit by themselves.
            _reap([p for p in procs if p.pid is not None], grace=30.0 if finished else 0.0)
            shutil.rmtree(tmp, ignore_errors=True)
    if failure is not None:
        status, (err_name, msg) = failure
        if status == "error":
            raise (BadImageError if err_name == "BadImageError" else GanprintError)(msg)
        raise RuntimeError(f"a worker process failed: {err_name}\n{msg}")
    return result
