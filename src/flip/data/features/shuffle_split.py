"""Random train/test splits, optionally stratified, drawn exactly as scikit-learn draws them.

`train_test_indices(n, f, seed, stratify=y)` returns the index arrays that
`sklearn.model_selection.train_test_split(range(n), test_size=f, random_state=seed,
stratify=y)` returns (scikit-learn 1.x's ShuffleSplit and StratifiedShuffleSplit, from a
`numpy.random.RandomState(seed)`), so splits made before and after stay the same,
without importing scikit-learn (several seconds, with SciPy and pandas) on the paths
that split.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import ceil

import numpy as np


def train_test_indices(
    n: int, test_fraction: float, seed: int, stratify: Sequence | np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices) of `n` rows: ceil(test_fraction * n) test rows, drawn
    by `seed`; with `stratify`, each class keeps its share in both (ValueError when a
    class has fewer than two rows or a side has fewer rows than there are classes)."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test fraction {test_fraction} is not between 0 and 1")
    n_test = ceil(test_fraction * n)
    n_train = n - n_test
    if n_train <= 0:
        raise ValueError(f"test fraction {test_fraction} leaves no training row")
    rng = np.random.RandomState(seed)
    if stratify is None:
        permutation = rng.permutation(n)
        return permutation[n_test : n_test + n_train], permutation[:n_test]
    return _stratified(np.asarray(stratify), n_train, n_test, rng)


def _stratified(
    y: np.ndarray, n_train: int, n_test: int, rng: np.random.RandomState
) -> tuple[np.ndarray, np.ndarray]:
    classes, y_indices, class_counts = np.unique(y, return_inverse=True, return_counts=True)
    if class_counts.min() < 2:
        raise ValueError("a class has too few rows to stratify")
    if min(n_train, n_test) < len(classes):
        raise ValueError(
            f"the training or test split has fewer rows than the {len(classes)} classes"
        )
    class_indices = np.split(np.argsort(y_indices, kind="stable"), np.cumsum(class_counts)[:-1])
    n_i = _approximate_mode(class_counts, n_train, rng)
    t_i = _approximate_mode(class_counts - n_i, n_test, rng)
    train: list[int] = []
    test: list[int] = []
    for i in range(len(classes)):
        shuffled = class_indices[i].take(rng.permutation(class_counts[i]), mode="clip")
        train.extend(shuffled[: n_i[i]])
        test.extend(shuffled[n_i[i] : n_i[i] + t_i[i]])
    return rng.permutation(train), rng.permutation(test)


def _approximate_mode(
    class_counts: np.ndarray, n_draws: int, rng: np.random.RandomState
) -> np.ndarray:
    """Rows drawn from each class: the floor of its share, the rest by largest remainder
    (ties broken at random)."""
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need_to_add = int(n_draws - floored.sum())
    if need_to_add > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (indices,) = np.where(remainder == value)
            add_now = min(len(indices), need_to_add)
            floored[rng.choice(indices, size=add_now, replace=False)] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    return floored.astype(int)
