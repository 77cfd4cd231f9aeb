"""Detection curves from scores: ROC, AUC and the empirical TPR at a fixed false-positive rate.

Scores are "higher means fingerprinted" (e.g. bit accuracy or -log10 p). Positives are fingerprinted images,
negatives are clean ones. The analytic counterpart (binomial threshold, no negatives needed) is
`ganprint.core.stats.detection_rate`.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

log = logging.getLogger(__name__)


def _arr(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64).reshape(-1)


def roc_curve(pos, neg) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) of the rule "score >= t", thresholds decreasing, starting at (0, 0) with t = +inf."""
    pos, neg = _arr(pos), _arr(neg)
    if pos.size == 0 or neg.size == 0:
        raise ValueError("roc_curve needs at least one positive and one negative score")
    thr = np.unique(np.concatenate([pos, neg]))[::-1]  # decreasing distinct scores
    pos_s, neg_s = np.sort(pos), np.sort(neg)
    # count of scores >= t = n - (number of scores < t)
    tpr = (pos.size - np.searchsorted(pos_s, thr, side="left")) / pos.size
    fpr = (neg.size - np.searchsorted(neg_s, thr, side="left")) / neg.size
    return (np.concatenate([[0.0], fpr]), np.concatenate([[0.0], tpr]), np.concatenate([[np.inf], thr]))


def roc_auc(pos, neg) -> float:
    """Area under the ROC curve = P[score(pos) > score(neg)] + 0.5 P[tie] (Mann-Whitney U / (n_pos n_neg))."""
    pos, neg = _arr(pos), _arr(neg)
    if pos.size == 0 or neg.size == 0:
        raise ValueError("roc_auc needs at least one positive and one negative score")
    neg_s = np.sort(neg)
    below = np.searchsorted(neg_s, pos, side="left")  # negatives strictly below each positive
    ties = np.searchsorted(neg_s, pos, side="right") - below
    return float((below.sum() + 0.5 * ties.sum()) / (pos.size * neg.size))


def tpr_at_fpr(pos, neg, fpr: float) -> tuple[float, float]:
    """Empirical (TPR, threshold) of the rule "score > threshold" whose FPR on `neg` is at most `fpr`.

    The threshold is the (floor(fpr * n_neg) + 1)-th largest negative score, so at most floor(fpr * n_neg)
    negatives exceed it (ties never count as detections). With fewer than 1/fpr negatives this means "beat
    every negative": the estimate is then only resolved down to FPR 1/n_neg (logged at debug level).
    """
    if not 0 < fpr < 1:
        raise ValueError(f"fpr must be in (0, 1), got {fpr}")
    pos, neg = _arr(pos), _arr(neg)
    if pos.size == 0 or neg.size == 0:
        raise ValueError("tpr_at_fpr needs at least one positive and one negative score")
    allowed = int(np.floor(fpr * neg.size + 1e-9))
    if allowed == 0:
        log.debug("tpr_at_fpr: %d negatives resolve FPR down to %.2g only, not %.2g", neg.size, 1 / neg.size, fpr)
    thr = float(np.sort(neg)[::-1][allowed])  # allowed <= n_neg - 1 because fpr < 1
    return float((pos > thr).mean()), thr
