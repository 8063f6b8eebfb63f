"""Bootstrap confidence intervals of a binary classifier's test metrics.

Test rows are resampled with replacement; each resample's accuracy and AUROC
(by ranks, ties averaged) are computed at once over a block of resamples, and
the interval is the percentiles of those values (the percentile bootstrap).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

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
    correct = (p >= 0.5) == (y == 1)
    accuracy, area = [], []
    per_block = max(1, _BLOCK // n)
    for start in range(0, resamples, per_block):
        rows = rng.integers(0, n, size=(min(per_block, resamples - start), n))
        accuracy.append(correct[rows].mean(axis=1))
        area.append(_auroc_rows(y[rows], p[rows]))
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


def _auroc_rows(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """AUROC of each row of (resamples x rows) labels and scores; NaN where one class only."""
    positive = y == 1
    n_pos = positive.sum(axis=1)
    n_neg = y.shape[1] - n_pos
    ranks = rankdata(p, axis=1)
    u = (ranks * positive).sum(axis=1) - n_pos * (n_pos + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)
