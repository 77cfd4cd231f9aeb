"""Seeds: stable derivation from ints, and the parser of seed lists ("0-63", "0,5,7-9")."""

from __future__ import annotations

import re

import numpy as np

from ganprint.core.bounds import MAX_SEEDS, SEED
from ganprint.core.errors import GanprintError, excerpt, field


def derive_seed(*ints: int) -> int:
    """A stable 63-bit seed from a tuple of ints (never Python's per-process `hash` of strings)."""
    ss = np.random.SeedSequence([int(i) & 0xFFFFFFFF for i in ints])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> 1)


_SEED_MAX = 2**63 - 1


def parse_seeds(text: str, name: str = "seeds") -> list[int]:
    """Parse "0-63", "0,5,7-9" (inclusive ranges, order kept, duplicates removed) into a list of ints >= 0.

    Raises GanprintError naming the field `name` ("" names none) on malformed input, a seed >= 2^63, or more than
    `MAX_SEEDS` seeds in all (counted before any list is built, so a huge request costs no memory).
    """
    label = field(name)
    where = f"{label} {excerpt(text)}".strip()
    if text is None or not str(text).strip():
        raise GanprintError(f"{label} is empty; give e.g. 0-63 or 0,5,7-9".strip())
    spans = []
    for part in str(text).replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise GanprintError(f"{where}: {part!r} is not a seed or an a-b range of non-negative integers")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        if b < a:
            raise GanprintError(f"{where}: range {part!r} runs backwards; write {b}-{a}")
        if b > _SEED_MAX:
            raise GanprintError(f"{where}: seeds must be < 2^63")
        spans.append((a, b))
    if sum(b - a + 1 for a, b in spans) > MAX_SEEDS:
        raise GanprintError(f"{where} holds more than {MAX_SEEDS:,} seeds; generate in several runs")
    out: list[int] = []
    seen: set[int] = set()
    for a, b in spans:
        for s in range(a, b + 1):
            if s not in seen:
                seen.add(s)
                out.append(s)
    return out


def seeds_text(seeds: list[int]) -> str:
    """The shortest `parse_seeds` text of `seeds`, in their order ([0, 1, 2, 5] -> "0-2,5"): a resume identity that
    stays small for millions of seeds."""
    parts: list[str] = []
    i = 0
    while i < len(seeds):
        j = i
        while j + 1 < len(seeds) and seeds[j + 1] == seeds[j] + 1:
            j += 1
        parts.append(str(seeds[i]) if i == j else f"{seeds[i]}-{seeds[j]}")
        i = j + 1
    return ",".join(parts)


def check_seed_list(seeds, name: str = "seeds") -> list[int]:
    """A list of seeds given to the Python API: ints in [0, 2^63), at most `MAX_SEEDS`; GanprintError otherwise."""
    seeds, label = list(seeds), field(name)
    if len(seeds) > MAX_SEEDS:
        raise GanprintError(f"{label} holds {len(seeds):,} seeds, more than {MAX_SEEDS:,}; generate in several runs")
    for s in seeds:
        SEED.check(s, f"every seed of {label}")
    return [int(s) for s in seeds]
