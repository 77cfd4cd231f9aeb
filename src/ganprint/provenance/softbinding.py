"""ganprint's fingerprints as C2PA soft bindings: algorithm identifiers, binding values and the decision rule.

Two algorithms, one per fingerprinting method (docs/service.md, "C2PA soft binding"):
- `io.github.ganprint.scalable.1`: the K-bit fingerprint of an issued model, read by the service's
  `scalable_decoder`; a value matches the issued model nearest in Hamming distance when its Bonferroni-corrected
  p-value over the N issued models is <= `fpr` (`ganprint attribute`'s rule, `inference.scoring.attribute_bits`).
- `io.github.ganprint.artificial.1`: the K-bit fingerprint of a registered data set, read by a stega decoder; a
  value matches a data set when its matching bits reach `match_threshold(K, fpr)` (`ganprint detect`'s rule).

A binding value is the fingerprint's K bits packed big-endian into ceil(K/8) bytes (zero bits after the K, as the
registry packs them), base64-encoded (RFC 4648, with padding), as the soft-binding assertion and the Soft Binding
Resolution API carry values.
"""

from __future__ import annotations

import base64
import binascii

import numpy as np
import torch

from ganprint.core.errors import GanprintError
from ganprint.core.fingerprints import pack_bits, unpack_bits

SCALABLE_ALG = "io.github.ganprint.scalable.1"
ARTIFICIAL_ALG = "io.github.ganprint.artificial.1"
ALGS = (SCALABLE_ALG, ARTIFICIAL_ALG)
ASSERTION = "c2pa.soft-binding"


def encode_value(bits: torch.Tensor | np.ndarray) -> str:
    """A fingerprint [K] (0/1) as a binding value: its packed bytes in base64."""
    return base64.b64encode(pack_bits(np.asarray(bits).reshape(1, -1))[0].tobytes()).decode("ascii")


def decode_value(value: str, k: int) -> torch.Tensor:
    """A binding value as K bits (float 0/1 [K]); GanprintError naming `value` when it is not K bits in base64."""
    nbytes = (k + 7) // 8
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise GanprintError(f"`value` is not base64 (RFC 4648, with padding): {value[:60]!r}") from None
    if len(raw) != nbytes:
        raise GanprintError(f"`value` holds {len(raw)} bytes; a {k}-bit fingerprint is {nbytes} bytes in base64")
    packed = np.frombuffer(raw, dtype=np.uint8)[None]
    if np.unpackbits(packed, axis=1)[0, k:].any():
        raise GanprintError(f"`value` has bits set after the fingerprint's {k}: not a {k}-bit fingerprint")
    return torch.from_numpy(unpack_bits(packed, k)[0].astype(np.float32))


def check_alg(alg: str) -> str:
    """`alg` when it is one of ganprint's algorithms; GanprintError naming `alg` otherwise."""
    if alg not in ALGS:
        raise GanprintError(f"`alg` {alg[:80]!r} is not a ganprint soft-binding algorithm; use one of "
                            f"{', '.join(ALGS)} (GET /services/supportedAlgorithms)")
    return alg


def assertion(alg: str, bits: torch.Tensor | np.ndarray) -> dict:
    """The C2PA soft-binding assertion of a fingerprint: one block over the whole image (an empty scope)."""
    return {"label": ASSERTION, "data": {"alg": check_alg(alg), "blocks": [{"scope": {}, "value": encode_value(bits)}]}}


def similarity_score(bit_accuracy: float) -> int:
    """The Resolution API's similarityScore (0-100) of a match: its bit accuracy in percent, rounded down."""
    return max(0, min(100, int(bit_accuracy * 100)))
