"""Federated preprocessing: one encoding for every site, from sums and counts, never rows.

Each site sends `ColumnStats` for its training rows; their merge gives global
means and standard deviations (standardisation and mean imputation), which
columns need a missing-value indicator, and each categorical column's vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from flip.data.features.csvfile import ColumnStats, as_number, is_missing


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
