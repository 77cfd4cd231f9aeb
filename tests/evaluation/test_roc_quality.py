"""Known answers for the ROC metrics and the image-quality metrics."""

import numpy as np
import pytest
import torch
from scipy import stats
from skimage.metrics import structural_similarity

from ganprint.evaluation.quality import psnr, ssim
from ganprint.evaluation.roc import roc_auc, roc_curve, tpr_at_fpr


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

    a, b = x[0].permute(1, 2, 0).numpy(), y[0].permute(1, 2, 0).numpy()
    ref = structural_similarity(a, b, channel_axis=2, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False)
    assert float(ssim(x[:1], y[:1])) == pytest.approx(ref, abs=0.03)  # border handling differs slightly
