"""FLIP's splits are scikit-learn's train_test_split, index for index, without importing it."""

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from flip.data.features.shuffle_split import train_test_indices


def _cases():
    rng = np.random.default_rng(7)
    for case in range(120):
        n = int(rng.integers(8, 400))
        fraction = float(rng.choice([0.1, 0.2, 0.25, 0.3, 1 / 3, 0.5, 0.77]))
        classes = int(rng.integers(2, 5))
        y = rng.integers(0, classes, size=n).astype(np.float32)
        y[: 2 * classes] = np.repeat(np.arange(classes), 2)  # every class has two rows
        yield n, fraction, case, y if case % 3 else None


@pytest.mark.parametrize(("n", "fraction", "seed", "y"), list(_cases()))
def test_the_same_rows_as_scikit_learn(n, fraction, seed, y):
    try:
        theirs = train_test_split(np.arange(n), test_size=fraction, random_state=seed, stratify=y)
    except ValueError:
        with pytest.raises(ValueError):
            train_test_indices(n, fraction, seed, y)
        return
    ours = train_test_indices(n, fraction, seed, y)
    assert [list(a) for a in ours] == [list(a) for a in theirs]


def test_ties_in_the_class_shares_are_broken_as_scikit_learn_breaks_them():
    y = np.array([0, 0, 1, 1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4])
    for seed in range(30):
        theirs = train_test_split(np.arange(len(y)), test_size=0.5, random_state=seed, stratify=y)
        assert [list(a) for a in train_test_indices(len(y), 0.5, seed, y)] == [
            list(a) for a in theirs
        ]


def test_lists_of_labels_split_as_arrays_do():
    y = [0.0, 1.0] * 20
    assert [list(a) for a in train_test_indices(40, 0.25, 3, y)] == [
        list(a) for a in train_test_indices(40, 0.25, 3, np.array(y))
    ]


@pytest.mark.parametrize(
    ("n", "fraction", "y", "message"),
    [
        (10, 0.0, None, "not between 0 and 1"),
        (1, 0.5, None, "no training row"),
        (6, 0.5, [0, 0, 0, 0, 0, 1], "a class has too few rows"),
        (4, 0.25, [0, 0, 1, 1], "fewer rows than the 2 classes"),
    ],
)
def test_splits_that_cannot_be_made_say_why(n, fraction, y, message):
    with pytest.raises(ValueError, match=message):
        train_test_indices(n, fraction, 0, y)
