"""Fingerprint strings: parsing (0/1 and hex, never silently cut), formatting, packing."""

from __future__ import annotations

import pytest
import torch

from ganprint.core.fingerprints import (
    FingerprintError,
    bits_to_hex,
    bits_to_str,
    bits_to_strs,
    parse_bits,
    strs_to_bits,
)


def test_bits_to_strs_and_back():
    bits = torch.randint(0, 2, (5, 13)).float()
    strs = bits_to_strs(bits)
    assert strs == [bits_to_str(b) for b in bits]
    assert torch.equal(strs_to_bits(strs, 13), bits)
    with pytest.raises(FingerprintError):
        strs_to_bits(strs, 12)


def test_hex_must_fit_the_model_exactly():
    assert bits_to_str(parse_bits("0x5a", 8)) == "01011010"
    assert bits_to_str(parse_bits("hex:25a", 10)) == "1001011010"  # 10 bits in 3 digits, zero padding
    for k in (1, 7, 8, 10, 48, 64, 100):
        bits = torch.randint(0, 2, (k,)).float()
        assert torch.equal(parse_bits(bits_to_hex(bits), k), bits)  # what ganprint writes, it reads back
    for text, k in (("0x15a", 8), ("0x005a", 8), ("0x45a", 10), ("0x" + "f" * 16, 48), ("0x5a", 12)):
        with pytest.raises(FingerprintError, match="more than the|fewer than"):
            parse_bits(text, k)
    with pytest.raises(FingerprintError, match="expects 8"):
        parse_bits("010110100", 8)
