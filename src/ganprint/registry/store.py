"""The registry: issued model fingerprints, registered data sets and service tokens, in one database.

`Registry` is the store with every operation as a method (`fingerprints`, `datasets`, `tokens`, `manifests`; the
back-ends are in `backends`, the schema in `schema`, the export format in `dump`); the functions below open a
registry at a URL for one command each (migrate, export, import).
"""

from __future__ import annotations

import os

from ganprint.core.files import MAX_LIST_BYTES, atomic_write_json, read_input_json
from ganprint.core.paths import check_new_file, check_overlap
from ganprint.registry.backends import open_backend, registry_file
from ganprint.registry.datasets import Datasets
from ganprint.registry.dump import FORMAT, current, insert_rows, validate_dump
from ganprint.registry.errors import RegistryConflict, RegistryError
from ganprint.registry.fingerprints import Fingerprints
from ganprint.registry.manifests import Manifests
from ganprint.registry.schema import LENGTH, SCHEMA_VERSION
from ganprint.registry.tokens import Tokens


class Registry(Fingerprints, Datasets, Tokens, Manifests):
    """A fingerprint registry at `url` (a SQLite path / sqlite:/// URL, or postgresql://...); `create=False` opens an
    existing one read-only (see `base.Store`)."""

    def revision(self) -> tuple[int, ...]:
        """A cheap value that changes whenever a fingerprint or data set is added (rows are never edited)."""
        with self._read() as con:
            fp = tuple(con.execute("SELECT COUNT(*), COALESCE(MAX(fp_id), 0) FROM fingerprints").fetchone())
            ds = (tuple(con.execute("SELECT COUNT(*), COALESCE(MAX(ds_id), 0) FROM datasets").fetchone())
                  if self._has(con, "datasets") else (0, 0))
        return tuple(int(v) for v in fp + ds)

    def check(self) -> None:
        """Read every row once through the checks (a server does before it starts): RegistryError if any fails."""
        self.export()

    def export(self) -> dict:
        """Everything in the registry as JSON-ready data (token hashes, never tokens), every row checked."""
        with self._read() as con:
            k = self._length(con, self._version(con))
            fps = [r.to_dict() for r in self._issued_rows(con)]
            ds = [d.to_dict() for d in self._dataset_rows(con)]
            tokens = [{**t.to_dict(), "token_hash": h} for t, h in self._token_rows(con)]
            manifests = self._manifest_dump(con)
        return {"format": FORMAT, "schema_version": SCHEMA_VERSION, LENGTH: k, "fingerprints": fps,
                "datasets": ds, "tokens": tokens, "manifests": manifests}

    def import_(self, data: dict, source: str | os.PathLike = "the import", checked: bool = False) -> dict:
        """Load an `export()` into this registry, which must hold no fingerprints, data sets or tokens yet.

        The whole dump is checked first (`dump.validate_dump`, naming `source`; `checked`: the caller did):
        nothing is written unless all of it can be."""
        if not checked:
            validate_dump(data, source, SCHEMA_VERSION)
        data = current(data)
        with self._write() as con, con.locked():
            for table in ("fingerprints", "datasets", "tokens", "manifests"):
                if con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]:
                    raise RegistryConflict(f"registry {self._db.where} already holds {table}; import only into a "
                                           f"new registry")
            insert_rows(con, data)
        return {k: len(data[k]) for k in ("fingerprints", "datasets", "tokens", "manifests")}


def migrate(registry_url: str | os.PathLike) -> dict:
    """Create or upgrade a registry's schema; returns where it is and the versions before and after."""
    reg = Registry(registry_url)
    return {"registry": reg.where, "schema_before": reg.migrated[0], "schema_after": reg.migrated[1]}


def export_registry(registry_url: str | os.PathLike, out: str | os.PathLike, overwrite: bool = False) -> dict:
    """Write the whole registry to the JSON file `out` (an existing one only with `overwrite`); returns the row
    counts."""
    check_overlap([("`registry`", registry_file(registry_url), "registry")], [("`out`", out, "file")])
    check_new_file(out, "`out`", overwrite)
    data = Registry(registry_url, create=False).export()
    try:
        atomic_write_json(out, data)
    except OSError as e:
        raise RegistryError(f"cannot write {out}: {e.strerror}") from None
    return {"out": os.fspath(out), **{k: len(data[k]) for k in ("fingerprints", "datasets", "tokens", "manifests")}}


def import_registry(dump: str | os.PathLike, registry_url: str | os.PathLike) -> dict:
    """Load a `export_registry` JSON file into a new registry; returns the row counts.

    The dump is read under the rule for inputs (a regular file of bounded size) and checked whole before the
    registry is even created."""
    check_overlap([("`dump`", dump, "registry export")], [("`registry`", registry_file(registry_url), "file")])
    data = read_input_json(dump, "registry export", MAX_LIST_BYTES)
    validate_dump(data, dump, SCHEMA_VERSION)
    return {"registry": open_backend(registry_url).where,
            **Registry(registry_url).import_(data, dump, checked=True)}
