"""C2PA manifest stores kept for a C2PA soft-binding lookup: one row per signed image's manifest store.

A row names the record its image's fingerprint points to: an issued model (`fp_id`) or a registered data set
(`ds_id`), exactly one of them. The store itself (the JUMBF bytes a C2PA signer returned) is kept whole, with its
SHA-256, so that `/manifests/{id}` hands back byte for byte what was signed. Rows are never edited.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import asdict, dataclass

from ganprint.registry.backends.connection import Connection
from ganprint.registry.base import Store, timestamp
from ganprint.registry.errors import RegistryConflict, RegistryInputError, RegistryNotFound, check_id, check_text
from ganprint.registry.schema import MANIFEST_FIELDS, MANIFEST_TYPES

MAX_STORE_BYTES = 8 * 2**20  # a manifest store with its certificate chain is tens of kB; far above any real one
# C2PA manifest labels are URNs (urn:c2pa:<uuid>..., or urn:uuid:<uuid> before C2PA 2.0): text a URL path carries.
MANIFEST_ID = re.compile(r"urn:[A-Za-z0-9][A-Za-z0-9-]{0,31}:[A-Za-z0-9._:~+-]{1,200}")


@dataclass
class ManifestRow:
    """One stored manifest store, without its bytes."""

    manifest_id: str
    alg: str
    fp_id: int | None
    ds_id: int | None
    value: str  # the soft-binding value of its assertion (base64)
    sha256: str
    created: str

    def to_dict(self) -> dict:
        return asdict(self)


def check_manifest_id(manifest_id: str) -> str:
    """`manifest_id` when it is a C2PA manifest label (a URN); RegistryInputError otherwise."""
    check_text("`manifest_id`", manifest_id, 240, 1)
    if not MANIFEST_ID.fullmatch(manifest_id):
        raise RegistryInputError(f"`manifest_id` {manifest_id!r:.80} is not a C2PA manifest label "
                                 "(urn:c2pa:<uuid>...)")
    return manifest_id


class Manifests(Store):
    """The manifest-store operations of a registry (see `store.Registry`)."""

    def add_manifest(self, manifest_id: str, alg: str, value: str, store: bytes, *, fp_id: int | None = None,
                     ds_id: int | None = None) -> ManifestRow:
        """Keep the manifest store `store` (bytes) under `manifest_id` for the issued model `fp_id` or the data set
        `ds_id` (exactly one); RegistryNotFound when that record is absent, RegistryConflict when the id is taken."""
        check_manifest_id(manifest_id)
        check_text("`alg`", alg, 200, 1)
        check_text("`value`", value, 4096, 1)
        if (fp_id is None) == (ds_id is None):
            raise RegistryInputError("a manifest names exactly one record: give `fp_id` or `ds_id`")
        if not isinstance(store, (bytes, bytearray)) or not 0 < len(store) <= MAX_STORE_BYTES:
            raise RegistryInputError(f"`store` must be 1 to {MAX_STORE_BYTES} bytes of a C2PA manifest store")
        table, key, rid = ("fingerprints", "fp_id", fp_id) if fp_id is not None else ("datasets", "ds_id", ds_id)
        rid = check_id(rid, f"`{key}`")
        row = ManifestRow(manifest_id, alg, rid if key == "fp_id" else None, rid if key == "ds_id" else None, value,
                          hashlib.sha256(store).hexdigest(), timestamp())
        what = "issued model" if key == "fp_id" else "data set"
        with self._write() as con, con.locked():
            if con.execute(f"SELECT 1 FROM {table} WHERE {key}=?", (rid,)).fetchone() is None:
                raise RegistryNotFound(f"registry {self._db.where} has no {what} with `{key}` {rid}")
            if con.execute("SELECT 1 FROM manifests WHERE manifest_id=?", (manifest_id,)).fetchone() is not None:
                raise RegistryConflict(f"registry {self._db.where} already holds manifest {manifest_id}")
            con.execute("INSERT INTO manifests (manifest_id, alg, fp_id, ds_id, value, store, sha256, created)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (row.manifest_id, row.alg, row.fp_id, row.ds_id,
                                                             row.value, bytes(store), row.sha256, row.created))
        return row

    def manifest_store(self, manifest_id: str) -> bytes:
        """The manifest store kept under `manifest_id`; RegistryNotFound when there is none."""
        check_manifest_id(manifest_id)
        with self._read() as con:
            got = (con.execute("SELECT store, sha256 FROM manifests WHERE manifest_id=?", (manifest_id,)).fetchone()
                   if self._has(con, "manifests") else None)
        if got is None:
            raise RegistryNotFound(f"registry {self._db.where} holds no manifest {manifest_id}")
        store = bytes(got[0]) if isinstance(got[0], (bytes, memoryview)) else None
        if store is None or hashlib.sha256(store).hexdigest() != got[1]:
            raise self._damaged(f"manifests row {manifest_id}: the store does not match its sha256")
        return store

    def manifests_of(self, *, fp_id: int | None = None, ds_id: int | None = None,
                     limit: int = 100) -> list[ManifestRow]:
        """The manifests kept for issued model `fp_id` or data set `ds_id`, oldest first, at most `limit`."""
        key, rid = ("fp_id", fp_id) if fp_id is not None else ("ds_id", ds_id)
        with self._read() as con:
            return self._manifest_rows(con, f"WHERE {key}=?", (check_id(rid, key),), limit)

    def manifests(self) -> list[ManifestRow]:
        """Every kept manifest, oldest first."""
        with self._read() as con:
            return self._manifest_rows(con, "", (), None)

    def _manifest_dump(self, con: Connection) -> list[dict]:
        """Every manifest row with its store in base64 (for `Registry.export`), each store checked."""
        out = []
        for row in self._manifest_rows(con, "", (), None):
            store = con.execute("SELECT store FROM manifests WHERE manifest_id=?", (row.manifest_id,)).fetchone()[0]
            store = bytes(store) if isinstance(store, (bytes, memoryview)) else b""
            if hashlib.sha256(store).hexdigest() != row.sha256:
                raise self._damaged(f"manifests row {row.manifest_id}: the store does not match its sha256")
            out.append({**row.to_dict(), "store": base64.b64encode(store).decode("ascii")})
        return out

    def _manifest_rows(self, con: Connection, where: str, params: tuple, limit: int | None) -> list[ManifestRow]:
        if not self._has(con, "manifests"):
            return []
        tail = f" LIMIT {int(limit)}" if limit is not None else ""
        rows = con.execute(f"SELECT {', '.join(MANIFEST_FIELDS)} FROM manifests {where} "
                           f"ORDER BY created, manifest_id{tail}", params).fetchall()
        return [ManifestRow(*self._checked("manifests", MANIFEST_FIELDS, MANIFEST_TYPES, tuple(r))) for r in rows]
