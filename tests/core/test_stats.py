"""Known answers for the detection statistics, ROC metrics and image-quality metrics."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from ganprint.core.stats import (
    bit_accuracy,
    capacity,
    count_matches,
    detection_rate,
    log10_p_value,
    match_threshold,
    p_value,
)
from ganprint.evaluation.quality import psnr, ssim
from ganprint.evaluation.roc import roc_auc, roc_curve, tpr_at_fpr


def test_match_threshold_against_scipy_and_peers_table():
    # peers.md §8 (computed): K=100 -> 74/80/85 for N=1/1e3/1e6 at FPR 1e-6; K=128 -> 92/98/103
    assert [match_threshold(100, 1e-6, n) for n in (1, 1000, 10**6)] == [74, 80, 85]
    assert [match_threshold(128, 1e-6, n) for n in (1, 1000, 10**6)] == [92, 98, 103]
    for k, fpr in [(64, 1e-3), (100, 0.05), (48, 1e-6)]:
        m = match_threshold(k, fpr)
        assert stats.binomtest(m, k, 0.5, "greater").pvalue <= fpr < stats.binomtest(m - 1, k, 0.5, "greater").pvalue


def test_p_values_reproduce_paper_table():
    assert p_value(93, 100) == pytest.approx(1.4e-20, rel=0.05)
    assert p_value(51, 100) == pytest.approx(0.46, abs=0.005)
    assert log10_p_value(100, 100) == pytest.approx(-100 * math.log10(2))


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


def test_auc_matches_mann_whitney_and_curve_area():
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1, 1, 300), rng.normal(0, 1, 400)
    pos[:10] = neg[:10]  # some ties
    u = stats.mannwhitneyu(pos, neg).statistic
    assert roc_auc(pos, neg) == pytest.approx(u / (pos.size * neg.size))
    fpr, tpr, thr = roc_curve(pos, neg)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1 and np.all(np.diff(fpr) >= 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc(pos, neg), abs=1e-9)
    assert roc_auc([2, 3], [0, 1]) == 1.0 and roc_auc([0], [0]) == 0.5


def test_tpr_at_fpr_known_answer():
    neg = np.arange(1000) / 1000  # 0.000 .. 0.999
    pos = np.array([0.9985, 0.9995, 0.9975, 0.5])
    tpr, thr = tpr_at_fpr(pos, neg, 1e-3)  # one negative may exceed: threshold = 2nd largest = 0.998
    assert thr == pytest.approx(0.998) and tpr == pytest.approx(2 / 4)
    tpr, thr = tpr_at_fpr(pos, neg, 1e-6)  # no negative may exceed: beat the max 0.999
    assert thr == pytest.approx(0.999) and tpr == pytest.approx(1 / 4)
    assert np.mean(neg > thr) <= 1e-6
    with pytest.raises(ValueError):
        tpr_at_fpr(pos, neg, 0)


def test_psnr_ssim_known_values():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = (x + 0.1).clamp(0, 1)
    mse = (x - y).pow(2).flatten(1).mean(1)
    assert torch.allclose(psnr(x, y), 10 * torch.log10(1 / mse), atol=1e-4)
    assert torch.allclose(psnr(x, x), torch.full((2,), 100.0))
    assert torch.allclose(ssim(x, x), torch.ones(2), atol=1e-5)
    s = ssim(x, torch.rand_like(x))
    assert s.shape == (2,) and (s < 0.2).all()
    from skimage.metrics import structural_similarity

    a, b = x[0].permute(1, 2, 0).numpy(), y[0].permute(1, 2, 0).numpy()
    ref = structural_similarity(a, b, channel_axis=2, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False)
    assert float(ssim(x[:1], y[:1])) == pytest.approx(ref, abs=0.03)  # border handling differs slightly


def test_counter_bits_are_per_item_pure_and_uniform():
    from ganprint.core.fingerprints import counter_bits

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
    with pytest.raises(GanprintError, match=r"--fpr 1e-300 is too small for 64 bits.* 5.42e-20"):
        usable_threshold(64, 1e-300)  # ... but a decision needs one that can be reached
    assert usable_threshold(8, 2.0 ** -8) == 8 and usable_threshold(64, 1e-6) == match_threshold(64, 1e-6)
    with pytest.raises(GanprintError, match="and 10 keys"):
        usable_threshold(8, 0.01, n_keys=10, flag="--fpr")
    for bad in (0, 1, -0.5):
        with pytest.raises(GanprintError, match="must be in"):
            usable_threshold(64, bad)
