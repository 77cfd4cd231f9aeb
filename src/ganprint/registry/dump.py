"""A registry export (`ganprint registry export`): its format, checked whole before `registry import` writes.

A dump is refused, with one line naming the file, the row and the field, when any part of it is not what
`Registry.export` writes: a missing or unknown field, a wrong type, an id outside 1 .. 2^63 - 1 or given twice, a
fingerprint whose hex does not hold exactly its fingerprint length (or whose length is not the header's), the same
fingerprint, data-set name or token hash twice, a string that one of the two backends cannot store (NUL, a lone
surrogate). Nothing is written before the whole dump has passed.

Manifest stores (schema 5) are exported whole, in base64, each with the record it names, which must be in the dump;
dumps of older schemas have none.

Dumps of schema 3 and older name the fingerprint length `bit_length` (header and rows); they are read under that
name and imported under the current one, `fingerprint_length`, which is what an export writes.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import os
import re
from collections.abc import Callable
from typing import Any

from ganprint.core.fingerprints import FingerprintError, parse_bits
from ganprint.registry.backends.connection import Connection
from ganprint.registry.errors import DumpError
from ganprint.registry.fingerprints import packed_row
from ganprint.registry.manifests import MANIFEST_ID
from ganprint.registry.schema import DATASET_FIELDS, FINGERPRINT_FIELDS, LENGTH, MANIFEST_FIELDS, length_name
from ganprint.registry.tokens import LEGACY_SCOPES, parse_scopes

FORMAT = "ganprint-registry"
MAX_ID = 2**63 - 1  # SQLite INTEGER / PostgreSQL BIGINT
MAX_BITS = 1 << 16

_HEX = re.compile(r"0x[0-9a-f]+")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SCOPE = re.compile(r"[a-z]+(:[a-z]+)?")  # issue, download:own, ...: the names are checked on import


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
    k = row.get(LENGTH, row.get("bit_length"))  # the name of the dump's schema (validate_dump checks which)
    if type(k) is not int or not 1 <= k <= MAX_BITS:
        return ""  # the length field reports itself
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
MANIFESTS_SINCE = 5  # the schema that added manifest stores


def _label(value: Any, row: dict) -> str:
    problem = _text(value)
    return problem or ("" if MANIFEST_ID.fullmatch(value) else f"is {_shown(value)}, not a C2PA manifest label "
                                                                "(urn:c2pa:<uuid>...)")


def _store(value: Any, row: dict) -> str:
    problem = _text(value)
    if problem:
        return problem
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return "is not base64"
    if not raw:
        return "is empty"
    return "" if hashlib.sha256(raw).hexdigest() == row.get("sha256") else "does not match the row's sha256"


def tables(length: str = LENGTH) -> dict[str, tuple[dict[str, Check], tuple[str, ...], str]]:
    """Per table: (field -> check), the fields that must be unique, and the field that names a row in messages;
    `length` is the name of the fingerprint-length field in the dump's schema (`schema.length_name`)."""
    return {
        "fingerprints": ({
            "fp_id": _ID, "bits_hex": _bits_hex, length: _integer(1, MAX_BITS), "who": _text, "notes": _text,
            "created": _date, "model_sha256": lambda v, r: _text(v) or ("" if v == "" else _sha256(v, r)),
            "min_distance": _optional(_integer(0, MAX_BITS)), "issued_path": _optional(_text),
            "issued_sha256": _optional(_sha256),
        }, ("fp_id", "bits_hex"), "fp_id"),
        "datasets": ({
            "ds_id": _ID,
            "name": lambda v, r: _text(v) or ("" if 1 <= len(v) <= 200 else "is not 1 to 200 characters"),
            "bits_hex": _bits_hex, length: _integer(1, MAX_BITS), "decoder_sha256": _sha256,
            "decoder_path": _text, "created": _date, "notes": _text,
        }, ("ds_id", "name"), "ds_id"),
        "tokens": ({
            "token_id": _ID, "name": _text, "token_hash": _sha256, "created": _date,
            "scopes": lambda v, r: "" if isinstance(v, list) and v and all(
                isinstance(x, str) and _SCOPE.fullmatch(x) for x in v) else f"is {_shown(v)}, not a list of scope "
                                                                            f"names",
            "expires": _optional(_date), "revoked": _optional(_date),
        }, ("token_id", "token_hash"), "token_id"),
        "manifests": ({
            "manifest_id": _label, "alg": _text, "fp_id": _optional(_ID), "ds_id": _optional(_ID), "value": _text,
            "sha256": _sha256, "store": _store, "created": _date,
        }, ("manifest_id",), "manifest_id"),
    }


TABLES = tuple(tables())
# Fields that dumps of an older schema lack (tokens before schema 3 had no scopes, expiry or revocation).
OPTIONAL_FIELDS: dict[str, frozenset[str]] = {"tokens": frozenset({"scopes", "expires", "revoked"})}


