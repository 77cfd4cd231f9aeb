"""Decoded bits scored into rows: against one reference fingerprint per image (detection), or against the nearest
of N issued fingerprints (attribution).

Detection: the matches m of K bits follow Bin(K, 1/2) for an image without the fingerprint, so p = P[X >= m] and
the image is detected when m reaches the threshold of the false-positive rate (`core.stats.match_threshold`).
Attribution tests the nearest of N fingerprints, so its p-value is Bonferroni-corrected (min(1, N p)) and an image
is attributed only when m >= `match_threshold(K, fpr, N)`; otherwise it is `unknown`. The nearest fingerprint is
found exactly, by XOR and popcount over packed bits (`core.hamming`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ganprint.core.errors import GanprintError
from ganprint.core.fingerprints import as_array, bits_to_hex, pack_bits
from ganprint.core.hamming import HammingIndex
from ganprint.core.stats import log10_p_value, match_threshold, p_value

if TYPE_CHECKING:  # rows are scored in numpy: the ONNX verifier scores them without torch
    import torch

UNKNOWN = "unknown"


def score_bits(bits: torch.Tensor | np.ndarray, reference: torch.Tensor | np.ndarray, threshold: int) -> list[dict]:
    """Decoded bits [N, K] (0/1) against reference bits [N, K] or [K] -> one detection row per image:
    bit_accuracy, matches, p_value, log10_p and detected (matches >= `threshold`). Tensors or arrays."""
    k = int(bits.shape[-1])
    m = ((as_array(bits) > 0.5) == (as_array(reference) > 0.5)).sum(axis=-1)  # [N] int, as `count_matches`
    p, lp = np.atleast_1d(p_value(m, k)).tolist(), np.atleast_1d(log10_p_value(m, k)).tolist()
    return [{"bit_accuracy": mi / k, "matches": mi, "p_value": pi, "log10_p": li, "detected": mi >= threshold}
            for mi, pi, li in zip(m.tolist(), p, lp)]


def attribute_bits(decoded: torch.Tensor | np.ndarray, fp_ids: np.ndarray, packed: np.ndarray, k: int,
                   fpr: float = 1e-6, index: HammingIndex | None = None) -> list[dict]:
    """Attribute decoded bits [Q, K] (0/1) to the nearest of N issued fingerprints (`fp_ids` [N], `packed` [N, B]).

    Returns one row per query: nearest fp_id, hamming, matches, bit_accuracy, log10 p-values (raw and
    Bonferroni-corrected for N), and `attributed` = the fp_id, or "unknown" when the corrected p-value > `fpr`.
    """
    n = len(fp_ids)
    if n == 0:
        raise GanprintError("the registry is empty: nothing to attribute to; issue models with `ganprint issue`")
    if not 0 < fpr < 1:
        raise GanprintError(f"`fpr` must be in (0, 1), got {fpr}")
    q = pack_bits(decoded)  # [Q, B]
    rows, dist = (index or HammingIndex(packed)).search(q)
    threshold = match_threshold(k, fpr, n)
    matches = k - dist
    lp = np.atleast_1d(log10_p_value(matches, k))
    lpc = np.minimum(0.0, lp + math.log10(n))  # Bonferroni: min(1, N p)
    out = []
    for i in range(len(q)):
        fp = int(fp_ids[rows[i]])
        out.append({
            "decoded": bits_to_hex(decoded[i]), "nearest_fp_id": fp, "hamming": int(dist[i]),
            "matches": int(matches[i]), "bit_accuracy": float(matches[i]) / k,
            "log10_p": float(lp[i]), "log10_p_corrected": float(lpc[i]), "p_value_corrected": float(10 ** lpc[i]),
            "attributed": fp if bool(matches[i] >= threshold) else UNKNOWN,
        })
    return out
