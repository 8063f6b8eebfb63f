"""Dirichlet partitions into non-IID sites: the smaller alpha, the more the sites differ."""

import numpy as np
import pytest

from flip.synth.partition import calibrations, partition


def _pool(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2, n), rng.normal(60, 10, n)


def _spread(skew, alpha, measure, draws=20):
    y, age = _pool()
    spreads = []
    for draw in range(draws):
        parts = partition(skew, y, age, 4, alpha, np.random.default_rng(draw))
        assert sorted(np.concatenate(parts)) == list(range(len(y))), "every row once"
        values = [measure(y[p], age[p], len(p)) for p in parts if len(p)]
        spreads.append(np.std(values))
    return float(np.mean(spreads))


@pytest.mark.parametrize(
    ("skew", "measure"),
    [
        ("label", lambda y, age, n: y.mean()),
        ("quantity", lambda y, age, n: n),
        ("feature", lambda y, age, n: age.mean()),
    ],
)
def test_each_skew_moves_its_own_quantity_more_as_alpha_falls(skew, measure):
    skewed, mild, iid = (
        _spread(skew, 0.3, measure),
        _spread(skew, 100.0, measure),
        _spread("iid", 1.0, measure),
    )
    assert skewed > 3 * mild
    assert iid < skewed / 10, "an IID cut is the reference: sites alike"


def test_feature_skew_keeps_the_outcome_rate_of_the_pool():
    y, age = _pool()
    parts = partition("feature", y, age, 4, 0.3, np.random.default_rng(1))
    assert max(abs(y[p].mean() - y.mean()) for p in parts if len(p) > 200) < 0.08


def test_bad_partitions_and_calibrations():
    y, age = _pool(100)
    with pytest.raises(ValueError, match="unknown skew"):
        partition("time", y, age, 3, 1.0, np.random.default_rng())
    with pytest.raises(ValueError, match="alpha"):
        partition("label", y, age, 3, 0.0, np.random.default_rng())
    scales = calibrations(5, np.random.default_rng(0), spread=0.3)
    assert np.all((scales > np.exp(-0.3)) & (scales < np.exp(0.3))) and len(set(scales)) == 5
