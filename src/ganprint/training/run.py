"""The run folder every trainer writes: checks before any write, the config guard, log.txt, stats.jsonl.

Rank 0 writes every file; every rank runs the read-only checks, so that all of them refuse a bad `outdir` alike.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from safetensors import SafetensorError

from ganprint.core import dist
from ganprint.core.artifacts import save_export
from ganprint.core.errors import GanprintError
from ganprint.core.files import (MAX_LIST_BYTES, append_jsonl, atomic_write_json, atomic_write_text, read_input_json,
                                 read_input_text)
from ganprint.core.paths import OutputFolder, check_overlap, identity_differences, read_record
from ganprint.core.runtime import float32_everywhere, git_sha, resolve_device
from ganprint.training.config import PROVENANCE as _PROVENANCE
from ganprint.training.config import RENAMED_FIELDS  # a folder recorded under an old name is compared under it
from ganprint.training.curves import CURVES_FILE, write_curves

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
LOG_FILE = "log.txt"
STATS_FILE = "stats.jsonl"
SNAPSHOT_DIR = "snapshots"
# Files that hold training work (training states, exports): a folder holding one is never removed.
_CHECKPOINT_SUFFIXES = {".pt", ".safetensors"}
# Errors of writing (not of reading the data): the disk, its permissions or the folder's shape.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EFBIG,
                 errno.EISDIR, errno.EEXIST}


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_outdir(outdir: str | os.PathLike, data: str | os.PathLike | None = None,
                 inputs: Iterable[tuple] = ()) -> Path:
    """Refuse, before any write, an `outdir` that is a file or lies under one, or that is, holds or lies inside
    `data` or another input (`inputs`: (name, path, noun) tuples; `ganprint.core.paths.check_overlap`)."""
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise GanprintError(f"`outdir` {outdir} is a file; give a folder")
    for parent in outdir.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise GanprintError(f"`outdir` {outdir}: its parent {parent} is a file, not a folder")
            break
    # Inside `data`, a resumed run would train on its own snapshot grids.
    check_overlap([("`data`", data, "data"), *inputs], [("`outdir`", outdir)])
    return outdir


def _without(config: dict, skip: Iterable[str]) -> dict:
    return {k: v for k, v in config.items() if k not in set(skip)}


def config_differences(old: dict, new: dict, runtime_fields: Iterable[str] = ()) -> list[str]:
    """'field: old -> new' for every field (nested ones dotted) that differs, ignoring runtime and provenance."""
    skip = set(runtime_fields) | set(_PROVENANCE)
    return identity_differences(_without(old, skip), _without(new, skip))


def _recorded_config(outdir: Path) -> dict | None:
    """config.json of a run folder written before run folders had a record (`ganprint.core.paths.RECORD`)."""
    path = outdir / CONFIG_FILE
    if not os.path.lexists(path):
        return None
    try:
        old = read_input_json(path, "the run's config")
    except GanprintError as e:
        raise GanprintError(f"{e}; remove it or use another `outdir`") from None
    return old if isinstance(old, dict) else None


def _as_recorded(identity: dict, recorded: dict | None) -> dict:
    """`identity` with each renamed field under the old name where the folder's record still uses it."""
    if not recorded:
        return identity
    return {(RENAMED_FIELDS[k] if RENAMED_FIELDS.get(k) in recorded and k not in recorded else k): v
            for k, v in identity.items()}


def clean_temporaries(outdir: Path) -> int:
    """Remove the `.<name>.*.tmp` files that a killed atomic write left behind; returns how many."""
    n = 0
    for folder in (outdir, outdir / SNAPSHOT_DIR):
        if folder.is_dir():
            for tmp in folder.glob(".*.tmp"):
                if tmp.is_file():
                    tmp.unlink(missing_ok=True)
                    n += 1
    return n


