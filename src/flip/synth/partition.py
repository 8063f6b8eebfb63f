"""Non-IID partitions of one pool of rows into sites, by Dirichlet draws (smaller alpha: more skew).

- label skew (Hsu et al., 2019): each class's rows are spread over the sites by its own
  Dirichlet draw, so sites differ in how common the outcome is;
- quantity skew: the sites' shares of all rows are one Dirichlet draw;
- feature skew: rows are binned by a feature's quantiles and each bin is spread over the
  sites by its own draw (sites differ in case mix), and each site measures with its own
  calibration (`calibrations`: a scale per site for the columns it distorts).
"""

from __future__ import annotations

import numpy as np

SKEWS = ("iid", "label", "quantity", "feature")


def _spread(rows: np.ndarray, shares: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """`rows` shuffled and cut into consecutive parts of the given shares."""
    rows = rng.permutation(rows)
    cuts = (np.cumsum(shares)[:-1] * len(rows)).astype(int)
    return np.split(rows, cuts)


def _merge(parts: list[list[np.ndarray]], n_sites: int) -> list[np.ndarray]:
    return [np.sort(np.concatenate([p[site] for p in parts])) for site in range(n_sites)]


def partition(
    skew: str,
    y: np.ndarray,
    feature: np.ndarray,
    n_sites: int,
    alpha: float,
    rng: np.random.Generator,
    *,
    bins: int = 5,
) -> list[np.ndarray]:
    """Row indices of each site under `skew` (one of SKEWS); `feature` sorts rows into bins
    for feature skew."""
    if skew not in SKEWS:
        raise ValueError(f"unknown skew {skew!r}: choose one of {', '.join(SKEWS)}")
    if n_sites < 2 or alpha <= 0:
        raise ValueError("a partition needs at least 2 sites and alpha > 0")
    every = np.arange(len(y))
    if skew == "iid":
        return _merge([_spread(every, np.full(n_sites, 1 / n_sites), rng)], n_sites)
    if skew == "quantity":
        return _merge([_spread(every, rng.dirichlet(np.full(n_sites, alpha)), rng)], n_sites)
    if skew == "label":
        groups = [every[y == value] for value in np.unique(y)]
    else:
        edges = np.quantile(feature, np.linspace(0, 1, bins + 1)[1:-1])
        which = np.searchsorted(edges, feature, side="right")
        groups = [every[which == b] for b in range(bins)]
    parts = [_spread(g, rng.dirichlet(np.full(n_sites, alpha)), rng) for g in groups]
    return _merge(parts, n_sites)


def calibrations(n_sites: int, rng: np.random.Generator, spread: float = 0.3) -> np.ndarray:
    """A measuring scale per site (log-uniform within a factor of e^spread of 1)."""
    return np.exp(rng.uniform(-spread, spread, n_sites))
