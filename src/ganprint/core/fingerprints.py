"""Fingerprints (bit strings): parsing, formatting, packing, seeded sampling, Hamming distance.

A fingerprint in memory is a float tensor of 0/1 of shape [K] or [N, K] (`bits`). On disk and on the
command line it is a 0/1 string ("0110...") or hex ("0x6f..." / "hex:6f..."), most significant bit first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ganprint.core.errors import GanprintError
from ganprint.core.seeds import derive_seed

if TYPE_CHECKING:  # torch is imported where a function returns a tensor: parsing and printing run without it
    import torch


class FingerprintError(GanprintError):
    """A fingerprint string or length that cannot be used."""


def parse_bits(text: str, length: int | None = None) -> torch.Tensor:
    """Parse a 0/1 string or hex string into a float tensor [K] of 0/1.

    Hex needs a `0x` or `hex:` prefix so that a string such as "0110" is never ambiguous. With hex and `length`
    the digits must hold exactly `length` bits, left-padded with zero bits to whole digits (as `bits_to_hex` writes
    them): fewer digits, more digits, or a one in the padding is an error, never a silent cut.
    """
    bitstr = parse_bit_string(text, length)
    return strs_to_bits([bitstr], len(bitstr))[0]


def parse_bit_string(text: str, length: int | None = None) -> str:
    """`parse_bits` as the validated 0/1 string ("0110..."), without torch."""
    s = text.strip().lower().replace("_", "").replace(" ", "")
    if s.startswith("0x") or s.startswith("hex:"):
        digits = s.split(":", 1)[1] if s.startswith("hex:") else s[2:]
        if not digits or any(c not in "0123456789abcdef" for c in digits):
            raise FingerprintError(f"fingerprint {text!r} is not valid hex (expected e.g. 0x6f3a...)")
        bitstr = "".join(f"{int(c, 16):04b}" for c in digits)
        if length is not None:
            bitstr = _fit_hex(text, bitstr, length)
    else:
        bitstr = s
        if not bitstr or bitstr.strip("01"):
            raise FingerprintError(
                f"fingerprint {text!r} is neither a 0/1 string nor hex with a 0x prefix"
            )
    if length is not None and len(bitstr) != length:
        raise FingerprintError(f"fingerprint has {len(bitstr)} bits but the model expects {length}")
    return bitstr


def _fit_hex(text: str, bitstr: str, length: int) -> str:
    """The low `length` bits of a hex fingerprint's `bitstr`, refusing digits that do not fit in `length` bits."""
    want = -(-length // 4)
    if len(bitstr) < length:
        raise FingerprintError(f"hex fingerprint {text!r} has {len(bitstr)} bits, fewer than the model's {length}")
    if len(bitstr) // 4 > want or "1" in bitstr[:len(bitstr) - length]:
        raise FingerprintError(f"hex fingerprint {text!r} has more than the {length} bits the model reads "
                               f"(expected {want} hex digits); pass the model's own fingerprint")
    return bitstr[len(bitstr) - length:]


def as_array(bits) -> np.ndarray:
    """A tensor (any device) or array-like as a numpy array, without importing torch."""
    return bits.detach().cpu().numpy() if hasattr(bits, "detach") else np.asarray(bits)


def bits_to_str(bits: torch.Tensor | np.ndarray) -> str:
    """[K] 0/1 (or bool / logits already thresholded) -> '0110...'."""
    arr = as_array(bits)
    return bits_to_strs(arr.reshape(1, -1))[0]


def bits_to_strs(bits: torch.Tensor | np.ndarray) -> list[str]:
    """[N, K] 0/1 -> N strings '0110...' (`bits_to_str` per row, in one pass)."""
    arr = as_array(bits)
    n, k = arr.shape
    text = ((arr > 0.5).astype(np.uint8) + 48).tobytes().decode("ascii")  # 48 = "0"; row i is text[i*k:(i+1)*k]
    return [text[i * k:(i + 1) * k] for i in range(n)]


def strs_to_bits(strs: list[str], length: int) -> torch.Tensor:
    """N 0/1 strings of `length` bits (already validated, e.g. by `parse_bits`) -> float [N, K]."""
    import torch

    return torch.from_numpy(strs_to_array(strs, length))


def strs_to_array(strs: list[str], length: int) -> np.ndarray:
    """`strs_to_bits` as a numpy float32 array [N, K], without torch."""
    raw = np.frombuffer("".join(strs).encode("ascii"), np.uint8)
    if raw.size != len(strs) * length:
        raise FingerprintError(f"expected {len(strs)} fingerprints of {length} bits")
    return (raw.reshape(len(strs), length) - 48).astype(np.float32)  # [N, K]


def bits_to_hex(bits: torch.Tensor | np.ndarray) -> str:
    """[K] 0/1 -> '0x...' (left-padded with zero bits to a multiple of 4)."""
    s = bits_to_str(bits)
    s = "0" * (-len(s) % 4) + s
    return "0x" + "".join(f"{int(s[i:i + 4], 2):x}" for i in range(0, len(s), 4))


def random_bits(n: int, length: int, seed: int) -> torch.Tensor:
    """[n, K] uniform random bits, a pure function of (seed, n, length)."""
    import torch

    g = torch.Generator().manual_seed(int(seed))
    return torch.randint(0, 2, (n, length), generator=g).float()


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 counters (wrapping arithmetic): independent-looking 64-bit words."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def counter_bits(seed: int, indices, length: int) -> torch.Tensor:
    """[N, K] uniform random bits for items `indices` (ints >= 0): row i is a pure function of (seed, indices[i], K)
    and never of the other indices, computed for the whole batch at once (counter-based, no generator per item)."""
    idx = np.asarray(indices, dtype=np.uint64).reshape(-1, 1)  # [N, 1]
    words = -(-int(length) // 64)
    base = np.uint64(derive_seed(seed, 0xB175, length))
    with np.errstate(over="ignore"):
        counters = base + idx * np.uint64(words) + np.arange(words, dtype=np.uint64)[None, :]  # [N, W]
        w = _splitmix64(counters)
    bits = np.unpackbits(w.astype(">u8").view(np.uint8).reshape(len(idx), -1), axis=1)[:, :length]  # [N, K]
    import torch

    return torch.from_numpy(bits.astype(np.float32))


def pack_bits(bits: np.ndarray | torch.Tensor) -> np.ndarray:
    """[N, K] 0/1 -> [N, ceil(K/8)] uint8 (big-endian bit order), for fast Hamming search."""
    arr = as_array(bits) > 0.5
    return np.packbits(arr.reshape(arr.shape[0], -1), axis=1)


def unpack_bits(packed: np.ndarray, length: int) -> np.ndarray:
    """Inverse of `pack_bits`: [N, B] uint8 -> [N, K] uint8 0/1."""
    return np.unpackbits(packed, axis=1)[:, :length]


def hamming(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Number of differing bits along the last dim (inputs 0/1, broadcastable)."""
    return ((a > 0.5) != (b > 0.5)).sum(dim=-1)


def as_bits(fingerprint, length: int) -> torch.Tensor:
    """A fingerprint given as a 0/1 or 0x-hex string, or as a [K] tensor/array/list of 0/1 -> float [K]."""
    return parse_bits(as_bit_string(fingerprint, length), length)


def as_bit_string(fingerprint, length: int) -> str:
    """`as_bits` as the validated 0/1 string, without torch."""
    if hasattr(fingerprint, "detach") or isinstance(fingerprint, (np.ndarray, list, tuple)):
        fingerprint = bits_to_str(np.asarray(as_array(fingerprint), dtype=np.float32))
    return parse_bit_string(str(fingerprint), length)
