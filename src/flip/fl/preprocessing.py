"""Federated preprocessing: one encoding for every site, from sums and counts, never rows.

Each site sends `ColumnStats` for its training rows; their merge gives global
means and standard deviations (standardisation and mean imputation), which
columns need a missing-value indicator, and each categorical column's vocabulary.
File experiments encode CSV columns this way (`combine`); project tasks with
federated scaling standardise their store features this way (`scaling_of`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from flip.data.features.csvfile import ColumnStats, as_number, is_missing
from flip.data.features.tabular import Scaling, TabularData

#: The sums and counts a site sends for each feature, as lists in feature order.
STATS_KEYS = ("count", "total", "squares", "missing")


@dataclass(frozen=True)
class Encoding:
    """How to turn one row of strings into a feature vector, the same at every site."""

    numeric: dict[str, tuple[float, float]]
    indicators: tuple[str, ...]
    categories: dict[str, tuple[str, ...]]

    @property
    def names(self) -> list[str]:
        """Feature names, in column order of `encode`."""
        names = list(self.numeric)
        names += [f"{c}_missing" for c in self.indicators]
        names += [f"{c}={v}" for c, values in self.categories.items() for v in values]
        return names

    def encode(self, columns: dict[str, list[str]], rows: list[int]) -> np.ndarray:
        """The feature matrix of `rows`."""
        out = np.zeros((len(rows), len(self.names)), dtype=np.float32)
        col = 0
        for name, (mean, std) in self.numeric.items():
            for r, i in enumerate(rows):
                number = as_number(columns[name][i])
                out[r, col] = 0.0 if number is None else (number - mean) / std
            col += 1
        for name in self.indicators:
            for r, i in enumerate(rows):
                out[r, col] = float(is_missing(columns[name][i]))
            col += 1
        for name, values in self.categories.items():
            index = {v: k for k, v in enumerate(values)}
            for r, i in enumerate(rows):
                k = index.get(columns[name][i].strip())
                if k is not None:
                    out[r, col + k] = 1.0
            col += len(values)
        return out


def combine(per_site: list[dict[str, ColumnStats]], kinds: dict[str, str]) -> Encoding:
    """The shared encoding from every site's statistics."""
    numeric: dict[str, tuple[float, float]] = {}
    indicators: list[str] = []
    categories: dict[str, tuple[str, ...]] = {}
    for column, kind in kinds.items():
        total = ColumnStats()
        for stats in per_site:
            total = total.merge(stats[column])
        if total.missing:
            indicators.append(column)
        if kind == "numeric":
            if total.count == 0:
                continue
            mean = total.total / total.count
            variance = max(total.squares / total.count - mean * mean, 0.0)
            std = math.sqrt(variance)
            numeric[column] = (mean, std if std > 1e-12 else 1.0)
        else:
            categories[column] = tuple(sorted(total.categories))
    return Encoding(numeric, tuple(indicators), categories)


def feature_stats(
    train: TabularData, n_features: int, threshold: int = 1
) -> dict[str, list[float]]:
    """A site's sums and counts of its first `n_features` unscaled columns (NaN = missing).

    A column whose values would give away fewer than `threshold` persons (between 1 and
    threshold-1 values present, or, for a 0/1 column, that few ones or zeros: its sum is a
    count of persons) is reported as missing in every row, as if the site had none.
    """
    x = train.x[:, :n_features].astype(np.float64)
    small = [j for j in range(x.shape[1]) if _gives_away(x[:, j], threshold)]
    x[:, small] = np.nan
    present = ~np.isnan(x)
    values = np.where(present, x, 0.0)
    return {
        "count": present.sum(axis=0).astype(float).tolist(),
        "total": values.sum(axis=0).tolist(),
        "squares": (values * values).sum(axis=0).tolist(),
        "missing": (~present).sum(axis=0).astype(float).tolist(),
    }


def _gives_away(column: np.ndarray, threshold: int) -> bool:
    """Whether a column's sum or count would release a count of 1 to threshold-1 persons."""
    values = column[~np.isnan(column)]
    counts = [len(values)]
    if np.isin(values, (0.0, 1.0)).all():
        ones = int(values.sum())
        counts += [ones, len(values) - ones]
    return any(0 < n < threshold for n in counts)


def scaling_of(per_site: list[dict[str, list[float]]], names: list[str]) -> Scaling:
    """Every site's features standardised alike: the mean and standard deviation of all
    sites' training rows together (a feature no site has a value of is left as it is)."""
    kinds = dict.fromkeys(names, "numeric")
    stats = [
        {
            name: ColumnStats(
                int(site["count"][j]),
                float(site["total"][j]),
                float(site["squares"][j]),
                int(site["missing"][j]),
            )
            for j, name in enumerate(names)
        }
        for site in per_site
    ]
    numeric = combine(stats, kinds).numeric
    pairs = [numeric.get(name, (0.0, 1.0)) for name in names]
    return Scaling(center=tuple(c for c, _ in pairs), scale=tuple(s for _, s in pairs))
