"""The click types of every numeric flag: each checks a `ganprint.core.bounds.Bound` while click parses the command
line, so a NaN, an infinity or an out-of-range number is a usage error (exit 2, one line naming the flag) before any
work starts. The library's configs check the same bounds for callers of the Python API.

`tests/cli/test_params.py` walks every command and fails on a numeric flag that is not one of these types.
"""

from __future__ import annotations

import click

from ganprint.core import bounds
from ganprint.core.bounds import Bound
from ganprint.core.errors import GanprintError
from ganprint.core.runtime import OLD_PRECISION_NAMES
from ganprint.core.seeds import parse_seeds


class Number(click.ParamType):
    """A finite int or float within `bound`."""

    def __init__(self, bound: Bound):
        self.bound = bound
        self.name = "integer" if bound.integer else "float"

    def convert(self, value, param, ctx):
        if isinstance(value, str):
            try:
                value = self.bound.parse(value)
            except ValueError:
                self.fail(f"{value!r} is not {self.bound.describe()}", param, ctx)
        why = self.bound.problem(value)
        if why is not None:
            self.fail(why, param, ctx)
        return value

    def get_metavar(self, param, ctx=None):
        return "INTEGER" if self.bound.integer else "FLOAT"

    def __repr__(self) -> str:
        return f"Number({self.bound.describe()})"


def Int(lo: int, hi: int) -> Number:  # noqa: N802 - reads like a type in option declarations
    """A whole number in [lo, hi]."""
    return Number(Bound(lo, hi, integer=True))


def Float(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> Number:  # noqa: N802
    """A finite number in [lo, hi] (open at either end on request)."""
    return Number(Bound(lo, hi, lo_open, hi_open))


SEED = Number(bounds.SEED)
ROW_ID = Number(bounds.ROW_ID)
SEED32 = Number(bounds.SEED32)
BATCH = Number(bounds.BATCH)
RESOLUTION = Number(bounds.RESOLUTION)
IMAGES = Number(bounds.IMAGES)
STEPS = Number(bounds.STEPS)
STEPS0 = Number(bounds.STEPS0)
KIMG = Number(bounds.KIMG)
KIMG_POS = Number(bounds.KIMG_POS)
LR = Number(bounds.LR)
FRACTION = Number(bounds.FRACTION)
GATE_ACC = Number(bounds.GATE_ACC)
FPR = Number(bounds.FPR)
WEIGHT = Number(bounds.WEIGHT)
WEIGHT_POS = Number(bounds.WEIGHT_POS)
MINUTES = Number(bounds.MINUTES)
SKEW = Number(bounds.SKEW)
WORKERS = Number(bounds.WORKERS)
PROCESSES = Number(bounds.PROCESSES)
BITS = Number(bounds.BITS)
DISTANCE = Number(bounds.DISTANCE)
KEYS = Number(bounds.KEYS)
PORT = Number(bounds.PORT)
PSNR = Number(bounds.PSNR)
STRENGTH = Number(bounds.STRENGTH)
TILES = Number(bounds.TILES)
NORM_GROUPS = Number(Bound(1, 4096, integer=True))
RATE = Number(bounds.RATE)
TRUNCATION = Number(bounds.TRUNCATION)
SAMPLER_STEPS = Number(bounds.SAMPLER_STEPS)
MATCHES = Number(bounds.DISTANCE)  # matching bits: 0 to the longest fingerprint


class Seeds(click.ParamType):
    """`--seeds` ("0-63", "0,5,7-9") as a list of ints, at most `bounds.MAX_SEEDS` of them, each < 2^63."""

    name = "seeds"

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            return parse_seeds(value, name="")
        except GanprintError as e:
            self.fail(str(e).strip(), param, ctx)


class Jobs(click.ParamType):
    """`--jobs`: 'auto' or a number of processes in [1, 256]."""

    name = "jobs"

    def convert(self, value, param, ctx):
        if value is None or str(value).strip().lower() == "auto":
            return "auto"
        return PROCESSES.convert(value, param, ctx)


class Precision(click.Choice):
    """`--precision`: one of `choices` (fp64, fp32, bf16, auto: one spelling for every command); generate's old
    spellings (float64, float32) still work in this release, with a warning."""

    def __init__(self, *choices: str):
        super().__init__(list(choices))

    def convert(self, value, param, ctx):
        new = OLD_PRECISION_NAMES.get(value) if isinstance(value, str) else None
        if new in self.choices:
            flag = param.opts[0] if param is not None else "--precision"
            click.echo(f"Warning: {flag} {value} is the old name of {new}; it still works in this release, use {new}",
                       err=True)
            value = new
        return super().convert(value, param, ctx)
