"""Issued model files: a row of the registry and the file of its model, written together.

The rule: a row exists if and only if its model file exists, across kills, full disks and lost connections.

1. Under the registry's issue lock, the row is inserted and the model is written under a pending name,
   `.issued-<id>-<registry id>.safetensors.pending`, created exclusively and flushed to disk.
2. COMMIT. If it fails, the registry is asked on a new connection whether the row committed.
3. Only a committed row's pending file is renamed to `issued-<id>-<registry id>.safetensors` (a hard link, so no
   file is ever replaced); an issue that did not commit removes its pending file.

So a kill leaves at most a pending file, and `repair_issued` (run by `ganprint serve` at start, by `ganprint
issue` for its `models_dir`, and by `ganprint registry repair`) settles it under the issue lock: a pending file whose
row committed (with the same sha256) is renamed into place, one without a row is removed. A reader does not wait
for a repair: `committed_file` puts a committed row's pending file in place when it asks for the model. The registry's id in
the name keeps two registries that share a folder from ever naming a file alike.

What the file holds is the method's business (`ganprint.scalable.issue` folds the fingerprint into a generator);
`issue_with_file` writes whatever bytes it is given under this protocol.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Any, Callable

import torch

from ganprint.core.files import check_writable_dir, rename_no_replace, sha256_file, write_new_file
from ganprint.core.paths import check_overlap
from ganprint.registry.backends import registry_file
from ganprint.registry.errors import CommitUnknown, RegistryError
from ganprint.registry.fingerprints import Issued
from ganprint.registry.store import Registry

log = logging.getLogger(__name__)

# Metadata of every issued model file, whatever the method: its fingerprint (hex), its registry id, and the sha256 of
# the shared model it was folded from.
FINGERPRINT_META = "ganprint.fingerprint"
FP_ID_META = "ganprint.fp_id"
BASE_MODEL_META = "ganprint.base_model_sha256"

_NAME = re.compile(r"(?P<pending>\.)?issued-(?P<id>[0-9]{6,19})-(?P<reg>[0-9a-f]{16})\.safetensors"
                   r"(?(pending)\.pending|)")


def issued_name(registry_id: str, fp_id: int) -> str:
    """The file name of issued model `fp_id` of the registry with id `registry_id`."""
    return f"issued-{fp_id:06d}-{registry_id}.safetensors"


def pending_name(registry_id: str, fp_id: int) -> str:
    """The name the model has until its row committed."""
    return _pending_of(issued_name(registry_id, fp_id))


def _pending_of(final_name: str) -> str:
    return f".{final_name}.pending"


def issued_metadata(rec: Issued) -> dict[str, str]:
    """The metadata an issued model file of row `rec` carries."""
    return {FINGERPRINT_META: rec.bits_hex, FP_ID_META: str(rec.fp_id), BASE_MODEL_META: rec.model_sha256}


def open_for_issue(model_path: str | os.PathLike, registry_path: str | os.PathLike, models_dir: str | os.PathLike,
                   load: Callable[[], Any]) -> tuple[Any, Registry]:
    """(`load()`, the registry) of an issue from shared model `model_path`, checked before anything is written:
    `models_dir` and the registry may not be, hold or lie inside the model (nor `models_dir` the registry); the model
    is loaded before the registry is opened (a wrong file creates no registry); a damaged registry is one line; files
    that an earlier, killed issue left in `models_dir` are settled first."""
    reg = registry_file(registry_path)
    check_overlap([("`model`", model_path, "model"), ("`registry`", reg, "registry")],
                  [("`models_dir`", models_dir), ("`registry`", reg, "file")])
    loaded = load()
    check_writable_dir(models_dir, "`models_dir`")
    registry = Registry(registry_path)
    registry.check()
    repair_issued(registry, models_dir, check_rows=False)
    return loaded, registry


def issue_with_file(registry: Registry, models_dir: str | os.PathLike, model_bytes: Callable[[Issued], bytes],
                    bits: torch.Tensor | str | None = None, **issue_args: Any) -> Issued:
    """Issue one row (`Registry.issue` with `bits` and `issue_args`) whose model file holds `model_bytes(row)`,
    written to `models_dir` by the protocol of the module docstring; returns the committed row, its file in place."""
    out = check_writable_dir(models_dir, "`models_dir`").resolve()
    registry_id = registry.identity()
    pending: list[Path] = []

    def write_model(rec: Issued) -> tuple[str, str]:
        # Runs inside the registry's issue transaction, after the insert and before COMMIT.
        final, temp = out / issued_name(registry_id, rec.fp_id), out / pending_name(registry_id, rec.fp_id)
        if os.path.lexists(final):
            raise RegistryError(f"`models_dir` {out} already holds {final.name}, named for model #{rec.fp_id} of "
                                f"registry {registry.where}, which has no such row (a registry restored from an older "
                                "copy?); move that file away or give another `models_dir`")
        with contextlib.suppress(FileNotFoundError):  # left by an issue of this id that rolled back (SQLite
            os.unlink(temp)  # reuses the ids of rolled-back rows); no live issue can hold it, we hold the lock
        data = model_bytes(rec)
        pending.append(temp)
        write_new_file(temp, data)
        return str(final), hashlib.sha256(data).hexdigest()

    try:
        rec = registry.issue(bits, finalize=write_model, **issue_args)
    except CommitUnknown:
        raise  # the row may have committed: its pending file stays for repair_issued to settle
    except BaseException:
        for path in pending:  # the row was not committed: its file must not stay
            with contextlib.suppress(OSError):
                path.unlink()
        raise
    place_issued(pending[-1], Path(rec.issued_path), rec.issued_sha256)
    return rec


def place_issued(temp: Path, final: Path, sha256: str) -> None:
    """Rename a committed row's pending file to its final name, never replacing a file; a repair that did it
    first (the same file at `final`) is success too."""
    try:
        rename_no_replace(temp, final)
        return
    except FileExistsError:
        if sha256_file(final) != sha256:
            raise RegistryError(f"{final} exists with other contents than the model committed for it; the model "
                                f"is kept as {temp}: move {final.name} away, then run `ganprint registry "
                                "repair`") from None
    except FileNotFoundError:
        if not (final.is_file() and sha256_file(final) == sha256):
            raise RegistryError(f"the model committed as {final} vanished before it could be put in place "
                                f"({temp} is gone); its row has no file: see `ganprint registry repair`") from None
    with contextlib.suppress(FileNotFoundError):
        temp.unlink()  # both names for one file (a kill between link and unlink, or a repair): keep one


def committed_file(rec: Issued) -> Path | None:
    """The model file of committed row `rec`, or None when it is missing or changed. When its issuer was killed
    between COMMIT and the rename, its pending file (with the recorded sha256) is put in place first."""
    if not rec.issued_path or not rec.issued_sha256:
        return None
    final = Path(rec.issued_path)
    temp = final.with_name(_pending_of(final.name))
    if not os.path.lexists(final) and temp.is_file() and sha256_file(temp) == rec.issued_sha256:
        try:  # the row committed, so this pending file is its model; a concurrent repair that placed it is fine
            place_issued(temp, final, rec.issued_sha256)
        except RegistryError as e:
            log.warning("%s", e)
    if not final.is_file() or sha256_file(final) != rec.issued_sha256:
        return None
    return final


def repair_issued(registry: Registry, models_dir: str | os.PathLike, check_rows: bool = True) -> dict:
    """Restore "a row iff its file" for the files named for `registry` in `models_dir`, under the issue lock.

    Pending files whose row committed with their sha256 are renamed into place ("completed"), pending files
    without a row removed ("removed"); final files without a row ("orphans": a registry restored from an older
    copy?) and pending files whose contents differ from their row ("damaged") are reported and kept. With
    `check_rows`, rows whose recorded file is missing are reported ("missing"). Returns the lists of names.
    """
    report: dict[str, list] = {"completed": [], "removed": [], "orphans": [], "damaged": [], "missing": []}
    folder = Path(models_dir).absolute()
    registry_id = registry.identity(create=False)
    with os.scandir(folder) if registry_id and folder.is_dir() else contextlib.nullcontext([]) as entries:
        names = sorted(e.name for e in entries if e.is_file(follow_symlinks=False))  # what ganprint writes
    ours = [(n, m) for n, m in ((n, _NAME.fullmatch(n)) for n in names) if m and m["reg"] == registry_id]
    if not ours and not check_rows:
        return report
    with registry.issue_locked() as view:
        rows = view.rows() if check_rows or len(ours) > 8 else None
        for name, m in ours:
            row = rows.get(int(m["id"])) if rows is not None else view.get(int(m["id"]))
            with contextlib.suppress(FileNotFoundError):  # an issuer that committed may have placed it meanwhile
                _settle(registry, folder, name, bool(m["pending"]), row, report)
    if check_rows:
        report["missing"] = [r.fp_id for r in rows.values() if r.issued_path and not os.path.isfile(r.issued_path)]
    _log_repair(registry, folder, report)
    return report


def _settle(registry: Registry, folder: Path, name: str, pending: bool, row: Issued | None, report: dict) -> None:
    """One file named for the registry, with its committed row (or None), under the issue lock."""
    final = folder / (name[1:-len(".pending")] if pending else name)
    mine = row is not None and row.issued_path is not None and Path(row.issued_path).name == final.name
    if not pending:
        if not mine:
            report["orphans"].append(name)
    elif not mine:
        (folder / name).unlink()
        report["removed"].append(name)
    elif registry.owns(folder / name) or sha256_file(folder / name) != row.issued_sha256:
        report["damaged"].append(name)
    else:
        place_issued(folder / name, final, row.issued_sha256)
        report["completed"].append(final.name)


def _log_repair(registry: Registry, folder: Path, report: dict) -> None:
    for key, verb in (("completed", "completed the committed model"), ("removed", "removed the uncommitted model")):
        for name in report[key]:
            log.info("registry %s: %s %s", registry.where, verb, folder / name)
    for name in report["orphans"]:
        log.warning("%s is named for registry %s but has no row there (a registry restored from an older copy?); "
                    "kept: its fingerprint is in no registry", folder / name, registry.where)
    for name in report["damaged"]:
        log.warning("%s does not hold the model its committed row records; kept for inspection", folder / name)
    if report["missing"]:
        log.warning("registry %s: %d issued model(s) have no file at their recorded path (ids %s)", registry.where,
                    len(report["missing"]), ", ".join(map(str, report["missing"][:20])))
