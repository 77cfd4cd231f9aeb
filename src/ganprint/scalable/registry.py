"""The registry of issued fingerprints: one SQLite file shared by every process that issues models.

Each issue is one `BEGIN IMMEDIATE` transaction (SQLite's write lock, WAL journal): it reads every earlier
fingerprint, draws or checks the new one against them and inserts it before anyone else can, so several
processes issuing at once never lose a row, never issue a duplicate and never violate the minimum distance.

Minimum distance. Two issued K-bit fingerprints at Hamming distance d can be told apart by nearest-neighbour
decoding as long as fewer than d/2 bits are decoded wrongly. The default `default_min_distance(K) = K // 4`
(32 for 128 bits) therefore tolerates up to K/8 bit errors (bit accuracy 0.875, below what trained decoders
reach) before two models could be confused. It costs almost nothing in capacity: two uniform random 128-bit
strings are closer than 32 with probability P[Bin(128, 1/2) <= 31] ~ 6e-9, so even with a million issued
fingerprints a fresh random draw is rejected (and redrawn) well under 1% of the time.
"""

from __future__ import annotations

import contextlib
import datetime
import getpass
import logging
import os
import secrets
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ganprint.core.errors import GanprintError
from ganprint.core.fingerprints import bits_to_hex, pack_bits, parse_bits, unpack_bits

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1


class RegistryError(GanprintError):
    """A registry file that cannot be used, or a fingerprint that cannot be issued."""