def truncate_jsonl(path: Path, step: int, key: str = "step") -> int:
    """Drop the rows of a JSONL log whose `key` is past `step` (and a torn last line); returns how many rows were
    dropped."""
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in read_input_text(path, "the run's log", MAX_LIST_BYTES, errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            dropped += 1
            continue
        if int(row.get(key, 0)) <= step:
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        atomic_write_text(path, "".join(f"{line}\n" for line in kept))
    return dropped


def write_error(err: BaseException, outdir: Path, path: str | os.PathLike | None = None) -> GanprintError:
    """One line naming the path that could not be written, and what to do."""
    where = path or getattr(err, "filename", None) or outdir
    # torch.save reports a short write as "unexpected pos ..." (RuntimeError), safetensors as SafetensorError: say
    # what that means.
    why = getattr(err, "strerror", None) or "the write stopped short (is the disk full?)"
    return GanprintError(f"cannot write {where}: {why}; free disk space or choose a writable `outdir`, "
                         "then re-run the same command to resume")


@contextlib.contextmanager
def writing(path: Path) -> Iterator[Path]:
    """Name `path` in the one-line error of a write whose failure does not say which file it was."""
    try:
        yield path
    except OSError as e:
        if e.filename is None and e.errno in _WRITE_ERRNOS:
            raise write_error(e, path.parent, path) from None
        raise
    except SafetensorError as e:
        if "I/O error" in str(e):
            raise write_error(e, path.parent, path) from None
        raise


def export(path: Path, module, kind: str, config: dict, extra: dict[str, str] | None = None) -> Path:
    """`save_export` whose failure on a full disk is one line naming the file."""
    with writing(path):
        return save_export(path, module, kind, config, extra)


def start_processes(device: str, batch_size: int, float32: bool = False) -> torch.device:
    """This process's device, after joining the torchrun group (if any) and checking that `batch_size` splits over
    the processes. `float32`: no TF32 on CUDA (float32 means float32, and results agree across GPUs)."""
    dev = resolve_device(device)
    dist.init(dev)
    world = dist.get_world_size()
    if batch_size % world:
        raise GanprintError(f"`batch_size` {batch_size} must be divisible by the number of processes ({world})")
    dev = dist.local_device(dev)
    if float32:
        float32_everywhere(dev)
    return dev


class RunFolder:
    """One run's folder: `with RunFolder(...) as run:` checks it, opens it and turns write failures into one line.

    The folder's record (`ganprint.core.paths.OutputFolder`) holds the run's identity: the config without its
    runtime fields, and the device type; a re-run with another identity is refused naming the fields, and so is a
    folder holding files that ganprint did not write. config.json keeps the whole config.

    Args:
        outdir: the folder.
        config: the resolved config as plain JSON types (written to config.json).
        runtime_fields: top-level config fields that may change between a run and its resumption.
        data: the `data` path, which must not contain `outdir`.
        logs: the JSONL logs rewound to the training state on resume (stats.jsonl first).
        command: the command that trains, named in the record and in errors.
        device: where the run computes (its type changes the arithmetic, hence the identity).
        inputs: other input paths, (flag, path, noun), that `outdir` may not be, hold or lie inside.
    """

    def __init__(self, outdir: str | os.PathLike, config: dict, runtime_fields: Iterable[str] = (),
                 data: str | os.PathLike | None = None, logs: Iterable[str] = (STATS_FILE,), command: str = "train",
                 device: str | torch.device | None = None, inputs: Iterable[tuple] = ()):
        self.outdir = Path(outdir)
        self.config, self.runtime_fields, self.data = config, tuple(runtime_fields), data
        self.logs, self.inputs = tuple(logs), tuple(inputs)
        self.rank = dist.get_rank()
        self._handler: logging.Handler | None = None
        self._level = logging.NOTSET
        self._fresh = self._created = False  # set on entering: see _remove_failed_start
        skip = set(self.runtime_fields) | set(_PROVENANCE)
        device_type = {"device_type": torch.device(device).type} if device is not None else {}
        legacy = _recorded_config(self.outdir)
        recorded = (read_record(self.outdir) or {}).get("identity") or legacy
        identity = _as_recorded({**_without(config, skip), **device_type}, recorded)
        self.folder = OutputFolder(self.outdir, "`outdir`", command, identity, not_data=[SNAPSHOT_DIR],
                                   legacy=None if legacy is None else {**_without(legacy, skip), **device_type})

    def check(self) -> RunFolder:
        """The read-only checks (no file is written): where the folder is, and the run it holds."""
        check_outdir(self.outdir, self.data, self.inputs)
        self.folder.check()
        return self

    def __enter__(self) -> RunFolder:
        self.check()
        dist.barrier()  # every rank checks before rank 0 writes: a check among rank 0's first files would refuse them
        # A folder that did not exist (or held nothing) before this run is this run's alone to remove on a failed start.
        self._fresh = not self.outdir.is_dir() or not any(self.outdir.iterdir())
        self._created = not self.outdir.exists()
        try:
            if self.rank == 0:
                self.folder.claim()
                n = clean_temporaries(self.outdir)
                atomic_write_json(self.outdir / CONFIG_FILE, {**self.config, "git_sha": git_sha()})
                self._attach_log()
                if n:
                    log.info("removed %d temporary file(s) left by an interrupted write in %s", n, self.outdir)
        except OSError as e:
            raise write_error(e, self.outdir) from None
        dist.barrier()
        return self

    def __exit__(self, kind, err, tb) -> None:
        self._detach_log()
        if isinstance(err, Exception) and self.rank == 0:
            self._remove_failed_start()
        if err is None:
            self.write_curves()
        if isinstance(err, OSError) and err.errno in _WRITE_ERRNOS:
            name = getattr(err, "filename", None)
            if name is None or _is_within(Path(name).absolute(), self.outdir.absolute()):
                raise write_error(err, self.outdir) from None

    def _remove_failed_start(self) -> None:
        """Remove what a run that failed before its first training state or export wrote into a folder that was new
        (or empty): else config.json and the record refuse the corrected command as "a different config". A folder
        that held anything before, or holds a checkpoint now, is left as it is."""
        if not self._fresh or not self.outdir.is_dir():
            return
        if any(p.suffix in _CHECKPOINT_SUFFIXES for p in self.outdir.rglob("*") if p.is_file()):
            return
        try:
            if self._created:
                shutil.rmtree(self.outdir)
            else:
                for p in list(self.outdir.iterdir()):
                    shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        except OSError as e:
            log.warning("could not remove the failed run's files in %s (%s); remove them by hand", self.outdir, e)
            return
        log.info("removed %s: the run failed before its first checkpoint", self.outdir)

    def _attach_log(self) -> None:
        handler = logging.FileHandler(self.outdir / LOG_FILE, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        handler.setLevel(logging.INFO)
        handler.run_log = True  # type: ignore[attr-defined]  # ganprint.core.progress.status_line writes here
        lib = logging.getLogger("ganprint")
        self._level = lib.level
        if lib.level == logging.NOTSET and lib.getEffectiveLevel() > logging.INFO:
            lib.setLevel(logging.INFO)  # no logging set up by the caller: the file still gets the run's story
        lib.addHandler(handler)
        self._handler = handler

    def _detach_log(self) -> None:
        if self._handler is not None:
            lib = logging.getLogger("ganprint")
            lib.removeHandler(self._handler)
            lib.setLevel(self._level)
            self._handler.close()
            self._handler = None

    def rewind(self, step: int, key: str = "step") -> None:
        """Drop log rows after the training state being resumed (they are written again, identically).

        `key` is the row field that counts like `step` (a trainer whose rows carry no step passes its tick count).
        """
        if self.rank == 0:
            for name in self.logs:
                dropped = truncate_jsonl(self.outdir / name, step, key)
                if dropped:
                    log.info("%s: dropped %d row(s) after %s %d, which the resumed run writes again",
                             name, dropped, key, step)

    def write_curves(self) -> None:
        """curves.png from the run's logs (rank 0); trainers call it at each checkpoint, and it runs at the end."""
        if self.rank == 0:
            with writing(self.outdir / CURVES_FILE):
                write_curves(self.outdir, self.logs)

    def append(self, row: dict, name: str = STATS_FILE) -> None:
        """Append one row to a JSONL log (rank 0)."""
        if self.rank == 0:
            with writing(self.outdir / name):
                append_jsonl(self.outdir / name, row)
