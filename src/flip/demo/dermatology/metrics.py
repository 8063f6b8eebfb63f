"""How the dermatology models are judged: MAE and agreement (ICC) of the biomarker with the
clinician's PASI, AUROC and calibration of the response model."""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from flip.fl.tasks.outcomes import auroc


def mae(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Mean absolute error; NaN without rows."""
    return float(np.mean(np.abs(predicted - truth))) if len(truth) else float("nan")


def icc(predicted: np.ndarray, truth: np.ndarray) -> float:
    """ICC(A,1): two-way, absolute agreement, single measure (McGraw & Wong), between the
    biomarker and the clinician's score; NaN with fewer than two rows or no variance."""
    n = len(truth)
    if n < 2:
        return float("nan")
    ratings = np.stack([predicted, truth], axis=1).astype(np.float64)
    k = 2
    grand = ratings.mean()
    rows = ((ratings.mean(1) - grand) ** 2).sum() * k / (n - 1)
    columns = ((ratings.mean(0) - grand) ** 2).sum() * n / (k - 1)
    residual = ratings - ratings.mean(1, keepdims=True) - ratings.mean(0, keepdims=True) + grand
    error = (residual**2).sum() / ((n - 1) * (k - 1))
    denominator = rows + (k - 1) * error + k * (columns - error) / n
    return float((rows - error) / denominator) if denominator > 0 else float("nan")


def roc_points(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rates, true positive rates) at every threshold, from (0, 0) to (1, 1)."""
    order = np.argsort(-p, kind="stable")
    y = y[order]
    positives, negatives = max(int(y.sum()), 1), max(int(len(y) - y.sum()), 1)
    tpr = np.concatenate([[0.0], np.cumsum(y) / positives])
    fpr = np.concatenate([[0.0], np.cumsum(1 - y) / negatives])
    return fpr, tpr


def calibration(y: np.ndarray, p: np.ndarray, bins: int = 5) -> list[tuple[float, float, int]]:
    """(mean predicted, observed rate, rows) per equal-width probability bin that has rows."""
    edges = np.linspace(0, 1, bins + 1)
    out = []
    for low, high in pairwise(edges):
        inside = (p >= low) & ((p < high) | (high == 1.0))
        if inside.any():
            out.append((float(p[inside].mean()), float(y[inside].mean()), int(inside.sum())))
    return out


__all__ = ["auroc", "calibration", "icc", "mae", "roc_points"]
