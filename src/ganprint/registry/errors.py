"""What the registry refuses, as types: a caller (the service, the CLI) decides by the type, never by the message.

`RegistryError` is a registry that cannot be used (unreachable, damaged, a schema from a newer ganprint): the
service answers 503 and keeps the reason in its log. Its subclasses are answers about the request itself:
`RegistryInputError` (a value the registry refuses, 400), `RegistryNotFound` (no such row, 404),
`RegistryConflict` (the request collides with what is stored: a fingerprint already issued or too close, a data-set
name taken, 409) and `RegistryExhausted` (a conflict: no fresh fingerprint left at the minimum distance).
`CommitUnknown` is the one outcome nobody can tell yet (see `ganprint.registry.issued`).
"""

from __future__ import annotations

import operator

from ganprint.core.errors import GanprintError


class RegistryError(GanprintError):
    """A registry that cannot be used, or a fingerprint that cannot be issued."""


class RegistryInputError(RegistryError):
    """A value the registry refuses to store or look up: an id outside int64, text with NUL or a lone surrogate."""


class RegistryNotFound(RegistryError):
    """No row with the id asked for."""


class RegistryConflict(RegistryError):
    """A request that collides with a stored row: a fingerprint issued already or closer than the minimum distance,
    a data-set name registered with another fingerprint, a registry that is not empty where it must be."""


class RegistryExhausted(RegistryConflict):
    """No fresh fingerprint at the minimum distance from the issued ones."""


class CommitUnknown(RegistryError):
    """The connection was lost while COMMIT of an issue was under way and the registry could not be asked afterwards
    whether it committed: the caller keeps what it wrote for the row, and a repair decides later."""


class DumpError(RegistryInputError):
    """A registry export that cannot be imported as it is."""


INT64 = (-(2**63), 2**63 - 1)  # the ids of both backends are 64-bit integers


def check_id(value, what: str = "id") -> int:
    """`value` as a registry id (an integer in int64); RegistryInputError otherwise."""
    try:
        n = operator.index(value)
    except TypeError:
        raise RegistryInputError(f"{what} must be an integer, got {value!r}") from None
    if isinstance(value, bool) or not INT64[0] <= n <= INT64[1]:
        raise RegistryInputError(f"{what} {value!r} is not a 64-bit integer id")
    return n


def check_text(what: str, value: str, max_len: int, min_len: int = 0, lines: bool = False) -> str:
    """`value` if it is storable text: valid UTF-8 (no lone surrogates), no NUL or other control characters
    (tabs and newlines only where `lines`), `min_len` to `max_len` characters; RegistryInputError otherwise."""
    if not isinstance(value, str):
        raise RegistryInputError(f"{what} must be text, got {type(value).__name__}")
    if not min_len <= len(value) <= max_len:
        raise RegistryInputError(f"{what} must be {min_len} to {max_len} characters, got {len(value)}")
    allowed = "\t\n\r" if lines else ""
    for ch in value:
        if (ch < " " or "\x7f" <= ch <= "\x9f") and ch not in allowed:
            raise RegistryInputError(f"{what} contains the control character U+{ord(ch):04X}")
        if "\ud800" <= ch <= "\udfff":
            raise RegistryInputError(f"{what} contains a lone surrogate U+{ord(ch):04X} (not valid UTF-8)")
    return value
