"""Whether a site may take part in a model: the cells its sums would count.

A regression's or Cox model's sums (X'X, X'y; each Newton round's gradient and Hessian)
count the rows of every 0/1 column; the simulation (`flip analyse`) and a site's release
to the hub (`flip.data.features.store_analysis`) both leave a site out of a model here.
"""

from __future__ import annotations

import numpy as np

from flip.stats.federated import INTERCEPT
from flip.stats.suppression import is_small


def model_withheld(x: np.ndarray, names: list[str], min_cell: int) -> str | None:
    """Why a site with design `x` (columns `names`) takes no part in a model: fewer than
    min_cell complete rows, or a small cell of its indicators; None if it takes part."""
    if len(x) < min_cell:
        return f"fewer than {min_cell} complete rows"
    return small_indicator_cell(x, names, min_cell)


def small_indicator_cell(x: np.ndarray, names: list[str], min_cell: int) -> str | None:
    """The first indicator (a 0/1 column: a category's level, a 0/1 covariate, a binary
    outcome, a Cox model's event) that is 1, or 0, on 1 to min_cell - 1 rows, or pair of
    them whose 2x2 table has such a cell, named: the model's sums (X'X, X'y; a first Newton
    step's gradient and Hessian) would count those rows and, for one row, tell its value."""
    flags = [
        j for j, name in enumerate(names) if name != INTERCEPT and np.isin(x[:, j], (0, 1)).all()
    ]
    n = len(x)
    for a, j in enumerate(flags):
        for k in flags[a:]:
            ones_j, ones_k = int(x[:, j].sum()), int(x[:, k].sum())
            both = int(x[:, j] @ x[:, k])
            cells = [
                ones_j,
                n - ones_j,
                both,
                ones_j - both,
                ones_k - both,
                n - ones_j - ones_k + both,
            ]
            if any(is_small(c, min_cell) for c in cells[: 2 if j == k else 6]):
                what = names[j] if j == k else f"{names[j]} with {names[k]}"
                return (
                    f"{what} leaves a cell of fewer than {min_cell} rows (and not none): "
                    "the model's sums would reveal them"
                )
    return None