def validate_dump(data: Any, dump: str | os.PathLike, schema_version: int) -> None:
    """Refuse (DumpError naming `dump`, the row and the field) anything in `data` that `Registry.export` of a
    registry with schema <= `schema_version` would not have written."""
    name = os.fspath(dump)

    def fail(where: str, problem: str) -> DumpError:
        return DumpError(f"registry export {name}: {where} {problem}; fix the file or export the registry again")

    length = _validate_header(data, schema_version, fail)
    checks = tables(length)
    for table in checks:
        if table == "manifests" and data["schema_version"] < MANIFESTS_SINCE:
            continue
        if not isinstance(data[table], list):
            raise fail(f"field {table!r}", f"is {_shown(data[table])}, not a list of rows")
        _validate_rows(table, data[table], checks[table], fail)
    k = data[length]
    for i, row in enumerate(data["fingerprints"]):
        if row[length] != k:
            raise fail(f"fingerprints[{i}] (fp_id {row['fp_id']}) field {length!r}",
                       f"is {row[length]} but the export's {length} is {k}")
        if row["min_distance"] is not None and row["min_distance"] > k:
            raise fail(f"fingerprints[{i}] (fp_id {row['fp_id']}) field 'min_distance'",
                       f"is {row['min_distance']}, more than the {k} bits")
    records = {"fp_id": {r["fp_id"] for r in data["fingerprints"]}, "ds_id": {r["ds_id"] for r in data["datasets"]}}
    for i, row in enumerate(data.get("manifests", [])):
        named = [key for key in records if row[key] is not None]
        if len(named) != 1:
            raise fail(f"manifests[{i}]", "names no record or two: exactly one of 'fp_id' and 'ds_id' is set")
        if row[named[0]] not in records[named[0]]:
            raise fail(f"manifests[{i}] field {named[0]!r}", f"is {row[named[0]]}, a record not in the export")


def _validate_header(data: Any, schema_version: int, fail: Callable[[str, str], DumpError]) -> str:
    """Check the dump's header; returns the name of its fingerprint-length field."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise fail("the file", f"is not a ganprint registry export (no \"format\": \"{FORMAT}\")")
    if "schema_version" not in data:
        raise fail("field 'schema_version'", "is missing")
    problem = _integer(1, schema_version)(data["schema_version"], data)
    if problem:
        raise fail("field 'schema_version'", f"{problem} (this ganprint reads schema <= {schema_version})")
    length = length_name(data["schema_version"])
    header = ("format", "schema_version", length, *TABLES)
    unknown = sorted(set(data) - set(header), key=str)
    if unknown:
        raise fail(f"field {unknown[0]!r}", "is not one that `ganprint registry export` writes")
    if data["schema_version"] < MANIFESTS_SINCE:
        header = tuple(f for f in header if f != "manifests")
    for field in header:
        if field not in data:
            raise fail(f"field {field!r}", "is missing")
    problem = _optional(_integer(1, MAX_BITS))(data[length], data)
    if problem:
        raise fail(f"field {length!r}", problem)
    return length


def _validate_rows(table: str, rows: list, spec: tuple, fail: Callable[[str, str], DumpError]) -> None:
    checks, unique, key = spec
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


def current(data: dict) -> dict:
    """A checked dump with the fingerprint length under its current name (a dump of schema <= 3 names it
    `bit_length`)."""
    old = length_name(data["schema_version"])
    data = {**data, "manifests": data.get("manifests", [])}
    if old == LENGTH:
        return data

    def renamed(row: dict) -> dict:
        return {(LENGTH if k == old else k): v for k, v in row.items()}

    return {**renamed(data), "fingerprints": [renamed(r) for r in data["fingerprints"]],
            "datasets": [renamed(r) for r in data["datasets"]]}


def insert_rows(con: Connection, data: dict) -> None:
    """Write the rows of a checked, `current` dump into an empty registry, inside the caller's transaction."""
    if data[LENGTH] is not None:
        con.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (LENGTH, str(data[LENGTH])))
    fp_fields = ", ".join(FINGERPRINT_FIELDS)
    for r in data["fingerprints"]:
        con.execute(f"INSERT INTO fingerprints ({fp_fields}, packed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*(r[c] for c in FINGERPRINT_FIELDS), packed_row(r["bits_hex"], r[LENGTH])))
    for r in data["datasets"]:
        con.execute(f"INSERT INTO datasets ({', '.join(DATASET_FIELDS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    tuple(r[c] for c in DATASET_FIELDS))
    for r in data["tokens"]:  # a dump of schema 2 has no scopes: its tokens keep the legacy ones
        con.execute("INSERT INTO tokens (token_id, name, token_hash, created, scopes, expires, revoked)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)", (r["token_id"], r["name"], r["token_hash"], r["created"],
                                                     " ".join(parse_scopes(r.get("scopes", LEGACY_SCOPES))),
                                                     r.get("expires"), r.get("revoked")))
    for r in data["manifests"]:
        con.execute(f"INSERT INTO manifests ({', '.join(MANIFEST_FIELDS)}, store) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (*(r[c] for c in MANIFEST_FIELDS), base64.b64decode(r["store"])))
    if con.postgres:  # explicit ids leave the identity sequences behind
        for table, col in (("fingerprints", "fp_id"), ("datasets", "ds_id"), ("tokens", "token_id")):
            con.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{col}'),"
                        f" COALESCE((SELECT MAX({col}) FROM {table}), 0) + 1, false)")
