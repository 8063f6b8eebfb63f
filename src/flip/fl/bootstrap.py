"""Bootstrap confidence intervals of a binary classifier's test metrics.

Test rows are resampled with replacement; each resample's accuracy and AUROC
(Mann-Whitney U, ties counted half) are computed at once over a block of resamples
from how many times each row was drawn, and the interval is the percentiles of
those values (the percentile bootstrap).
"""

from __future__ import annotations

import numpy as np

RESAMPLES = 1000
#: Resampled values held at once (resamples x rows), to bound memory on large test sets.
_BLOCK = 4_000_000


def intervals(
    y: np.ndarray, p: np.ndarray, *, seed: int = 0, resamples: int = RESAMPLES, level: float = 0.95
) -> dict[str, list[float] | None]:
    """{"accuracy_ci": [low, high], "auroc_ci": [low, high] or None} at `level` (default 95%).

    An AUROC interval is None when fewer than half the resamples hold both classes.
    """
    n = len(y)
    if n == 0:
        return {"accuracy_ci": None, "auroc_ci": None}
    rng = np.random.default_rng(seed)
    correct = ((p >= 0.5) == (y == 1)).astype(float)
    accuracy, area = [], []
    per_block = max(1, _BLOCK // n)
    for start in range(0, resamples, per_block):
        rows = rng.integers(0, n, size=(min(per_block, resamples - start), n))
        drawn = _draws(rows, n)
        accuracy.append(drawn @ correct / n)
        area.append(_auroc_draws(drawn, y == 1, p))
    tails = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    accuracies, areas = np.concatenate(accuracy), np.concatenate(area)
    areas = areas[~np.isnan(areas)]
    auroc_ci = None
    if len(areas) >= resamples / 2:
        auroc_ci = [float(v) for v in np.percentile(areas, tails)]
    return {
        "accuracy_ci": [float(v) for v in np.percentile(accuracies, tails)],
        "auroc_ci": auroc_ci,
    }


def _draws(rows: np.ndarray, n: int) -> np.ndarray:
    """How many times each of `n` rows is drawn in each resample (resamples x n)."""
    offsets = np.arange(len(rows))[:, None] * n
    return np.bincount((rows + offsets).ravel(), minlength=len(rows) * n).reshape(len(rows), n)


def _auroc_draws(drawn: np.ndarray, positive: np.ndarray, p: np.ndarray) -> np.ndarray:
    """AUROC of each resample, given how often it drew each row: the share of (positive,
    negative) pairs the positive scores above, a tie counting half (as ranks with ties
    averaged give); NaN where a resample holds one class only."""
    order = np.argsort(p, kind="stable")
    ordered = p[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    by_score = drawn[:, order].astype(float)
    pos = np.add.reduceat(by_score * positive[order], starts, axis=1)
    neg = np.add.reduceat(by_score * ~positive[order], starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    u = (pos * (below + neg / 2)).sum(axis=1)
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)
