"""Bounds of the numbers a user gives: finite, in range, and small enough that what they size can be allocated.

One `Bound` per kind of number. The CLI's click types (`ganprint.cli.params`) and the configs' `validate()` check
the same Bound objects, so a flag and the Python API refuse the same values with the same words. The upper limits
are sanity limits, far above any real use, that keep a typo (a `batch_size` of 1000000000) from allocating without
end or hanging before the first step. Errors name the field in backticks; the CLI writes its flag there.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

from ganprint.core.errors import GanprintError, field


class BoundError(GanprintError):
    """A number out of its bound (NaN, infinite, too small, too large, or not a number of the right kind)."""


@dataclass(frozen=True)
class Bound:
    """The closed (or, with `lo_open` / `hi_open`, open) interval [lo, hi] of a finite number; `integer`: whole."""

    lo: float
    hi: float
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False

    def describe(self) -> str:
        """E.g. 'a number in (0, 1]' or 'a whole number in [1, 65536]'."""
        left, right = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
        kind = "a whole number" if self.integer else "a finite number"
        return f"{kind} in {left}{_fmt(self.lo)}, {_fmt(self.hi)}{right}"

    def problem(self, value: Any) -> str | None:
        """None when `value` lies in the bound, else what is wrong ('must be ..., got ...')."""
        want = f"must be {self.describe()}, got {value!r}"
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return want
        if self.integer and not isinstance(value, numbers.Integral):
            return want
        if not self.integer and not math.isfinite(float(value)):
            return want
        too_low = value <= self.lo if self.lo_open else value < self.lo
        too_high = value >= self.hi if self.hi_open else value > self.hi
        return want if too_low or too_high else None

    def check(self, value: Any, name: str) -> Any:
        """Return `value` when it lies in the bound; else raise BoundError naming the field `name` (in backticks,
        see `errors.field`)."""
        why = self.problem(value)
        if why is not None:
            raise BoundError(f"{field(name)} {why}")
        return value

    def parse(self, text: str) -> int | float:
        """The number written in `text` (as a flag gives it), not yet checked; ValueError when it is no number."""
        text = str(text).strip()
        if not self.integer:
            return float(text)
        try:
            return int(text)
        except ValueError:
            f = float(text)  # "1e3" is a whole number too; "2.5" and "inf" are not
            if not math.isfinite(f) or f != int(f):
                raise
            return int(f)


def _fmt(x: float) -> str:
    if isinstance(x, int) or float(x).is_integer():
        n = int(x)
        if n >= 2**32 and (n + 1) & n == 0:
            return f"2^{n.bit_length()}-1"
        return str(n)
    return f"{x:g}"


def check_fields(obj: Any, table: dict[str, Bound | tuple[Any, Bound]]) -> None:
    """Check the fields of a config `obj` named in `table` ({field: Bound}).

    None is refused unless the Bound is `optional(...)`. The error names the field: '`lr` must be a finite number
    in (0, 1], got inf' (the CLI shows the flag). A (label, Bound) pair, the older form, is read as its Bound.
    """
    for name, bound in table.items():
        bound = bound[1] if isinstance(bound, tuple) else bound
        value = getattr(obj, name)
        if value is None and isinstance(bound, OptionalBound):
            continue
        bound.check(value, name)


@dataclass(frozen=True)
class OptionalBound(Bound):
    """A Bound that also accepts None (a config field whose None means 'not set' or 'derived')."""


def optional(b: Bound) -> OptionalBound:
    """The same bound, accepting None as well."""
    return OptionalBound(b.lo, b.hi, b.lo_open, b.hi_open, b.integer)


# Shared bounds. Resolutions and batch sizes are bounded so that one batch of images stays allocatable; counts of
# images, steps and seeds so that lists of them stay small; lengths in kimg so that image counts fit in an int64.
SEED = Bound(0, 2**63 - 1, integer=True)
ROW_ID = Bound(1, 2**63 - 1, integer=True)  # a registry row (SQLite INTEGER, PostgreSQL BIGINT)
SEED32 = Bound(0, 2**32 - 1, integer=True)  # numpy's RandomState (the original dataset tool's shuffle)
BATCH = Bound(1, 65536, integer=True)
RESOLUTION = Bound(1, 4096, integer=True)
IMAGES = Bound(1, 10**8, integer=True)
STEPS = Bound(1, 10**9, integer=True)
STEPS0 = Bound(0, 10**9, integer=True)  # 0 = none / off
KIMG = Bound(0, 1e9)
KIMG_POS = Bound(0, 1e9, lo_open=True)
LR = Bound(0, 1, lo_open=True)
FRACTION = Bound(0, 1)
GATE_ACC = Bound(0, 2)  # a bit accuracy at which a gate opens; above 1 it never opens by accuracy
FPR = Bound(0, 1, lo_open=True, hi_open=True)
WEIGHT = Bound(0, 1e6)
WEIGHT_POS = Bound(0, 1e6, lo_open=True)
MINUTES = Bound(0, 1e6)
SECONDS_POS = Bound(0, 86400, lo_open=True)
SKEW = Bound(0, 100, lo_open=True)
RATE = Bound(0, 1, lo_open=True)  # a controller gain per step
WORKERS = Bound(0, 256, integer=True)
PROCESSES = Bound(1, 256, integer=True)
BITS = Bound(1, 4096, integer=True)
DISTANCE = Bound(0, 4096, integer=True)
KEYS = Bound(1, 10**15, integer=True)
PORT = Bound(0, 65535, integer=True)  # 0: a free port that the system picks
TRUNCATION = Bound(-2, 2)  # StyleGAN truncation psi: 1 = none, 0 = the mean image; beyond +-2 only saturates
PSNR = Bound(0, 100, lo_open=True)  # dB of 8-bit images
TILES = Bound(1, 8, integer=True)  # tiles per side of the centre square (inference.fullsize.MAX_TILES)
STRENGTH = Bound(0, 10)  # a fingerprint residual's scale: 0 leaves the image as it is, 1 the model's own
SAMPLER_STEPS = Bound(1, 10000, integer=True)
MAX_SEEDS = 1_000_000  # seeds in one list of `seeds`
