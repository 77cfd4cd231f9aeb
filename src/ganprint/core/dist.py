"""Distributed helpers. Works without torchrun (world size 1), so CPU and 1-GPU runs share one code path."""

from __future__ import annotations

import datetime
import importlib
import logging
import os
import sys
import tempfile
import weakref

import torch
import torch.distributed as tdist

log = logging.getLogger(__name__)


def init(device: torch.device | None = None) -> None:
    """Initialise the process group when launched by torchrun (RANK/WORLD_SIZE set); no-op otherwise."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) <= 1 or tdist.is_initialized():
        return
    backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    # torch.distributed.nn.functional binds `group.WORLD` as a default argument when first imported, and the first
    # optimiser imports it (through torch._dynamo). Imported after the group exists, it keeps the group alive past
    # cleanup(); imported now, its defaults are None.
    importlib.import_module("torch.distributed.nn.functional")
    _drop_remote_module_folder()
    timeout = datetime.timedelta(minutes=30)
    store_file = os.environ.get("GANPRINT_STORE_FILE")
    if store_file:  # `jobs` processes (the job supervisor): a file made by their parent, no TCP rendezvous
        world = int(os.environ["WORLD_SIZE"])
        tdist.init_process_group(backend=backend, store=tdist.FileStore(store_file, world),
                                 rank=int(os.environ["RANK"]), world_size=world, timeout=timeout)
    else:
        tdist.init_process_group(backend=backend, timeout=timeout)


def _drop_remote_module_folder() -> None:
    """torch before 2.6 makes a temporary folder when torch.distributed.nn is imported (for RemoteModule's generated
    code, which ganprint never uses) and removes it only at a normal interpreter exit, so a job worker that ends
    with os._exit, or is killed, left it in TMPDIR (seen with torch 2.5.1); remove it now."""
    folder = getattr(sys.modules.get("torch.distributed.nn.jit.instantiator"), "_TEMP_DIR", None)
    if isinstance(folder, tempfile.TemporaryDirectory):
        folder.cleanup()


def is_dist() -> bool:
    return tdist.is_available() and tdist.is_initialized()


def get_rank() -> int:
    return tdist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    return tdist.get_world_size() if is_dist() else 1


def local_device(device: torch.device) -> torch.device:
    """Under torchrun with CUDA, each process takes the GPU of its LOCAL_RANK."""
    if device.type == "cuda" and is_dist():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def barrier() -> None:
    if is_dist():
        tdist.barrier()


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """Mean of `t` over ranks (returns `t` unchanged on one process)."""
    if not is_dist():
        return t
    t = t.clone()
    tdist.all_reduce(t)
    return t / get_world_size()


def all_gather_object(obj):
    """Gather a picklable object from every rank into a list (rank order)."""
    if not is_dist():
        return [obj]
    out = [None] * get_world_size()
    tdist.all_gather_object(out, obj)
    return out


def cleanup() -> None:
    """Destroy the process group while the interpreter is whole. Gloo's worker threads live as long as the group;
    one still running at exit may need the GIL to free a tensor of a finished collective, and Python's shutdown then
    ends that thread, which aborts the process ("terminate called without an active exception")."""
    if not is_dist():
        return
    group = weakref.ref(tdist.group.WORLD)
    tdist.destroy_process_group()
    if group() is not None:
        log.warning("the process group is still referenced after destroy_process_group (a module imported after "
                    "ganprint.core.dist.init bound it); its backend's threads run on and the process may abort at exit")
