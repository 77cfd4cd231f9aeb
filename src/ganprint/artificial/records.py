"""What embed and detect write down: fingerprint lists (`<name> <bits>` per line), embed's resume records, and the
names of their outputs (`FP_DIR`, `MANIFEST`).

Fingerprint lists (embedded_fingerprints.txt, detected_fingerprints.txt) keep the original's line format,
`<name> <0/1 bits>`, sorted by name. A name that the line format cannot carry as it is (one holding a newline, a
tab or any other character that `str.isprintable` rejects, or one that starts and ends with a double quote) is
written as a JSON string literal instead, e.g. `"a\\nb.png" 0110`; readers decode a name that starts and ends with
`"` as JSON. Ordinary names are written unchanged, so lists of ordinary names are the original's files.

Resume records: each rank appends one JSON row per finished image, `{"name", "source", "bits"}`, to
`.progress/embed-rank<r>.jsonl`, after the image's PNG is in place; a batch's rows go out in one write
(`ganprint.inference.writer.BatchWriter`), and rows that are torn or do not hold K bits are ignored on reading.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ganprint.core.errors import GanprintError
from ganprint.core.files import MAX_LIST_BYTES, atomic_write_text, read_input_text, read_jsonl

FP_DIR = "fingerprinted_images"
MANIFEST = "manifest.json"
EMBEDDED_TXT = "embedded_fingerprints.txt"
DETECTED_TXT = "detected_fingerprints.txt"
PROGRESS_DIR = ".progress"


def _needs_quoting(name: str) -> bool:
    return not name.isprintable() or (len(name) >= 2 and name[0] == name[-1] == '"')


def format_line(name: str, bits: str) -> str:
    """One line of a fingerprint list, newline included (the name quoted only when it must be)."""
    return f"{json.dumps(name) if _needs_quoting(name) else name} {bits}\n"


def write_fingerprint_txt(path: str | os.PathLike, pairs: list[tuple[str, str]]) -> None:
    """Write a fingerprint list atomically, one `format_line` per (name, bits), in the order given."""
    atomic_write_text(path, "".join(format_line(n, b) for n, b in pairs))


def _parse_name(field: str, where: str) -> str:
    if len(field) >= 2 and field[0] == field[-1] == '"':
        try:
            name = json.loads(field)
        except ValueError:
            name = None
        if not isinstance(name, str):
            raise GanprintError(f"{where}: the quoted name {field[:80]!r} is not a valid JSON string")
        return name
    return field


def read_fingerprint_txt(path: str | os.PathLike, length: int | None = None) -> dict[str, str]:
    """Read an embedded/detected_fingerprints.txt (`<name> <0/1 bits>` per line) into {name: bits}."""
    path = Path(path)
    out = {}  # a regular file of bounded size only: a FIFO or a device could hang the reader or never end
    text = read_input_text(path, "fingerprint list", MAX_LIST_BYTES, errors="surrogateescape")
    for n, line in enumerate(text.split("\n"), 1):  # only "\n" ends a line: other breaks may sit inside a name
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        parts = line.rsplit(" ", 1)
        if len(parts) != 2 or not parts[1] or set(parts[1]) - {"0", "1"}:
            raise GanprintError(f"{path}:{n}: expected '<name> <0/1 bits>', got {line[:80]!r}")
        if length is not None and len(parts[1]) != length:
            raise GanprintError(
                f"{path}:{n}: {len(parts[1])} bits, but the model decodes {length}; wrong model or list?")
        out[_parse_name(parts[0], f"{path}:{n}")] = parts[1]
    return out


def progress_file(out: Path, rank: int) -> Path:
    return out / PROGRESS_DIR / f"embed-rank{rank}.jsonl"


def _valid_row(length: int):
    def valid(row) -> bool:
        if not isinstance(row, dict) or not isinstance(row.get("name"), str):
            return False
        bits, source = row.get("bits"), row.get("source")
        return (isinstance(bits, str) and len(bits) == length and not set(bits) - {"0", "1"}
                and (source is None or isinstance(source, str)))
    return valid


def read_progress(out: Path, length: int) -> dict[str, tuple[str | None, str]]:
    """{name: (source relpath or None, bits)} from every rank's progress file (any earlier world size)."""
    done: dict[str, tuple[str | None, str]] = {}
    valid = _valid_row(length)
    for p in sorted((out / PROGRESS_DIR).glob("embed-rank*.jsonl")):
        for row in read_jsonl(p, valid):
            done[row["name"]] = (row.get("source"), row["bits"])
    return done
