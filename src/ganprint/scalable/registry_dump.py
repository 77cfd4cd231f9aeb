"""The structure of a registry export (`ganprint registry export`), checked whole before `registry import` writes.

A dump is refused, with one line naming the file, the row and the field, when any part of it is not what
`Registry.export` writes: a missing or unknown field, a wrong type, an id outside 1 .. 2^63 - 1 or given twice, a
fingerprint whose hex does not hold exactly its bit length (or whose bit length is not the header's), the same
fingerprint, data-set name or token hash twice, a string that one of the two backends cannot store (NUL, a lone
surrogate). Nothing is written before the whole dump has passed.
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Callable
from typing import Any

from ganprint.core.errors import GanprintError
from ganprint.core.fingerprints import FingerprintError, parse_bits

FORMAT = "ganprint-registry"
MAX_ID = 2**63 - 1  # SQLite INTEGER / PostgreSQL BIGINT
MAX_BITS = 1 << 16

_HEX = re.compile(r"0x[0-9a-f]+")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SCOPE = re.compile(r"[a-z]+(:[a-z]+)?")  # issue, download:own, ...: the names are checked on import


class DumpError(GanprintError):
    """A registry export that cannot be imported as it is."""


# A check takes (value, row) and returns a problem ("" when the value is fine).
Check = Callable[[Any, dict], str]


def _text(value: Any, row: dict | None = None) -> str:
    if not isinstance(value, str):
        return f"is {_shown(value)}, not a string"
    if "\x00" in value:
        return "holds a NUL character, which PostgreSQL cannot store"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "holds a lone surrogate, which is not UTF-8 text"
    return ""


def _optional(check: Check) -> Check:
    return lambda value, row: "" if value is None else check(value, row)


def _integer(lo: int, hi: int) -> Check:
    def check(value: Any, row: dict) -> str:
        if type(value) is not int:
            return f"is {_shown(value)}, not an integer"
        return "" if lo <= value <= hi else f"is {value}, outside {lo} .. {hi}"
    return check


def _sha256(value: Any, row: dict) -> str:
    problem = _text(value)
    return problem or ("" if _SHA256.fullmatch(value) else f"is {_shown(value)}, not 64 lower-case hex digits")


def _date(value: Any, row: dict) -> str:
    problem = _text(value)
    if problem:
        return problem
    try:
        datetime.datetime.fromisoformat(value)
    except ValueError:
        return f"is {_shown(value)}, not an ISO 8601 date"
    return ""


def _bits_hex(value: Any, row: dict) -> str:
    problem = _text(value)
    if problem:
        return problem
    k = row.get("bit_length")
    if type(k) is not int or not 1 <= k <= MAX_BITS:
        return ""  # the bit_length field reports itself
    want = 2 + -(-k // 4)
    if not _HEX.fullmatch(value) or len(value) != want:
        return f"is {_shown(value)}, not 0x and {want - 2} lower-case hex digits for {k} bits"
    try:
        parse_bits(value, k)
    except FingerprintError:
        return f"is {_shown(value)}, which has bits set above its {k} bits"
    return ""


def _shown(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


_ID = _integer(1, MAX_ID)

# Per table: (field -> check), the fields that must be unique, and the field that names a row in messages.
TABLES: dict[str, tuple[dict[str, Check], tuple[str, ...], str]] = {
    "fingerprints": ({
        "fp_id": _ID, "bits_hex": _bits_hex, "bit_length": _integer(1, MAX_BITS), "who": _text, "notes": _text,
        "created": _date, "model_sha256": lambda v, r: _text(v) or ("" if v == "" else _sha256(v, r)),
        "min_distance": _optional(_integer(0, MAX_BITS)), "issued_path": _optional(_text),
        "issued_sha256": _optional(_sha256),
    }, ("fp_id", "bits_hex"), "fp_id"),
    "datasets": ({
        "ds_id": _ID, "name": lambda v, r: _text(v) or ("" if 1 <= len(v) <= 200 else "is not 1 to 200 characters"),
        "bits_hex": _bits_hex, "bit_length": _integer(1, MAX_BITS), "decoder_sha256": _sha256,
        "decoder_path": _text, "created": _date, "notes": _text,
    }, ("ds_id", "name"), "ds_id"),
    "tokens": ({
        "token_id": _ID, "name": _text, "token_hash": _sha256, "created": _date,
        "scopes": lambda v, r: "" if isinstance(v, list) and v and all(
            isinstance(x, str) and _SCOPE.fullmatch(x) for x in v) else f"is {_shown(v)}, not a list of scope names",
        "expires": _optional(_date), "revoked": _optional(_date),
    }, ("token_id", "token_hash"), "token_id"),
}
# Fields that dumps of an older schema lack (tokens before schema 3 had no scopes, expiry or revocation).
OPTIONAL_FIELDS: dict[str, frozenset[str]] = {"tokens": frozenset({"scopes", "expires", "revoked"})}
HEADER = ("format", "schema_version", "bit_length", *TABLES)


def validate_dump(data: Any, dump: str | os.PathLike, schema_version: int) -> None:
    """Refuse (DumpError naming `dump`, the row and the field) anything in `data` that `Registry.export` of a
    registry with schema <= `schema_version` would not have written."""
    name = os.fspath(dump)

    def fail(where: str, problem: str) -> DumpError:
        return DumpError(f"registry export {name}: {where} {problem}; fix the file or export the registry again")

    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise fail("the file", f"is not a ganprint registry export (no \"format\": \"{FORMAT}\")")
    unknown = sorted(set(data) - set(HEADER), key=str)
    if unknown:
        raise fail(f"field {unknown[0]!r}", "is not one that `ganprint registry export` writes")
    for field in HEADER:
        if field not in data:
            raise fail(f"field {field!r}", "is missing")
    problem = _integer(1, schema_version)(data["schema_version"], data)
    if problem:
        raise fail("field 'schema_version'", f"{problem} (this ganprint reads schema <= {schema_version})")
    problem = _optional(_integer(1, MAX_BITS))(data["bit_length"], data)
    if problem:
        raise fail("field 'bit_length'", problem)
    for table in TABLES:
        if not isinstance(data[table], list):
            raise fail(f"field {table!r}", f"is {_shown(data[table])}, not a list of rows")
        _validate_rows(table, data[table], fail)
    k = data["bit_length"]
    for i, row in enumerate(data["fingerprints"]):
        if row["bit_length"] != k:
            raise fail(f"fingerprints[{i}] (fp_id {row['fp_id']}) field 'bit_length'",
                       f"is {row['bit_length']} but the export's bit_length is {k}")
        if row["min_distance"] is not None and row["min_distance"] > k:
            raise fail(f"fingerprints[{i}] (fp_id {row['fp_id']}) field 'min_distance'",
                       f"is {row['min_distance']}, more than the {k} bits")


def _validate_rows(table: str, rows: list, fail: Callable[[str, str], DumpError]) -> None:
    checks, unique, key = TABLES[table]
    seen: dict[str, dict] = {field: {} for field in unique}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise fail(f"{table}[{i}]", f"is {_shown(row)}, not an object")
        label = f"{table}[{i}]" + (f" ({key} {row[key]})" if type(row.get(key)) is int else "")
        for field in sorted(set(row) - set(checks), key=str):
            raise fail(f"{label} field {field!r}", "is not one that `ganprint registry export` writes")
        for field, check in checks.items():
            if field not in row and field in OPTIONAL_FIELDS.get(table, ()):
                continue
            if field not in row:
                raise fail(f"{label} field {field!r}", "is missing")
            problem = check(row[field], row)
            if problem:
                raise fail(f"{label} field {field!r}", problem)
        for field in unique:
            first = seen[field].setdefault(row[field], i)
            if first != i:
                raise fail(f"{label} field {field!r}", f"repeats {table}[{first}]'s {_shown(row[field])}")
