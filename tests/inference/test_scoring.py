"""Decoded bits scored into detection rows: the binomial statistics of `core.stats`, one row per image."""

from __future__ import annotations

import torch

from ganprint.core.stats import log10_p_value, match_threshold, p_value
from ganprint.inference.scoring import score_bits


def test_rows_carry_the_binomial_statistics_and_the_decision():
    k = 16
    ref = torch.zeros(k)
    bits = torch.zeros(3, k)
    bits[1, :3] = 1  # 13 matches
    bits[2, :9] = 1  # 7 matches
    threshold = match_threshold(k, 0.05)  # 12 of 16 bits
    rows = score_bits(bits, ref, threshold)
    assert [r["matches"] for r in rows] == [16, 13, 7]
    for r in rows:
        m = r["matches"]
        assert r["bit_accuracy"] == m / k and r["p_value"] == p_value(m, k) and r["log10_p"] == log10_p_value(m, k)
        assert r["detected"] is (m >= threshold)
        assert list(r) == ["bit_accuracy", "matches", "p_value", "log10_p", "detected"]  # the order detect writes
    assert [r["detected"] for r in rows] == [True, True, False]


def test_a_reference_per_image_and_the_threshold_boundary():
    k = 8
    refs = torch.tensor([[1.0] * 8, [0.0] * 8])
    bits = torch.tensor([[1.0] * 7 + [0.0], [1.0] * 2 + [0.0] * 6])  # 7 and 6 matches
    rows = score_bits(bits, refs, threshold=7)
    assert [(r["matches"], r["detected"]) for r in rows] == [(7, True), (6, False)]
    assert score_bits(torch.zeros(0, k), torch.zeros(k), 7) == []
