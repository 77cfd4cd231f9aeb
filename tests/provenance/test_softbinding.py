"""Binding values: K bits packed big-endian in base64, read back exactly, anything else refused by field."""

from __future__ import annotations

import base64

import pytest
import torch

from ganprint.core.errors import GanprintError
from ganprint.core.fingerprints import parse_bits
from ganprint.provenance.softbinding import (ARTIFICIAL_ALG, SCALABLE_ALG, assertion, check_alg, decode_value,
                                             encode_value, similarity_score)


def test_a_value_is_the_packed_bits_in_base64_and_reads_back():
    bits = parse_bits("0xa5f", 12)
    assert base64.b64decode(encode_value(bits)) == bytes([0xA5, 0xF0])  # 12 bits, then four zero bits
    assert torch.equal(decode_value(encode_value(bits), 12), bits)
    rnd = (torch.rand(128) > 0.5).float()
    assert torch.equal(decode_value(encode_value(rnd), 128), rnd)


@pytest.mark.parametrize("value, words", [("###", "not base64"), ("AAA", "not base64"), ("AAAA", "3 bytes"),
                                          (base64.b64encode(b"\xa5\xf8").decode(), "bits set after")])
def test_values_that_are_not_k_bits_are_refused(value, words):
    with pytest.raises(GanprintError, match="`value`.*" + words if words != "not base64" else "`value` is not"):
        decode_value(value, 12)


def test_the_assertion_and_the_score():
    a = assertion(SCALABLE_ALG, parse_bits("0x3c", 8))
    assert a == {"label": "c2pa.soft-binding",
                 "data": {"alg": SCALABLE_ALG, "blocks": [{"scope": {}, "value": "PA=="}]}}
    assert check_alg(ARTIFICIAL_ALG) == ARTIFICIAL_ALG
    with pytest.raises(GanprintError, match="`alg`"):
        check_alg("com.example.watermark.1")
    assert (similarity_score(1.0), similarity_score(0.875), similarity_score(0.999)) == (100, 87, 99)
