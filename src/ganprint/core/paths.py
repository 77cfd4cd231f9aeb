"""What a command reads and what it writes: an output is never an input, an existing file is replaced only when the
user asks, and an output folder holds the record of the one run that writes into it.

Every command applies three rules before any work (docs/faults.md, "...an output is never an input"):

- `check_overlap(inputs, outputs)`: each path is taken both as the kernel resolves it (`realpath`: symbolic links
  and `..`) and as written (`abspath`: what a walk that follows links sees). An output that is an input (or a hard
  link to an input file), lies inside an input folder, or contains an input is refused with one line naming both
  parameters and both paths.
- `check_new_file(path, name, overwrite)`: a single-file output that already exists is replaced only with
  `overwrite` (and never when it is an input: `check_overlap` comes first).
- `OutputFolder`: an output folder is used when it is missing or empty, or when it holds the record (`RECORD`) of
  the same command with the same identity, i.e. every setting that changes an output byte; the run then resumes,
  or writes the same bytes again. A record of another command or identity is refused naming what differs; files
  without a record are never replaced. The record also lists the outputs that are not data (`not_data`: grids,
  plots, snapshots), which the image listing (`ganprint.data.listing`) skips.

A parameter is named by its field name ("outdir", "model"), which messages show in backticks and the CLI as the
running command's flag; a name that is no field name (a metavar such as "OUT") is shown as it is.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ganprint._version import __version__
from ganprint.core.errors import GanprintError, field
from ganprint.core.files import atomic_write_json, sha256_file
from ganprint.core.seeds import seeds_text

RECORD = ".ganprint.json"
GRID = "grid.png"  # the grid that `generate` writes when asked for `grid`: not a sample (its folder's record says so)
_RECORD_MAX_BYTES = 1 << 20
# What ganprint itself leaves for a moment: temporaries of ganprint.core.files and the probe of check_writable_dir.
_TEMPORARY = re.compile(r"^\..+\.(\d+)\.[^./]+\.tmp$", re.DOTALL)
_PROBE = ".ganprint-write-check-"


def _specs(items: Iterable[tuple]) -> Iterable[tuple[str, str, str | None]]:
    """(name, path, noun) of every item that names a path (None, "" and in-memory data sets are skipped)."""
    for name, path, *noun in items:
        if isinstance(path, (str, os.PathLike)) and os.fspath(path) != "":
            yield name, os.fspath(path), noun[0] if noun else None


def _within(child: str, parent: str) -> bool:
    return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)


def _file_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def overlap(output: tuple[str, str, str | None], inp: tuple[str, str, str | None]) -> str | None:
    """Why `output` (name, path, kind: "file", or None for a folder) may not be written beside the input `inp`
    (name, path, noun), or None."""
    (oname, o, kind), (iname, i, noun) = output, inp
    oflag, iflag = field(oname), field(iname)
    what = f"{iflag} {i} (the {noun or ('folder' if os.path.isdir(i) else 'file')})"
    real_o, real_i = os.path.realpath(o), os.path.realpath(i)
    abs_o, abs_i = os.path.abspath(o), os.path.abspath(i)
    if real_o == real_i or abs_o == abs_i:
        how = "" if abs_o == abs_i else ", through a link or '..',"
        return f"{oflag} {o} is{how} {what}; choose another {oflag}"
    fid = _file_id(o)
    if fid is not None and fid == _file_id(i):
        return f"{oflag} {o} is a hard link to {what}, the same file; choose another {oflag}"
    if _within(real_o, real_i) or _within(abs_o, abs_i):
        return f"{oflag} {o} lies inside {what}: its outputs would be read as inputs; choose an {oflag} outside it"
    # A file can hold nothing (an existing folder given for one is check_writable_file's error).
    if kind != "file" and (_within(real_i, real_o) or _within(abs_i, abs_o)):
        return f"{oflag} {o} contains {what}; choose an {oflag} that holds none of the inputs"
    return None


def check_overlap(inputs: Iterable[tuple], outputs: Iterable[tuple]) -> None:
    """Refuse, before any work, an output that is, contains or lies inside an input.

    `inputs` are (name, path) or (name, path, noun) tuples, e.g. ("registry", "reg.sqlite", "registry");
    `outputs` (name, path) for a folder, (name, path, "file") for a file. A None path is skipped, and a path given
    with the same name on both sides (a registry the command updates) is not compared with itself. Raises
    GanprintError naming both parameters and both paths.
    """
    ins = list(_specs(inputs))
    for out in _specs(outputs):
        for inp in ins:
            if (inp[0], inp[1]) == (out[0], out[1]):
                continue
            problem = overlap(out, inp)
            if problem:
                raise GanprintError(problem)


def check_new_file(path: str | os.PathLike, name: str, overwrite: bool = False) -> None:
    """Refuse an output file (given as the parameter `name`) that exists already, unless `overwrite`."""
    if overwrite or not os.path.lexists(path) or os.path.isdir(path):  # a folder: check_writable_file says so
        return
    label = field(name)
    raise GanprintError(f"{label} {os.fspath(path)} already exists and ganprint replaces a file only when asked: "
                        f"choose another {label}, or add `overwrite` to replace it")


def _plain(obj: Any) -> Any:
    """`obj` as JSON gives it back (tuples become lists), so that a fresh identity compares equal to a recorded one."""
    return json.loads(json.dumps(obj, sort_keys=True))


def _flatten(d: Mapping, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 160 else text[:157] + "..."


def identity_differences(old: Mapping, new: Mapping, labels: Mapping[str, str] | None = None) -> list[str]:
    """'name: old -> new' for every setting (nested ones dotted) that differs. With `labels`, a top-level key is shown
    as the parameter that sets it: labels[key], else the key itself, in backticks (the CLI shows the flag); without,
    keys are shown as they are."""
    a, b = _flatten(_plain(old)), _flatten(_plain(new))

    def name(key: str) -> str:
        if labels is None:
            return key
        top, _, rest = key.partition(".")
        label = field(labels.get(top, top))
        return f"{label} ({rest})" if rest else label

    keys = sorted(k for k in set(a) | set(b) if a.get(k, "<unset>") != b.get(k, "<unset>"))
    return [f"{name(k)}: {_short(a.get(k, '<unset>'))} -> {_short(b.get(k, '<unset>'))}" for k in keys]


def file_identity(path: str | os.PathLike | None) -> dict | None:
    """A path input of a resume identity: where it is, and a file's sha256 (a folder's path only); None for None."""
    if path is None:
        return None
    real = os.path.realpath(path)
    return {"path": real, "sha256": sha256_file(real) if os.path.isfile(real) else None}


def read_record(folder: str | os.PathLike) -> dict | None:
    """The record of the run that wrote `folder`, or None when it holds none (or an unreadable one)."""
    path = Path(folder) / RECORD
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _RECORD_MAX_BYTES:
            return None
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and isinstance(rec.get("command"), str) else None


def not_data(folder: str | os.PathLike) -> set[str]:
    """Names of the entries of `folder` that its record lists as outputs that are not data (grids, plots)."""
    rec = read_record(folder)
    names = rec.get("not_data") if rec else None
    return {n for n in names if isinstance(n, str)} if isinstance(names, list) else set()


def _holds_files(folder: Path) -> bool:
    """Whether `folder` holds anything but what a ganprint writer leaves for a moment (temporaries, write probes)."""
    with os.scandir(folder) as entries:
        return any(not (_TEMPORARY.match(e.name) or e.name.startswith(_PROBE)) for e in entries)


class OutputFolder:
    """The output folder of one command: `check()` before any work (read-only), `claim()` before the first output.

    Args:
        path: the folder; name: the parameter that gave it (named in errors, see `errors.field`).
        command: the command, e.g. "embed" or "data samples".
        identity: every setting that changes an output byte (JSON types); compared as a whole with the record.
        labels: the parameters that set identity keys (default: the key itself); None shows the keys as they are.
        not_data: names of outputs in the folder that are not data (skipped by image listings).
        legacy: the identity an older ganprint recorded elsewhere in this folder (used when there is no record).
    """

    def __init__(self, path: str | os.PathLike, name: str, command: str, identity: Mapping[str, Any], *,
                 labels: Mapping[str, str] | None = None, not_data: Iterable[str] = (),
                 legacy: Mapping[str, Any] | None = None):
        self.path, self.label, self.command = Path(path), field(name), command
        self.identity, self.labels, self.legacy = _plain(identity), labels, legacy
        self.not_data = sorted(set(not_data))
        self.resumed = False

    def check(self) -> OutputFolder:
        """Refuse a folder this run may not write into (GanprintError naming its parameter); `resumed` says whether it
        holds this run's record already."""
        where = f"{self.label} {self.path}"
        if not self.path.is_dir():
            return self  # missing: it is created; a file in its place is check_writable_dir's error
        rec = read_record(self.path)
        if rec is None and self.legacy is not None:
            rec = {"command": self.command, "identity": self.legacy}
        if rec is None:
            if _holds_files(self.path):
                raise GanprintError(f"{where} holds files that ganprint did not write (it has no {RECORD} of an "
                                    f"earlier `ganprint {self.command}`), and ganprint never replaces them: choose a "
                                    f"new {self.label} (or an empty one)")
            return self
        if rec["command"] != self.command:
            raise GanprintError(f"{where} holds the output of `ganprint {rec['command']}`; choose a new {self.label} "
                                f"(or an empty one) for `ganprint {self.command}`")
        diff = identity_differences(rec.get("identity") or {}, self.identity, self.labels)
        if diff:
            raise GanprintError(f"{where} holds a `ganprint {self.command}` run with a different config "
                                f"({'; '.join(diff)}); re-run with the same settings to resume it, or choose a new "
                                f"{self.label}")
        self.resumed = True
        return self

    def claim(self) -> None:
        """Create the folder and write the record (atomically), before any output."""
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path / RECORD, {"command": self.command, "identity": self.identity,
                                               "not_data": self.not_data, "ganprint_version": __version__})


def claim_generated(outdir: str | os.PathLike, model: str | os.PathLike, seeds: list[int], grid: bool,
                    device_type: str, settings: Mapping[str, Any], batch_size: int) -> OutputFolder:
    """Check and claim the `outdir` of `generate`, whatever the kind of generator: its identity is the model's
    sha256, the seeds, `grid`, the device type and the kind's own `settings`, plus the batch size in fp32 (where
    it may change a pixel; the record spells it float32, as earlier versions did); grid.png is not data."""
    identity = {"model_sha256": sha256_file(model), "seeds": seeds_text(seeds), "grid": bool(grid),
                "device": device_type, **settings}
    if settings.get("precision") == "float32":
        identity["batch_size"] = int(batch_size)
    folder = OutputFolder(outdir, "outdir", "generate", identity,
                          labels={"model_sha256": "model", "kind": "model"}, not_data=[GRID] if grid else [])
    folder.check().claim()
    return folder
