"""Issued model fingerprints: one row per issued model, handed out under the registry's issue lock.

Issuing is one transaction that holds the issue lock (`Connection.begin_issue`) from reading the earlier
fingerprints to COMMIT, so two processes issuing at once never hand out the same fingerprint or two closer than the
minimum distance. A caller can pass `finalize`, run inside that transaction after the row is inserted and before
COMMIT (`ganprint.registry.issued` writes the model's pending file there): if it fails, or the process dies, the row
is never committed. When the connection fails during COMMIT itself, the registry is asked again whether the row
committed (`committed`); `issued` builds "a row iff its file" on top of this.

Minimum distance. Two issued K-bit fingerprints at Hamming distance d can be told apart by nearest-neighbour
decoding as long as fewer than d/2 bits are decoded wrongly. The default `default_min_distance(K) = K // 4`
(32 for 128 bits) therefore tolerates up to K/8 bit errors (bit accuracy 0.875, below what trained decoders
reach) before two models could be confused. It costs almost nothing in capacity: two uniform random 128-bit
strings are closer than 32 with probability P[Bin(128, 1/2) <= 31] ~ 6e-9, so even with a million issued
fingerprints a fresh random draw is rejected (and redrawn) well under 1% of the time.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import re
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ganprint.core.fingerprints import bits_to_hex, pack_bits, parse_bits, unpack_bits
from ganprint.core.hamming import hamming_to_all
from ganprint.registry.backends.connection import Connection
from ganprint.registry.base import Store, timestamp
from ganprint.registry.errors import (CommitUnknown, RegistryConflict, RegistryError, RegistryExhausted,
                                     RegistryNotFound, check_id, check_text)
from ganprint.registry.schema import FINGERPRINT_FIELDS, FINGERPRINT_TYPES, column_list, length_name

log = logging.getLogger(__name__)


def default_min_distance(k: int) -> int:
    """The default minimum Hamming distance between issued K-bit fingerprints: K // 4 (see module docstring)."""
    return max(1, k // 4)


@dataclass
class Issued:
    """One issued model fingerprint."""

    fp_id: int
    bits_hex: str
    fingerprint_length: int
    who: str
    notes: str
    created: str
    model_sha256: str
    min_distance: int | None  # Hamming distance to the nearest earlier fingerprint (None for the first)
    issued_path: str | None = None
    issued_sha256: str | None = None

    @property
    def bits(self) -> torch.Tensor:
        """The fingerprint as float 0/1 [K]."""
        return parse_bits(self.bits_hex, self.fingerprint_length)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _Holder:
    """What an issue records besides the fingerprint."""

    who: str
    notes: str
    model_sha256: str


class Fingerprints(Store):
    """The issued-fingerprint operations of a registry (see `store.Registry`)."""

    def fingerprint_length(self) -> int | None:
        """K of this registry's model fingerprints (fixed by its first one), or None while empty."""
        with self._read() as con:
            return self._length(con, self._version(con))

    def __len__(self) -> int:
        with self._read() as con:
            return int(con.execute("SELECT COUNT(*) FROM fingerprints").fetchone()[0])

    def list(self) -> list[Issued]:
        """Every issued fingerprint, in issue order."""
        with self._read() as con:
            return self._issued_rows(con)

    def get(self, fp_id: int) -> Issued:
        """The row with `fp_id`; RegistryNotFound when absent."""
        fp_id = check_id(fp_id)
        with self._read() as con:
            rows = self._issued_rows(con, "WHERE fp_id=?", (fp_id,))
        if not rows:
            raise RegistryNotFound(f"registry {self._db.where} has no fingerprint with id {fp_id}")
        return rows[0]

    def packed(self) -> tuple[np.ndarray, np.ndarray]:
        """(fp_ids int64 [N], packed bits uint8 [N, ceil(K/8)]) of every issued fingerprint, for Hamming search."""
        with self._read() as con:
            return self._load_packed(con)

    def issue(self, bits: torch.Tensor | str | None = None, *, fingerprint_length: int | None = None,
              who: str | None = None, notes: str = "", model_sha256: str = "", min_distance: int | None = None,
              max_tries: int = 1000, finalize: Callable[[Issued], tuple[str, str]] | None = None) -> Issued:
        """Issue one fingerprint in a single locked transaction and return its row.

        Args:
            bits: a given fingerprint (0/1 tensor [K], 0/1 string or 0x-hex); None draws fresh random bits
                from the OS CSPRNG (`secrets`).
            fingerprint_length: K; required for random bits unless the registry already has fingerprints.
            min_distance: refuse (given bits) or redraw (random bits) anything closer than this to an issued
                fingerprint; default `default_min_distance(K)`.
            finalize: called with the new row before COMMIT; returns (issued_path, issued_sha256) to record.
                If it raises, nothing is recorded.
        Raises RegistryConflict when the fingerprint is a duplicate / too close, RegistryExhausted when no random
        one is far enough, RegistryError when K mismatches the registry (a misconfiguration, not a request). When
        the connection fails during COMMIT, the registry is asked again whether the row committed: the row is
        returned if it did, RegistryError raised if it did not, and CommitUnknown when it cannot be reached.
        """
        if isinstance(bits, str):
            bits = parse_bits(bits, fingerprint_length)
        if bits is not None:
            bits = torch.as_tensor(bits).float().reshape(-1)
            if fingerprint_length is not None and bits.numel() != fingerprint_length:
                raise RegistryError(f"`fingerprint` has {bits.numel()} bits but the model expects "
                                    f"{fingerprint_length}")
            fingerprint_length = bits.numel()
        holder = _Holder(check_text("`who`", who if who is not None else _whoami(), 200, min_len=1),
                         check_text("`notes`", notes, 2000, lines=True), model_sha256)
        with self._write() as con:
            con.begin_issue()
            try:
                rec = self._insert_issued(con, bits, fingerprint_length, holder, min_distance, max_tries)
                if finalize is not None:
                    rec.issued_path, rec.issued_sha256 = finalize(rec)
                    con.execute("UPDATE fingerprints SET issued_path=?, issued_sha256=? WHERE fp_id=?",
                                (rec.issued_path, rec.issued_sha256, rec.fp_id))
            except BaseException:
                con.rollback()
                raise
            lost = con.commit()
        if lost is not None:
            self._settle_lost_commit(rec, lost)
        log.info("issued fingerprint #%d %s (nearest earlier: %s bits away)", rec.fp_id, rec.bits_hex,
                 rec.min_distance)
        return rec

    def _settle_lost_commit(self, rec: Issued, lost: BaseException) -> None:
        """Return when `rec` committed although its COMMIT failed; raise when it did not or nobody can tell."""
        reason = str(lost).strip().splitlines()[0] if str(lost).strip() else type(lost).__name__
        committed = self.committed(rec) if isinstance(lost, Exception) else None
        if committed:
            log.warning("registry %s: the connection failed during COMMIT of #%d (%s), but the row committed",
                        self._db.where, rec.fp_id, reason)
            return
        if committed is None:
            raise CommitUnknown(f"registry {self._db.where}: the connection failed during COMMIT of model #{rec.fp_id} "
                                f"({reason}) and the registry cannot be asked whether it committed; its file is "
                                f"kept, and `ganprint registry repair` completes or removes it once the registry "
                                f"answers") from None
        raise RegistryError(f"registry {self._db.where}: the issue of #{rec.fp_id} did not commit ({reason}); "
                            "nothing was recorded, try again") from None

    def committed(self, rec: Issued, tries: int = 3) -> bool | None:
        """Whether the row `rec` (same id, fingerprint and file digest) is in the registry, asked on a new
        connection up to `tries` times; None when the registry cannot be reached."""
        for attempt in range(tries):
            try:
                with self._read() as con:
                    row = con.execute("SELECT bits_hex, issued_sha256 FROM fingerprints WHERE fp_id=?",
                                      (rec.fp_id,)).fetchone()
                return row is not None and (row[0], row[1]) == (rec.bits_hex, rec.issued_sha256)
            except RegistryError as e:
                log.warning("registry %s: cannot learn whether #%d committed (%s)", self._db.where, rec.fp_id, e)
                if attempt + 1 < tries:
                    time.sleep(0.5 * 2**attempt)
        return None

    @contextlib.contextmanager
    def issue_locked(self) -> Iterator[LockedView]:
        """Hold the issue lock (no issue can be between its insert and its COMMIT meanwhile) and read through it;
        nothing is written. A repair of issued files decides under it which files have a committed row."""
        with self._write() as con:
            con.begin_issue()
            try:
                yield LockedView(self, con)
            finally:
                con.rollback()

    def _insert_issued(self, con: Connection, bits: torch.Tensor | None, k: int | None, holder: _Holder,
                       min_distance: int | None, max_tries: int) -> Issued:
        k_reg = self._length(con, self._version(con))
        k = k if k is not None else k_reg
        if k is None:
            raise RegistryError("the registry is empty, so the fingerprint length must be given "
                                "(`fingerprint_length`)")
        if k_reg is not None and k_reg != k:
            raise RegistryError(f"registry {self._db.where} holds {k_reg}-bit fingerprints but this model uses "
                                f"{k}; use a separate `registry` per fingerprint length")
        dmin = default_min_distance(k) if min_distance is None else int(min_distance)
        if not 0 <= dmin <= k:
            raise RegistryError(f"`min_distance` must be in [0, {k}], got {dmin}")
        cand, nearest, packed = self._draw(con, bits, k, dmin, max_tries)
        created = timestamp()
        fp_id = con.execute(
            "INSERT INTO fingerprints (bits_hex, packed, fingerprint_length, who, notes, created, model_sha256,"
            " min_distance) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING fp_id",
            (bits_to_hex(cand), packed, k, holder.who, holder.notes, created, holder.model_sha256,
             nearest)).fetchone()[0]
        if k_reg is None:
            con.execute("INSERT INTO meta (key, value) VALUES ('fingerprint_length', ?)", (str(k),))
        return Issued(int(fp_id), bits_to_hex(cand), k, holder.who, holder.notes, created, holder.model_sha256,
                      nearest)

    def _draw(self, con: Connection, bits: torch.Tensor | None, k: int, dmin: int,
              max_tries: int) -> tuple[torch.Tensor, int | None, bytes]:
        """(fingerprint, distance to the nearest issued one, packed bytes): `bits` when far enough from every issued
        fingerprint, else fresh random bits redrawn until they are (at most `max_tries` draws)."""
        _, db = self._load_packed(con)
        for _attempt in range(max_tries if bits is None else 1):
            cand = bits if bits is not None else _random_bits(k)
            packed = pack_bits(cand[None])  # [1, ceil(K/8)]
            nearest = int(hamming_to_all(packed, db).min()) if len(db) else None
            if nearest is None or (nearest >= dmin and nearest > 0):
                return cand, nearest, packed[0].tobytes()
            if bits is not None:
                what = "is already issued" if nearest == 0 else f"is at Hamming distance {nearest}"
                raise RegistryConflict(f"fingerprint {bits_to_hex(cand)} {what} from an issued fingerprint "
                                       f"(minimum {dmin}); choose another one or omit `fingerprint`")
        raise RegistryExhausted(f"no random {k}-bit fingerprint at distance >= {dmin} from the {len(db)} issued "
                                f"ones after {max_tries} draws; lower `min_distance`")

    def set_issued_file(self, fp_id: int, path: str | os.PathLike, sha256: str) -> None:
        """Record the folded generator written for `fp_id` (for rows issued without `finalize`)."""
        with self._write() as con:
            con.execute("UPDATE fingerprints SET issued_path=?, issued_sha256=? WHERE fp_id=?",
                        (str(Path(path).resolve()), sha256, int(fp_id)))

    # --- checked reading -------------------------------------------------------------------------------------

    def _issued_rows(self, con: Connection, where: str = "", params: tuple = ()) -> list[Issued]:
        version = self._version(con)
        k = self._length(con, version)
        rows = con.execute(f"SELECT {column_list(FINGERPRINT_FIELDS, version)}, packed FROM fingerprints {where} "
                           f"ORDER BY fp_id", params).fetchall()
        out = []
        for r in rows:
            rec = Issued(*self._checked("fingerprints", FINGERPRINT_FIELDS, FINGERPRINT_TYPES, tuple(r[:-1])))
            if rec.fingerprint_length != k:
                raise self._damaged(f"fingerprints row {rec.fp_id}: {length_name(version)} {rec.fingerprint_length} "
                                    f"is not the registry's "
                                    f"{k if k is not None else f'(meta.{length_name(version)} is missing)'}")
            if _packed_of(rec.bits_hex, k) != (bytes(r[-1]) if isinstance(r[-1], (bytes, memoryview)) else None):
                # attribution searches `packed`, messages show bits_hex: the two must say the same
                raise self._damaged(f"fingerprints row {rec.fp_id}: bits_hex {rec.bits_hex!r:.60} and packed do not "
                                    f"hold the same {k} bits")
            out.append(rec)
        return out

    def _load_packed(self, con: Connection) -> tuple[np.ndarray, np.ndarray]:
        version = self._version(con)
        k = self._length(con, version)
        rows = con.execute("SELECT fp_id, packed FROM fingerprints ORDER BY fp_id").fetchall()
        if k is None and rows:
            raise self._damaged(f"fingerprints has rows but meta.{length_name(version)} is missing")
        nbytes = (k + 7) // 8 if k else 0
        for fp_id, blob in rows:
            if type(fp_id) is not int or not isinstance(blob, (bytes, memoryview)) or len(blob) != nbytes:
                raise self._damaged(f"fingerprints row {fp_id!r:.30}: column packed is not {nbytes} bytes of "
                                    f"{k} bits")
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        packed = np.frombuffer(b"".join(bytes(r[1]) for r in rows), dtype=np.uint8).reshape(len(rows), nbytes)
        return ids, packed


class LockedView:
    """Reads of a registry inside its issue lock (`Fingerprints.issue_locked`)."""

    def __init__(self, registry: Fingerprints, con: Connection):
        self._registry, self._con = registry, con

    def rows(self) -> dict[int, Issued]:
        """Every committed row, by id."""
        return {r.fp_id: r for r in self._registry._issued_rows(self._con)}

    def get(self, fp_id: int) -> Issued | None:
        """The committed row `fp_id`, or None."""
        rows = self._registry._issued_rows(self._con, "WHERE fp_id=?", (int(fp_id),))
        return rows[0] if rows else None


def packed_row(bits_hex: str, k: int) -> bytes:
    """The `packed` column of a K-bit fingerprint given as 0x-hex (for rows written from a dump)."""
    return pack_bits(parse_bits(bits_hex, k)[None])[0].tobytes()


def _packed_of(bits_hex: str, k: int) -> bytes | None:
    """The `packed` column of a K-bit fingerprint's 0x-hex (pack_bits: big-endian, zero bits after the K), or None
    when the hex is not K bits of hex."""
    nbytes = (k + 7) // 8
    if not re.fullmatch(r"0x[0-9a-f]+", bits_hex) or len(bits_hex) != 2 + -(-k // 4):
        return None
    value = int(bits_hex[2:], 16)
    return (value << (8 * nbytes - k)).to_bytes(nbytes, "big") if value >> k == 0 else None


def _random_bits(k: int) -> torch.Tensor:
    raw = np.frombuffer(secrets.token_bytes((k + 7) // 8), dtype=np.uint8)[None]  # [1, ceil(K/8)]
    return torch.from_numpy(unpack_bits(raw, k)[0].astype(np.float32))


def _whoami() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return "unknown"
