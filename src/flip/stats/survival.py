"""Kaplan-Meier and the log-rank test from per-site, per-time-bin event and censoring counts.

Each site rounds its follow-up times up to a common grid (multiples of `width`) and merges
adjacent bins until every released bin holds no event or at least min_cell events, and no
censoring or at least min_cell censorings. The combined curve is then exactly the pooled
Kaplan-Meier estimate on times rounded up to each site's released bin ends.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as scipy_stats

from flip.stats.suppression import is_small

Z_95 = 1.959963984540054
#: The most time bins a follow-up may span: bin numbers stay exact integers (2^53).
MAX_BINS = 2.0**53


def _allowed(events: int, censored: int, min_cell: int) -> bool:
    return not is_small(events, min_cell) and not is_small(censored, min_cell)


def km_partial(time: np.ndarray, event: np.ndarray, width: float, min_cell: int) -> dict:
    """A site's partial: bins [end time, events, censored] in time order, each releasable;
    {"bins": [], "withheld": True} when it has too few events or censorings to release any
    (how many persons it holds is not said: that count could be small)."""
    if width <= 0:
        raise ValueError(f"time bin width {width} is not positive")
    if len(time) and time.min() < 0:
        raise ValueError("a follow-up time is negative")
    if len(time) and time.max() / width > MAX_BINS:
        raise ValueError(
            f"follow-up time {time.max():g} is over {MAX_BINS:g} time bins of {width:g}: "
            "use a wider --time-bin"
        )
    keys, inverse = np.unique(np.ceil(time / width).astype(np.int64), return_inverse=True)
    events = np.bincount(inverse, weights=event, minlength=len(keys)).astype(np.int64)
    persons = np.bincount(inverse, minlength=len(keys))
    bins: list[list] = []
    pending = [0, 0]
    for key, d, total in zip(keys.tolist(), events.tolist(), persons.tolist(), strict=True):
        pending = [pending[0] + d, pending[1] + total - d]
        if _allowed(*pending, min_cell) or key == keys[-1]:
            bins.append([key * width, *pending])
            pending = [0, 0]
    while len(bins) > 1 and not _allowed(bins[-1][1], bins[-1][2], min_cell):
        end, d, c = bins.pop()
        bins[-1] = [end, bins[-1][1] + d, bins[-1][2] + c]
    if not bins or not _allowed(bins[-1][1], bins[-1][2], min_cell):
        return {"bins": [], "withheld": True}
    return {"bins": bins}


def _table(partials: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Times, and per site (rows) the events and at-risk counts at each time (columns)."""
    times = np.array(sorted({b[0] for p in partials for b in p["bins"]}), dtype=float)
    events = np.zeros((len(partials), len(times)))
    at_risk = np.zeros((len(partials), len(times)))
    for k, p in enumerate(partials):
        left = np.zeros(len(times))
        for end, d, c in p["bins"]:
            j = int(np.searchsorted(times, end))
            events[k, j] = d
            left[j] = d + c
        at_risk[k] = left.sum() - np.concatenate([[0.0], np.cumsum(left)[:-1]])
    return times, events, at_risk


def kaplan_meier(partials: list[dict]) -> dict:
    """The Kaplan-Meier curve of the partials together, with 95% bands (Greenwood's variance
    on the log(-log) scale, as lifelines) and the median (first time S <= 0.5, else None)."""
    partials = [p for p in partials if p["bins"]]
    if not partials:
        return {"median": None, "times": [], "survival": [], "lower": [], "upper": []}
    times, events, at_risk = _table(partials)
    d, n = events.sum(axis=0), at_risk.sum(axis=0)
    survival = np.cumprod(1 - d / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        greenwood = np.cumsum(np.where(n > d, d / (n * (n - d)), 0.0))
        spread = Z_95 * np.sqrt(greenwood) / np.abs(np.log(survival))
        lower = survival ** np.exp(spread)
        upper = survival ** np.exp(-spread)
    plain = (survival <= 0) | (survival >= 1)
    lower, upper = np.where(plain, survival, lower), np.where(plain, survival, upper)
    below = np.nonzero(survival <= 0.5)[0]
    return {
        "median": float(times[below[0]]) if len(below) else None,
        "times": times.tolist(),
        "survival": survival.tolist(),
        "lower": lower.tolist(),
        "upper": upper.tolist(),
    }


def logrank(partials: list[dict], groups: list[str] | None = None) -> dict:
    """The log-rank test that the groups' curves are equal (chi-square, groups - 1 df); each
    partial is its own group (a site) unless `groups` names each partial's group. With no
    test to make (one group, no event, no variance), p is None and "reason" says why."""
    groups = groups or [str(k) for k in range(len(partials))]
    kept = [(p, g) for p, g in zip(partials, groups, strict=True) if p["bins"]]
    labels = sorted({g for _, g in kept})
    if len(labels) < 2:
        return _no_test(0, "fewer than two groups with released counts")
    _, events, at_risk = _table([p for p, _ in kept])
    member = np.array([[float(g == label) for _, g in kept] for label in labels])
    events, at_risk = member @ events, member @ at_risk
    d, n = events.sum(axis=0), at_risk.sum(axis=0)
    use = (d > 0) & (n > 0)
    events, at_risk, d, n = events[:, use], at_risk[:, use], d[use], n[use]
    observed_minus_expected = (events - d * at_risk / n).sum(axis=1)
    factor = np.where(n > 1, d * (n - d) / np.maximum(n - 1, 1), 0.0) / n**2
    variance = np.einsum("t,kt,lt->kl", factor, at_risk, -at_risk)
    variance[np.diag_indices_from(variance)] += (factor * n * at_risk).sum(axis=1)
    k = len(labels) - 1
    if not use.any():
        return _no_test(k, "no events in the released counts")
    try:
        solved = np.linalg.solve(variance[:k, :k], observed_minus_expected[:k])
    except np.linalg.LinAlgError:
        return _no_test(k, "the groups' variance is singular (a group has no one at risk)")
    statistic = float(observed_minus_expected[:k] @ solved)
    return {"p": float(scipy_stats.chi2.sf(statistic, k)), "statistic": statistic, "df": k}


def _no_test(df: int, reason: str) -> dict:
    return {"p": None, "statistic": None, "df": df, "reason": reason}
