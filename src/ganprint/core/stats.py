"""Bit accuracy and the statistics of detection (one-sided binomial tests).

Under the null hypothesis "this image carries no fingerprint", each decoded bit matches the reference
independently with probability 1/2, so the number of matching bits X ~ Binomial(K, 1/2). The papers'
p-values (Yu et al., ICCV 2021) are P[X >= matches]; a detection at false-positive rate `fpr` needs the
smallest m with P[X >= m] <= fpr. With N candidate fingerprints (attribution), a Bonferroni correction
uses fpr / N.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from ganprint.core.errors import GanprintError, field

if TYPE_CHECKING:  # the functions below take tensors by their methods: scoring itself runs without torch
    import torch


def bit_accuracy(bits: torch.Tensor, ref_bits: torch.Tensor) -> torch.Tensor:
    """Per-row share of matching bits: [N, K] 0/1 bits vs [N, K] or [K] 0/1 reference -> [N].

    Decode logits first with `decode_bits`.
    """
    return ((bits > 0.5) == (ref_bits > 0.5)).float().mean(dim=-1)


def decode_bits(logits: torch.Tensor) -> torch.Tensor:
    """Logits [N, K] -> 0/1 float bits [N, K] (a bit reads 1 where its logit is > 0)."""
    return (logits > 0).float()


@lru_cache(maxsize=16)
def _tail_table(k: int) -> tuple[np.ndarray, np.ndarray]:
    """(P[X >= m], log10 P[X >= m]) for m = 0 .. k + 1, X ~ Bin(k, 1/2), from exact integer tail sums.

    With p = 1/2 the tail is (sum of C(k, j), j >= m) / 2^k exactly, summed in Python ints; the
    log10 of that int stays finite where the float p-value underflows. Avoids scipy.stats, whose
    import is slow (see `import ganprint.api` start-up).
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    tails = [0] * (k + 2)
    c = 1  # C(k, m), walked down from m = k
    for m in range(k, -1, -1):
        tails[m] = tails[m + 1] + c
        c = c * m // (k - m + 1)
    # keep the 60 leading bits of each tail: a float holds 53, and the shift is exact in the exponent
    shifts = [max(t.bit_length() - 60, 0) for t in tails]
    p = np.array([math.ldexp(float(t >> s), s - k) for t, s in zip(tails, shifts)])
    log10p = np.array([math.log10(t >> s) + (s - k) * math.log10(2) if t else -math.inf
                       for t, s in zip(tails, shifts)])
    return p, log10p


def _lookup(table: np.ndarray, matches: int | np.ndarray, k: int) -> np.ndarray | float:
    m = np.clip(np.asarray(matches).astype(np.int64), 0, k + 1)
    out = table[m]
    return float(out) if out.ndim == 0 else out


def p_value(matches: int | np.ndarray, k: int) -> np.ndarray | float:
    """One-sided binomial tail P[X >= matches], X ~ Bin(k, 1/2), to within an ulp for any k."""
    return _lookup(_tail_table(int(k))[0], matches, k)


def log10_p_value(matches: int | np.ndarray, k: int) -> np.ndarray | float:
    """log10 of `p_value`, finite even where the p-value underflows double precision (-inf only for
    matches > k, where the p-value is exactly 0)."""
    return _lookup(_tail_table(int(k))[1], matches, k)


def match_threshold(k: int, fpr: float, n_keys: int = 1) -> int:
    """Smallest number of matching bits m with P[X >= m] <= fpr / n_keys; k + 1 if no m qualifies."""
    if not 0 < fpr < 1:
        raise ValueError(f"fpr must be in (0, 1), got {fpr}")
    alpha = fpr / max(1, n_keys)
    sf = p_value(np.arange(k + 1), k)  # sf[m] = P[X >= m], decreasing in m
    ok = np.nonzero(sf <= alpha)[0]
    return int(ok[0]) if ok.size else k + 1


def smallest_usable_fpr(k: int, n_keys: int = 1) -> float:
    """The smallest `fpr` at which a decision can still be positive: all K bits matching has P = 2**-K, so the
    threshold stays <= K while fpr / n_keys >= 2**-K (0.0 where 2**-K underflows double precision)."""
    return math.ldexp(float(max(1, n_keys)), -int(k))


def usable_threshold(k: int, fpr: float, n_keys: int = 1, name: str = "fpr") -> int:
    """`match_threshold`, refusing an `fpr` outside (0, 1) or so small that no image could ever be detected (the
    threshold would exceed K bits) with a GanprintError that names the field `name` and the smallest usable value."""
    label = field(name)
    if not 0 < fpr < 1:
        raise GanprintError(f"{label} must be in (0, 1), got {fpr}")
    m = match_threshold(k, fpr, n_keys)
    if m > k:
        keys = f" and {n_keys} keys" if n_keys > 1 else ""
        raise GanprintError(f"{label} {fpr:g} is too small for {k} bits{keys}: no image could ever be detected; "
                            f"the smallest usable {label} is {smallest_usable_fpr(k, n_keys):.3g}")
    return m


def capacity(k: int, acc: float) -> float:
    """Binary-symmetric-channel capacity K * (1 - H(acc)) in bits (VideoSeal's comparison figure)."""
    acc = min(max(acc, 0.0), 1.0)
    if acc in (0.0, 1.0):
        return float(k)
    h = -acc * math.log2(acc) - (1 - acc) * math.log2(1 - acc)
    return float(k * (1 - h))


def count_matches(bits: torch.Tensor, ref_bits: torch.Tensor) -> torch.Tensor:
    """Per-row number of matching bits: [N, K] 0/1 vs [N, K] or [K] 0/1 reference -> [N] int64."""
    return ((bits > 0.5) == (ref_bits > 0.5)).sum(dim=-1)


def detection_rate(matches: np.ndarray | torch.Tensor, k: int, fpr: float, n_keys: int = 1) -> float:
    """Analytic TPR at `fpr`: the share of rows whose match count reaches `match_threshold(k, fpr, n_keys)`."""
    m = np.asarray(matches.cpu() if hasattr(matches, "cpu") else matches)
    if m.size == 0:
        return float("nan")
    return float((m >= match_threshold(k, fpr, n_keys)).mean())
