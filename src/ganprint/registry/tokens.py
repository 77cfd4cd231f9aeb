"""Service tokens: whom a token is for, what it may do (scopes), until when, and whether it was revoked.

A token is shown once, when it is created; the registry keeps only its SHA-256, so a copy of the registry (or of its
export) holds no usable token.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import asdict, dataclass

from ganprint.registry.backends.connection import Connection
from ganprint.registry.base import Store, timestamp
from ganprint.registry.errors import RegistryInputError, RegistryNotFound, check_id, check_text
from ganprint.registry.schema import TOKEN_FIELDS, TOKEN_TYPES

log = logging.getLogger(__name__)

# What a token may do. download:own downloads the models issued to the token's own name (its holder); admin
# grants every scope.
SCOPES = ("issue", "download:own", "download:all", "metrics", "admin")
LEGACY_SCOPES = ("issue", "download:all")  # what every token could do before schema 3 (migrated tokens keep it)


@dataclass
class Token:
    """A token as stored (never its secret): whom it is for, what it may do, until when."""

    token_id: int
    name: str
    scopes: tuple[str, ...]
    created: str
    expires: str | None = None  # ISO 8601, UTC; None: never
    revoked: str | None = None  # when it was revoked; None: it was not

    def allows(self, scope: str) -> bool:
        """Whether the scopes grant `scope` (admin grants all; download:all includes download:own)."""
        return "admin" in self.scopes or scope in self.scopes or (scope == "download:own"
                                                                    and "download:all" in self.scopes)

    def refusal(self, now: datetime.datetime | None = None) -> str | None:
        """Why the token cannot be used at `now` (revoked, expired), or None when it can."""
        if self.revoked:
            return f"this token was revoked on {self.revoked}"
        now = now or datetime.datetime.now(datetime.timezone.utc)
        if self.expires and datetime.datetime.fromisoformat(self.expires) <= now:
            return f"this token expired on {self.expires}"
        return None

    def to_dict(self) -> dict:
        return {**asdict(self), "scopes": list(self.scopes)}


def parse_scopes(values) -> tuple[str, ...]:
    """Scope names (strings, each may hold several separated by commas or spaces) -> a tuple in SCOPES order."""
    texts = [values] if isinstance(values, str) else list(values)
    given = {v for text in texts for v in str(text).replace(",", " ").split()}
    unknown = sorted(given - set(SCOPES))
    if unknown or not given:
        raise RegistryInputError(f"`scopes` must be one or more of {', '.join(SCOPES)}; got "
                                 f"{', '.join(unknown) if unknown else 'none'}")
    return tuple(s for s in SCOPES if s in given)


_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_expiry(text: str | None, now: datetime.datetime | None = None) -> str | None:
    """`expires`: None/"never" -> None; "90m", "12h", "30d", "2w" from now, or an ISO date / date-time (UTC unless
    it says otherwise) -> ISO 8601 UTC. RegistryInputError for anything else or a time not in the future."""
    if text is None or str(text).strip().lower() in ("", "never"):
        return None
    now = now or datetime.datetime.now(datetime.timezone.utc)
    t = str(text).strip()
    try:
        if t[:-1].isdigit() and t[-1:].lower() in _UNITS:
            when = now + datetime.timedelta(seconds=int(t[:-1]) * _UNITS[t[-1].lower()])
        else:
            when = datetime.datetime.fromisoformat(t)
            when = when.replace(tzinfo=datetime.timezone.utc) if when.tzinfo is None else when
    except (ValueError, OverflowError):
        raise RegistryInputError(f"`expires` {text!r}: give a duration such as 90m, 12h, 30d or 2w, an ISO date "
                                 f"such as 2027-01-31, or never") from None
    if when <= now:
        raise RegistryInputError(f"`expires` {text!r} is not in the future")
    return when.astimezone(datetime.timezone.utc).isoformat(timespec="seconds")


class Tokens(Store):
    """The token operations of a registry (see `store.Registry`)."""

    def create_token(self, name: str, scopes=LEGACY_SCOPES, expires: str | None = None) -> str:
        """A new token for `name` with `scopes` (see SCOPES), valid until `expires` (parse_expiry: "30d", an ISO
        date, None for never); only its SHA-256 is stored, so this is the one time it is seen."""
        check_text("`name`", name, 200, min_len=1)
        scopes, expires = parse_scopes(scopes), parse_expiry(expires)
        token = "gpt_" + secrets.token_urlsafe(32)
        with self._write() as con:
            con.execute("INSERT INTO tokens (name, token_hash, created, scopes, expires) VALUES (?, ?, ?, ?, ?)",
                        (name, token_hash(token), timestamp(), " ".join(scopes), expires))
        log.info("created a token for %s (scopes %s, expires %s)", name, " ".join(scopes), expires or "never")
        return token

    def token(self, token: str) -> Token | None:
        """The stored record of a token (revoked and expired ones included: see Token.refusal), None if unknown."""
        digest = token_hash(token)
        with self._read() as con:
            rows = self._token_rows(con, "WHERE token_hash=?", (digest,))
        return rows[0][0] if rows and hmac.compare_digest(rows[0][1], digest) else None

    def token_owner(self, token: str) -> str | None:
        """The name a token was created for while it is usable (not revoked or expired), else None."""
        rec = self.token(token)
        return rec.name if rec is not None and rec.refusal() is None else None

    def tokens(self) -> list[Token]:
        """Every token ever created (never the secrets), in creation order."""
        with self._read() as con:
            return [t for t, _ in self._token_rows(con)]

    def revoke_token(self, token_id: int) -> Token:
        """Revoke a token by its id (`token list`); revoking it again keeps the first date. RegistryNotFound if none."""
        token_id = check_id(token_id, "token id")
        with self._write() as con:
            con.execute("UPDATE tokens SET revoked=? WHERE token_id=? AND revoked IS NULL",
                        (timestamp(), token_id))
            rows = self._token_rows(con, "WHERE token_id=?", (token_id,))
        if not rows:
            raise RegistryNotFound(f"registry {self._db.where} has no token with id {token_id} (see `ganprint token "
                                   f"list`)")
        log.info("revoked token #%d of %s", token_id, rows[0][0].name)
        return rows[0][0]

    def _token_rows(self, con: Connection, where: str = "", params: tuple = ()) -> list[tuple[Token, str]]:
        # A registry still at schema 2 (read without migrating) has no scope columns: its tokens are legacy ones.
        if not self._has(con, "tokens"):
            return []
        if self._version(con) >= 3:
            rows = con.execute(f"SELECT {', '.join(TOKEN_FIELDS)} FROM tokens {where} ORDER BY token_id",
                               params).fetchall()
        else:
            rows = [(i, n, " ".join(LEGACY_SCOPES), c, None, None, h) for i, n, c, h in con.execute(
                f"SELECT token_id, name, created, token_hash FROM tokens {where} ORDER BY token_id", params)]
        rows = [self._checked("tokens", TOKEN_FIELDS, TOKEN_TYPES, tuple(r)) for r in rows]
        return [(Token(r[0], r[1], tuple(r[2].split()), r[3], r[4], r[5]), r[6]) for r in rows]


def token_hash(token: str) -> str:
    """What the registry stores of a token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(registry_url: str | os.PathLike, name: str, scopes=LEGACY_SCOPES, expires: str | None = None) -> str:
    """A new token for `name` in the registry (created if new) with `scopes`, until `expires`; only its hash is
    stored."""
    return Tokens(registry_url).create_token(name, scopes, expires)
