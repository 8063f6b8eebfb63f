"""A site's release of a hub analysis leaves out a model whose sums would count a few rows."""

import numpy as np
import pytest

from flip.data.features.store_analysis import AnalysisSpec, site_release
from flip.data.features.tabular import TabularData
from flip.fl.tasks import mace_task


def _data(outcome: np.ndarray) -> TabularData:
    rng = np.random.default_rng(0)
    n = len(outcome)
    male = np.zeros(n)
    male[0] = 1.0  # one man: his row would be the model's only "male" row
    x = np.column_stack([rng.normal(60, 10, n), male])
    return TabularData(np.arange(n), x, outcome, ["age", "male"])


def test_a_regression_with_one_row_in_an_indicator_level_is_withheld_in_every_round():
    spec = AnalysisSpec(kind="regression", data=mace_task().data, covariates=["age", "male"])
    data = _data((np.arange(60) % 3 == 0).astype(float))
    release = site_release(data, spec, 0, None, 10)
    assert release["withheld"] is True and "newton" not in release
    assert release["left_out"] == "withheld", "none is left out: not 1 to 9 ('<10')"
    with pytest.raises(ValueError, match="male"):
        site_release(data, spec, 1, [0.0, 0.0, 0.0], 10)


def test_a_cox_model_with_one_row_in_an_indicator_level_is_withheld_beside_its_curve():
    survival_data = mace_task().data.model_copy(update={"outcome": "time-to-event"})
    spec = AnalysisSpec(kind="survival", data=survival_data, covariates=["age", "male"])
    times = np.column_stack([np.linspace(10, 900, 60), (np.arange(60) % 2).astype(float)])
    data = _data(times)
    release = site_release(data, spec, 0, None, 10)
    assert release["cox"] is None and release["km"]
    with pytest.raises(ValueError, match="male"):
        site_release(data, spec, 1, [0.0, 0.0], 10)


@pytest.mark.parametrize("events", [1, 55])
def test_a_cox_model_with_few_events_or_few_censored_is_withheld(events):
    """One event: the gradient and Hessian at 0 give that person's 0/1 covariate; few
    censored: the released n less events counts them."""
    survival_data = mace_task().data.model_copy(update={"outcome": "time-to-event"})
    spec = AnalysisSpec(kind="survival", data=survival_data, covariates=["age"])
    event = (np.arange(60) < events).astype(float)
    data = _data(np.column_stack([np.linspace(10, 900, 60), event]))
    release = site_release(data, spec, 0, None, 10)
    assert release["cox"] is None and release["counts"] is None
    with pytest.raises(ValueError, match="event"):
        site_release(data, spec, 1, [0.0], 10)
