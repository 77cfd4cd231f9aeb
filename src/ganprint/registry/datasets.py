"""Registered data sets: a data set's fingerprint (one for all its images) and the decoder file that reads it.

The registry knows no method: the caller that fingerprinted the data set (`ganprint.artificial`'s embed) checks that
its decoder reads the fingerprint (its kind, its length) before the row is added.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ganprint.core.files import sha256_file
from ganprint.core.fingerprints import FingerprintError, bits_to_hex, parse_bits
from ganprint.core.paths import check_overlap
from ganprint.registry.backends import registry_file
from ganprint.registry.backends.connection import Connection
from ganprint.registry.base import Store, timestamp
from ganprint.registry.errors import RegistryConflict, RegistryError, check_text
from ganprint.registry.schema import DATASET_FIELDS, DATASET_TYPES, column_list, length_name

log = logging.getLogger(__name__)


@dataclass
class Dataset:
    """One registered data-set fingerprint and the decoder that reads it."""

    ds_id: int
    name: str
    bits_hex: str
    fingerprint_length: int
    decoder_sha256: str
    decoder_path: str
    created: str
    notes: str

    @property
    def bits(self) -> torch.Tensor:
        return parse_bits(self.bits_hex, self.fingerprint_length)

    def to_dict(self) -> dict:
        return asdict(self)


class Datasets(Store):
    """The data-set operations of a registry (see `store.Registry`)."""

    def datasets(self) -> list[Dataset]:
        """Every registered data-set fingerprint, in registration order."""
        with self._read() as con:
            return self._dataset_rows(con)

    def add_dataset(self, name: str, bits: torch.Tensor | str, decoder_sha256: str, decoder_path: str,
                    notes: str = "", fingerprint_length: int | None = None) -> Dataset:
        """Register a data set's fingerprint under a unique `name`; the same one again is a no-op, another one under
        that name a RegistryConflict."""
        check_text("`name`", name, 200, min_len=1)
        check_text("`notes`", notes, 2000, lines=True)
        if isinstance(bits, str):
            bits = parse_bits(bits, fingerprint_length)
        bits = torch.as_tensor(bits).float().reshape(-1)
        hx, k = bits_to_hex(bits), int(bits.numel())
        fields = ", ".join(DATASET_FIELDS)
        with self._write() as con, con.locked():
            row = con.execute(f"SELECT {fields} FROM datasets WHERE name=?", (name,)).fetchone()
            if row is None:
                row = con.execute(
                    f"INSERT INTO datasets ({', '.join(DATASET_FIELDS[1:])}) VALUES (?, ?, ?, ?, ?, ?, ?) "
                    f"RETURNING {fields}",
                    (name, hx, k, decoder_sha256, decoder_path, timestamp(), notes)).fetchone()
        ds = Dataset(*self._checked("datasets", DATASET_FIELDS, DATASET_TYPES, tuple(row)))
        if (ds.bits_hex, ds.fingerprint_length, ds.decoder_sha256) != (hx, k, decoder_sha256):
            raise RegistryConflict(f"registry {self._db.where} already has a data set named {name!r} with another "
                                   f"fingerprint or decoder; choose another `name`")
        return ds

    def _dataset_rows(self, con: Connection) -> list[Dataset]:
        if not self._has(con, "datasets"):
            return []
        version = self._version(con)
        out = []
        rows = con.execute(f"SELECT {column_list(DATASET_FIELDS, version)} FROM datasets ORDER BY ds_id").fetchall()
        for r in rows:
            ds = Dataset(*self._checked("datasets", DATASET_FIELDS, DATASET_TYPES, tuple(r)))
            try:
                parse_bits(ds.bits_hex, ds.fingerprint_length)
            except FingerprintError:
                raise self._damaged(f"datasets row {ds.ds_id}: bits_hex {ds.bits_hex!r:.60} does not hold "
                                    f"{ds.fingerprint_length} bits ({length_name(version)})") from None
            out.append(ds)
        return out


def record_dataset(registry_url: str | os.PathLike, name: str, bits: torch.Tensor, decoder: str | os.PathLike,
                   notes: str = "") -> dict:
    """Record the data set `name`, fingerprinted with `bits` (0/1 [K]), and the decoder file that reads them, in the
    registry at `registry_url` (created if new); returns the row. The caller checked that `decoder` reads K bits
    (its kind and length are the method's business); the same name, bits and decoder again return the same row."""
    check_overlap([("`model`", decoder, "model")], [("`registry`", registry_file(registry_url), "file")])
    path = Path(decoder)
    if not path.is_file():
        raise RegistryError(f"`model` {path} does not exist; give the model that reads the data set's fingerprint")
    ds = Datasets(registry_url).add_dataset(name, bits, sha256_file(path), str(path.resolve()), notes)
    log.info("registered data set %r (%d bits) in %s", ds.name, ds.fingerprint_length, registry_url)
    return ds.to_dict()
