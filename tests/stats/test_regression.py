"""Federated linear and logistic regression equal statsmodels on the pooled rows."""

import json

import numpy as np
import pytest
import statsmodels.api as sm
from statsmodels.datasets import fair

from flip.stats import newton, regression
from tests.stats.conftest import split


@pytest.fixture
def affairs():
    """The Fair (1978) extramarital affairs survey shipped with statsmodels: 6,366 rows."""
    data = fair.load_pandas().data
    x = sm.add_constant(data[["rate_marriage", "age", "yrs_married", "children", "religious"]])
    return x.values.astype(float), data["affairs"].values.astype(float)


def _travel(partial):
    return json.loads(json.dumps(partial))


def test_linear_regression_equals_ols(affairs, rng):
    x, y = affairs
    parts = [_travel(regression.linear_partial(x[i, 1:], y[i])) for i in split(len(y), rng)]
    fit = regression.linear_fit(parts)
    reference = sm.OLS(y, x).fit()
    assert np.allclose(fit["beta"], reference.params, rtol=1e-9)
    assert np.allclose(np.sqrt(np.diag(fit["covariance"])), reference.bse, rtol=1e-9)


def test_linear_regression_standard_errors_hold_at_large_means(rng):
    # Sums of squares of values near 1e6 cancel in X'X-based formulas; centred co-moments do not.
    n = 3_000
    x = 1e6 + rng.normal(size=(n, 2))
    y = 1e6 + x @ [2.0, -1.0] + rng.normal(size=n)
    parts = [_travel(regression.linear_partial(x[i], y[i])) for i in split(n, rng)]
    fit = regression.linear_fit(parts)
    reference = sm.OLS(y, sm.add_constant(x)).fit()
    assert np.allclose(fit["beta"][1:], reference.params[1:], rtol=1e-6)
    assert np.allclose(np.sqrt(np.diag(fit["covariance"])), reference.bse, rtol=1e-5)
    assert np.isclose(fit["sigma"], np.sqrt(reference.scale), rtol=1e-6)


def test_linear_regression_refuses_a_constant_covariate(rng):
    x = np.column_stack([rng.normal(size=50), np.full(50, 3.0)])
    with pytest.raises(ValueError, match="covariate 2 is constant"):
        regression.linear_fit([regression.linear_partial(x, rng.normal(size=50))])


def test_logistic_regression_equals_statsmodels_logit(affairs, rng):
    x, y = affairs
    y = (y > 0).astype(float)

    def site(rows):
        return lambda beta: _travel(regression.logistic_partial(x[rows], y[rows], beta))

    fit = newton.fit([site(i) for i in split(len(y), rng)], x.shape[1])
    reference = sm.Logit(y, x).fit(disp=0)
    assert fit["steps"] < 15
    assert np.allclose(fit["beta"], reference.params, rtol=1e-7)
    assert np.allclose(np.sqrt(np.diag(fit["covariance"])), reference.bse, rtol=1e-6)
    assert np.isclose(fit["loglik"], reference.llf, rtol=1e-10)


def test_perfect_separation_is_a_clear_error(rng):
    x = np.column_stack([np.ones(200), rng.normal(size=200)])
    y = (x[:, 1] > 0).astype(float)
    with pytest.raises(newton.NotConverged):
        newton.fit([lambda beta: regression.logistic_partial(x, y, beta)], 2)