def default_min_distance(k: int) -> int:
    """The default minimum Hamming distance between issued K-bit fingerprints: K // 4 (see module docstring)."""
    return max(1, k // 4)



@dataclass
class Issued:
    """One row of the registry."""

    fp_id: int
    bits_hex: str
    bit_length: int
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
        return parse_bits(self.bits_hex, self.bit_length)

    def to_dict(self) -> dict:
        return asdict(self)


_COLUMNS = "fp_id, bits_hex, bit_length, who, notes, created, model_sha256, min_distance, issued_path, issued_sha256"


class Registry:
    """A fingerprint registry stored in the SQLite file `path` (created on first use)."""

    def __init__(self, path: str | os.PathLike, create: bool = True):
        self.path = Path(path)
        if not self.path.exists() and not create:
            raise RegistryError(f"registry {self.path} does not exist; issue a model first with `ganprint issue`")
        if self.path.exists() and self.path.is_dir():
            raise RegistryError(f"registry {self.path} is a directory; give a file path such as registry.sqlite")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._connect() as con:
                con.execute("PRAGMA journal_mode=WAL")
                con.execute("BEGIN IMMEDIATE")
                con.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                con.execute(
                    "CREATE TABLE IF NOT EXISTS fingerprints ("
                    " fp_id INTEGER PRIMARY KEY AUTOINCREMENT, bits_hex TEXT NOT NULL UNIQUE, packed BLOB NOT NULL,"
                    " bit_length INTEGER NOT NULL, who TEXT NOT NULL, notes TEXT NOT NULL, created TEXT NOT NULL,"
                    " model_sha256 TEXT NOT NULL, min_distance INTEGER, issued_path TEXT, issued_sha256 TEXT)")
                con.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                con.execute("COMMIT")
                row = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.DatabaseError as e:
            raise RegistryError(f"{self.path} is not a usable ganprint registry (SQLite said: {e})") from None
        if int(row[0]) > SCHEMA_VERSION:
            raise RegistryError(f"registry {self.path} has schema {row[0]}; this ganprint reads <= {SCHEMA_VERSION}")

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves; the long timeout waits for concurrent issuers.
        con = sqlite3.connect(str(self.path), timeout=120.0, isolation_level=None)
        try:
            con.execute("PRAGMA busy_timeout=120000")
            yield con
        finally:
            con.close()

    # --- reading -------------------------------------------------------------------------------

    def bit_length(self) -> int | None:
        """K of this registry (fixed by its first fingerprint), or None while empty."""
        with self._connect() as con:
            row = con.execute("SELECT value FROM meta WHERE key='bit_length'").fetchone()
        return int(row[0]) if row else None

    def __len__(self) -> int:
        with self._connect() as con:
            return int(con.execute("SELECT COUNT(*) FROM fingerprints").fetchone()[0])

    def list(self) -> list[Issued]:
        """Every issued fingerprint, in issue order."""
        with self._connect() as con:
            rows = con.execute(f"SELECT {_COLUMNS} FROM fingerprints ORDER BY fp_id").fetchall()
        return [Issued(*r) for r in rows]

    def get(self, fp_id: int) -> Issued:
        """The row with `fp_id`; RegistryError when absent."""
        with self._connect() as con:
            row = con.execute(f"SELECT {_COLUMNS} FROM fingerprints WHERE fp_id=?", (int(fp_id),)).fetchone()
        if row is None:
            raise RegistryError(f"registry {self.path} has no fingerprint with id {fp_id}")
        return Issued(*row)

    def packed(self) -> tuple[np.ndarray, np.ndarray]:
        """(fp_ids int64 [N], packed bits uint8 [N, ceil(K/8)]) of every issued fingerprint, for Hamming search."""
        with self._connect() as con:
            return _load_packed(con, self.bit_length() or 0)

    # --- writing -------------------------------------------------------------------------------

    def issue(self, bits: torch.Tensor | str | None = None, *, bit_length: int | None = None, who: str | None = None,
              notes: str = "", model_sha256: str = "", min_distance: int | None = None,
              max_tries: int = 1000) -> Issued:
        """Issue one fingerprint in a single write transaction and return its row.

        Args:
            bits: a given fingerprint (0/1 tensor [K], 0/1 string or 0x-hex); None draws fresh random bits
                from the OS CSPRNG (`secrets`).
            bit_length: K; required for random bits unless the registry already has fingerprints.
            min_distance: refuse (given bits) or redraw (random bits) anything closer than this to an issued
                fingerprint; default `default_min_distance(K)`.
        Raises RegistryError when the fingerprint is a duplicate / too close, or K mismatches the registry.
        """
        from ganprint.core.hamming import hamming_to_all

        if isinstance(bits, str):
            bits = parse_bits(bits, bit_length)
        if bits is not None:
            bits = torch.as_tensor(bits).float().reshape(-1)
            if bit_length is not None and bits.numel() != bit_length:
                raise RegistryError(f"--fingerprint has {bits.numel()} bits but the model expects {bit_length}")
            bit_length = bits.numel()
        who = who if who is not None else _whoami()
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")  # the write lock: nobody else issues until COMMIT
            try:
                row = con.execute("SELECT value FROM meta WHERE key='bit_length'").fetchone()
                k_reg = int(row[0]) if row else None
                k = bit_length if bit_length is not None else k_reg
                if k is None:
                    raise RegistryError("the registry is empty, so the fingerprint length must be given (bit_length)")
                if k_reg is not None and k_reg != k:
                    raise RegistryError(f"registry {self.path} holds {k_reg}-bit fingerprints but this model uses "
                                        f"{k}; use a separate --registry per fingerprint length")
                dmin = default_min_distance(k) if min_distance is None else int(min_distance)
                if not 0 <= dmin <= k:
                    raise RegistryError(f"--min-distance must be in [0, {k}], got {dmin}")
                _, db = _load_packed(con, k)
                for attempt in range(max_tries if bits is None else 1):
                    cand = bits if bits is not None else _random_bits(k)
                    packed = pack_bits(cand[None])  # [1, ceil(K/8)]
                    nearest = int(hamming_to_all(packed, db).min()) if len(db) else None
                    if nearest is None or (nearest >= dmin and nearest > 0):
                        break
                    if bits is not None:
                        what = "is already issued" if nearest == 0 else f"is at Hamming distance {nearest}"
                        raise RegistryError(f"fingerprint {bits_to_hex(cand)} {what} from an issued fingerprint "
                                            f"(minimum {dmin}); choose another one or omit --fingerprint")
                else:
                    raise RegistryError(f"no random {k}-bit fingerprint at distance >= {dmin} from the {len(db)} "
                                        f"issued ones after {max_tries} draws; lower --min-distance")
                created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
                cur = con.execute(
                    "INSERT INTO fingerprints (bits_hex, packed, bit_length, who, notes, created, model_sha256,"
                    " min_distance) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (bits_to_hex(cand), packed[0].tobytes(), k, who, notes, created, model_sha256, nearest))
                if k_reg is None:
                    con.execute("INSERT INTO meta VALUES ('bit_length', ?)", (str(k),))
                fp_id = int(cur.lastrowid)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        rec = Issued(fp_id, bits_to_hex(cand), k, who, notes, created, model_sha256, nearest)
        log.info("issued fingerprint #%d %s (nearest earlier: %s bits away)", fp_id, rec.bits_hex, nearest)
        return rec

    def set_issued_file(self, fp_id: int, path: str | os.PathLike, sha256: str) -> None:
        """Record the folded generator written for `fp_id`."""
        with self._connect() as con:
            con.execute("UPDATE fingerprints SET issued_path=?, issued_sha256=? WHERE fp_id=?",
                        (str(Path(path).resolve()), sha256, int(fp_id)))


def _load_packed(con: sqlite3.Connection, k: int) -> tuple[np.ndarray, np.ndarray]:
    rows = con.execute("SELECT fp_id, packed FROM fingerprints ORDER BY fp_id").fetchall()
    nbytes = (k + 7) // 8
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    packed = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.uint8).reshape(len(rows), nbytes)
    return ids, packed


def _random_bits(k: int) -> torch.Tensor:
    raw = np.frombuffer(secrets.token_bytes((k + 7) // 8), dtype=np.uint8)[None]  # [1, ceil(K/8)]
    return torch.from_numpy(unpack_bits(raw, k)[0].astype(np.float32))


def _whoami() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return "unknown"
