"""Known answers for the detection statistics (bit accuracy, p-values, thresholds, capacity) and the seeded bits."""

import math
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
import torch
from scipy import stats

from ganprint.core.fingerprints import counter_bits
from ganprint.core.stats import (
    bit_accuracy,
    capacity,
    count_matches,
    detection_rate,
    log10_p_value,
    match_threshold,
    p_value,
)


def test_match_threshold_against_scipy_and_known_answers():
    # known answers (one-sided binomial, Bonferroni over N keys): K=100 -> 74/80/85 for N=1/1e3/1e6 at FPR 1e-6
    assert [match_threshold(100, 1e-6, n) for n in (1, 1000, 10**6)] == [74, 80, 85]
    assert [match_threshold(128, 1e-6, n) for n in (1, 1000, 10**6)] == [92, 98, 103]
    for k, fpr in [(64, 1e-3), (100, 0.05), (48, 1e-6)]:
        m = match_threshold(k, fpr)
        assert stats.binomtest(m, k, 0.5, "greater").pvalue <= fpr < stats.binomtest(m - 1, k, 0.5, "greater").pvalue


def test_p_values_reproduce_paper_table():
    assert p_value(93, 100) == pytest.approx(1.4e-20, rel=0.05)
    assert p_value(51, 100) == pytest.approx(0.46, abs=0.005)
    assert log10_p_value(100, 100) == pytest.approx(-100 * math.log10(2))


def _exact_tail(m, k):
    return Fraction(sum(math.comb(k, j) for j in range(max(m, 0), k + 1)), 2**k)


@pytest.mark.parametrize("k", [100, 1075, 2048, 4096])
def test_log10_p_value_is_finite_and_exact_for_long_fingerprints(k):
    m = np.arange(k + 2)
    lp = log10_p_value(m, k)
    assert np.isfinite(lp[:k + 1]).all() and lp[k + 1] == -math.inf  # k + 1 matches: p is exactly 0
    assert np.all(np.diff(lp) <= 0) and np.all(np.diff(lp[k // 2:]) < 0) and lp[0] == 0.0
    assert lp[k] == pytest.approx(-k * math.log10(2), rel=1e-12)
    for mm in (k // 2, (3 * k) // 4, k - 3):
        exact = _exact_tail(mm, k)
        want = math.log10(exact.numerator) - math.log10(exact.denominator)
        assert lp[mm] == pytest.approx(want, rel=1e-12, abs=1e-12)
        assert p_value(mm, k) == pytest.approx(float(exact), rel=1e-15)
    assert log10_p_value(k - 3, k) == pytest.approx(lp[k - 3], rel=0)  # scalars as arrays


def test_p_value_agrees_with_scipy_where_scipy_is_finite():
    for k in (1, 8, 64, 128, 1000):
        m = np.arange(-1, k + 3)
        ref = stats.binom.sf(m - 1, k, 0.5)
        assert np.allclose(p_value(m, k), ref, rtol=1e-12, atol=0)
        ok = ref > 1e-300
        assert np.allclose(log10_p_value(m, k)[ok], np.log10(ref[ok]), rtol=1e-12, atol=1e-12)


def test_importing_the_statistics_does_not_import_scipy_stats():
    code = "import sys, ganprint.core.stats; sys.exit('scipy.stats' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_count_matches_and_detection_rate():
    ref = torch.tensor([1.0, 0, 1, 0])
    bits = torch.tensor([[1.0, 0, 1, 0], [0, 0, 1, 0], [0, 1, 0, 1]])
    assert count_matches(bits, ref).tolist() == [4, 3, 0]
    assert bit_accuracy(bits, ref).tolist() == [1.0, 0.75, 0.0]
    m = np.array([100, 80, 74, 73, 50])
    assert detection_rate(m, 100, 1e-6) == pytest.approx(3 / 5)
    assert detection_rate(m, 100, 1e-6, n_keys=1000) == pytest.approx(2 / 5)


def test_capacity_known_values():
    assert capacity(100, 1.0) == 100
    assert capacity(100, 0.5) == pytest.approx(0.0)
    h = -(0.9 * math.log2(0.9) + 0.1 * math.log2(0.1))
    assert capacity(64, 0.9) == pytest.approx(64 * (1 - h))


def test_counter_bits_are_per_item_pure_and_uniform():
    a = counter_bits(42, [0, 1, 2, 1000], 100)
    assert a.shape == (4, 100) and set(a.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(a[3], counter_bits(42, [1000], 100)[0])  # a row never depends on the others
    assert torch.equal(a[1], counter_bits(42, [5, 1], 100)[1])
    assert not torch.equal(a, counter_bits(43, [0, 1, 2, 1000], 100))  # the seed matters
    assert not torch.equal(counter_bits(42, [0], 100)[0, :64], counter_bits(42, [0], 64)[0])  # so does K
    many = counter_bits(0, np.arange(20_000), 64)  # 1.28M bits
    assert stats.binomtest(int(many.sum()), many.numel(), 0.5).pvalue > 1e-3
    # neighbouring items and bits are not correlated
    assert abs(np.corrcoef(many[:-1].flatten(), many[1:].flatten())[0, 1]) < 0.01
    assert abs(np.corrcoef(many[:, :-1].flatten(), many[:, 1:].flatten())[0, 1]) < 0.01


def test_too_small_fpr_is_refused_with_the_smallest_usable_one():
    from ganprint.core.errors import GanprintError
    from ganprint.core.stats import smallest_usable_fpr, usable_threshold

    assert smallest_usable_fpr(64) == 2.0 ** -64 and smallest_usable_fpr(8, 4) == 4 / 256
    assert match_threshold(64, 1e-300) == 65  # the raw threshold may exceed K ...
    with pytest.raises(GanprintError, match=r"`fpr` 1e-300 is too small for 64 bits.* 5.42e-20"):
        usable_threshold(64, 1e-300)  # ... but a decision needs one that can be reached
    assert usable_threshold(8, 2.0 ** -8) == 8 and usable_threshold(64, 1e-6) == match_threshold(64, 1e-6)
    with pytest.raises(GanprintError, match="and 10 keys"):
        usable_threshold(8, 0.01, n_keys=10, name="fpr")
    for bad in (0, 1, -0.5):
        with pytest.raises(GanprintError, match="must be in"):
            usable_threshold(64, bad)
