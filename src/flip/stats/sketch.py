"""A mergeable quantile sketch: fixed logarithmic bins (as DDSketch), coarsened for release.

Every site bins values on the same grid, fixed in advance and independent of the data:
bin i > 0 holds values in (gamma^(i-1-c), gamma^(i-c)] with gamma = (1+alpha)/(1-alpha) and
c a constant that keeps keys positive; negative values mirror it, and bin 0 holds values
within TINY of zero. A value's bin's midpoint is within relative error alpha of it.
For release, runs of adjacent occupied bins are merged until each run holds at least
min_cell values, and the outermost edges are pulled in to the bins of the min_cell-th
smallest and largest values, so no edge tells a lone extreme; sites' runs add up at the
combiner. The minimum and maximum are never released: with fewer than 2 * min_cell - 1
values those two order statistics cross (with exactly min_cell values they are the maximum
and the minimum), and the one run shrinks to the median's bin, carrying no mean.
A run of a single bin also carries its values' mean (at least min_cell values, all within
the bin). A quantile is read from the merged runs, each run's count spread evenly over its
bins, each bin standing for the mean its one-bin runs carry (else its midpoint): where the
quantile's rank falls in a one-bin run the estimate lies in the true order statistic's bin,
within relative error 2 * alpha / (1 - alpha) (1% at the default alpha 0.005), and exact
when the bin's values are equal (integer ages); in a merged run, within that run's range.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

DEFAULT_ALPHA = 0.005
TINY = 1e-9


def _gamma(alpha: float) -> float:
    if not 0 < alpha < 0.5:
        raise ValueError(f"sketch alpha {alpha} is not between 0 and 0.5")
    return (1 + alpha) / (1 - alpha)


def _offset(alpha: float) -> int:
    return math.ceil(-math.log(TINY) / math.log(_gamma(alpha))) + 1


def bin_keys(values: np.ndarray, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """Each value's bin on the fixed grid (integers, in the order of the values)."""
    log_gamma = math.log(_gamma(alpha))
    magnitude = np.abs(values)
    keys = np.zeros(len(values), dtype=np.int64)
    big = magnitude > TINY
    keys[big] = np.ceil(np.log(magnitude[big]) / log_gamma).astype(np.int64) + _offset(alpha)
    return np.where(values < 0, -keys, keys)


def bin_value(key: float, alpha: float = DEFAULT_ALPHA) -> float:
    """The value a (possibly fractional) bin key stands for: its bin's midpoint."""
    if key == 0:
        return 0.0
    gamma = _gamma(alpha)
    magnitude = 2 * gamma ** (abs(key) - _offset(alpha)) / (gamma + 1)
    return math.copysign(magnitude, key)


def sketch(values: np.ndarray, min_cell: int, alpha: float = DEFAULT_ALPHA) -> dict:
    """A site's sketch of its non-missing values: runs [first bin, last bin, count], each
    holding at least min_cell values (all values in one run when fewer in total); a run of
    one bin also carries the mean of its values, [bin, bin, count, mean]."""
    keys, inverse, counts = np.unique(
        bin_keys(values, alpha), return_inverse=True, return_counts=True
    )
    sums = np.bincount(inverse.ravel(), weights=values, minlength=len(keys))
    runs: list[list] = []
    start, total = None, 0
    for i, (key, count) in enumerate(zip(keys.tolist(), counts.tolist(), strict=True)):
        start = key if start is None else start
        total += count
        if total >= min_cell:
            runs.append([start, key, total] + ([sums[i].item() / count] if start == key else []))
            start, total = None, 0
    if total and runs:
        runs[-1][1:] = [keys[-1].item(), runs[-1][2] + total]
    elif total:
        runs.append([start, keys[-1].item(), total])
    if runs:
        _clip_extremes(runs, keys, counts, min_cell)
    return {"alpha": alpha, "runs": runs}


def _clip_extremes(runs: list[list], keys: np.ndarray, counts: np.ndarray, k: int) -> None:
    """Pull the outer edges in to the bins of the k-th smallest and k-th largest values, so
    neither edge tells the lone extreme value."""
    cumulative = np.cumsum(counts)
    low = keys[min(int(np.searchsorted(cumulative, k - 1, side="right")), len(keys) - 1)].item()
    high = keys[int(np.searchsorted(cumulative, cumulative[-1] - k, side="right"))].item()
    if len(runs) == 1 and low > high:
        median = int(np.searchsorted(cumulative, (cumulative[-1] - 1) // 2, side="right"))
        runs[0][:] = [keys[median].item(), keys[median].item(), runs[0][2]]
    elif len(runs) == 1:
        runs[0][:2] = [low, high]
    else:
        runs[0][0], runs[-1][1] = min(low, runs[0][1]), max(high, runs[-1][0])


def _spread(sketches: list[dict]) -> tuple[list[int], np.ndarray, list[float]]:
    """Bins in order, the cumulative count up to each, and each bin's value: the mean its
    one-bin runs carry, else its midpoint, weighted by the count each run puts there."""
    alphas = {s["alpha"] for s in sketches}
    if len(alphas) != 1:
        raise ValueError(f"sketches on different grids (alpha {sorted(alphas)}) cannot be merged")
    alpha = alphas.pop()
    mass: dict[int, float] = defaultdict(float)
    weighted: dict[int, float] = defaultdict(float)
    for s in sketches:
        for first, last, count, *mean in s["runs"]:
            span = range(first, last + 1)
            for key in span:
                share = count / len(span)
                mass[key] += share
                weighted[key] += share * (mean[0] if mean else bin_value(key, alpha))
    keys = sorted(mass)
    values = [weighted[k] / mass[k] for k in keys]
    return keys, np.cumsum([mass[k] for k in keys]), values


def quantiles(sketches: list[dict], qs: list[float]) -> list[float | None]:
    """Quantiles of all values the sketches hold together (numpy's linear interpolation
    between order statistics, each order statistic read from its bin)."""
    sketches = [s for s in sketches if s["runs"]]
    if not sketches:
        return [None for _ in qs]
    keys, cumulative, values = _spread(sketches)
    total = round(cumulative[-1])

    def order_statistic(rank: int) -> float:
        index = int(np.searchsorted(cumulative, rank + 0.5 - 1e-9))
        return values[min(index, len(keys) - 1)]

    out: list[float | None] = []
    for q in qs:
        position = q * (total - 1)
        low = math.floor(position)
        high = min(low + 1, total - 1)
        weight = position - low
        out.append((1 - weight) * order_statistic(low) + weight * order_statistic(high))
    return out
