"""Kaplan-Meier, log-rank and Cox from site partials equal lifelines/statsmodels on pooled data."""

import json

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.datasets import load_rossi
from lifelines.statistics import multivariate_logrank_test
from statsmodels.duration.hazard_regression import PHReg

from flip.stats import cox, newton, survival
from tests.stats.conftest import split


def _sites(frame: pd.DataFrame, rng) -> list[pd.DataFrame]:
    return [frame.iloc[i].reset_index(drop=True) for i in split(len(frame), rng)]


def _released_times(site: pd.DataFrame, partial: dict, width: float) -> np.ndarray:
    """Each row's time rounded up to the end of the released bin that holds it."""
    ends = np.array([b[0] for b in partial["bins"]])
    return ends[np.searchsorted(ends, np.ceil(site["t"] / width) * width)]


@pytest.fixture
def cohort(rng):
    n = 6_000
    t = rng.exponential(40, n)
    censor = rng.uniform(0, 90, n)
    return pd.DataFrame({"t": np.minimum(t, censor), "e": (t <= censor).astype(int)})


def test_kaplan_meier_and_logrank_equal_lifelines_on_the_released_times(cohort, rng):
    sites, width = _sites(cohort, rng), 2.0
    partials = [
        json.loads(json.dumps(survival.km_partial(s["t"].values, s["e"].values, width, 10)))
        for s in sites
    ]
    times = np.concatenate(
        [_released_times(s, p, width) for s, p in zip(sites, partials, strict=True)]
    )
    events = np.concatenate([s["e"].values for s in sites])
    groups = np.concatenate([np.full(len(s), k) for k, s in enumerate(sites)])
    km = survival.kaplan_meier(partials)
    reference = KaplanMeierFitter().fit(times, events)
    expected = reference.survival_function_at_times(km["times"]).values
    assert np.allclose(km["survival"], expected, atol=1e-12)
    bands = reference.confidence_interval_.loc[km["times"]].values
    assert np.allclose(km["lower"], bands[:, 0], atol=1e-9)
    assert np.allclose(km["upper"], bands[:, 1], atol=1e-9)
    assert km["median"] == reference.median_survival_time_
    result = survival.logrank(partials)
    pooled = multivariate_logrank_test(times, groups, events)
    assert np.isclose(result["statistic"], pooled.test_statistic, rtol=1e-9)
    assert np.isclose(result["p"], pooled.p_value, rtol=1e-6)


def test_no_released_bin_holds_between_one_and_min_cell_minus_one(cohort):
    partial = survival.km_partial(cohort["t"].values[:700], cohort["e"].values[:700], 0.5, 10)
    assert partial["bins"]
    for _, events, censored in partial["bins"]:
        assert events == 0 or events >= 10
        assert censored == 0 or censored >= 10
    assert sum(d + c for _, d, c in partial["bins"]) == 700


def test_a_site_too_small_to_release_is_withheld():
    partial = survival.km_partial(np.array([1.0, 2.0, 3.0]), np.array([1, 0, 1]), 1.0, 10)
    assert partial == {"bins": [], "withheld": True}
    assert survival.kaplan_meier([partial])["times"] == []


def _fit_cox(sites, covariates):
    def site_fn(s):
        x = s[covariates].values.astype(float)
        t, e = s["t"].values, s["e"].values
        return lambda beta: json.loads(json.dumps(cox.cox_partial(t, e, x, beta)))

    return newton.fit([site_fn(s) for s in sites], len(covariates))


def test_cox_equals_lifelines_stratified_by_site_on_untied_times(rng):
    n = 3_000
    x = rng.normal(size=(n, 3))
    t = rng.exponential(np.exp(-(x @ [0.5, -0.3, 0.0])))
    censor = rng.exponential(1.5, n)
    frame = pd.DataFrame(x, columns=["a", "b", "c"])
    frame["t"], frame["e"] = np.minimum(t, censor), (t <= censor).astype(int)
    sites = _sites(frame, rng)
    fit = _fit_cox(sites, ["a", "b", "c"])
    pooled = pd.concat([s.assign(site=k) for k, s in enumerate(sites)])
    reference = CoxPHFitter().fit(pooled, "t", "e", strata=["site"])
    assert np.allclose(fit["beta"], reference.params_.values, atol=1e-6)
    se = np.sqrt(np.diag(fit["covariance"]))
    assert np.allclose(se, reference.standard_errors_.values, rtol=1e-5)


def test_cox_with_ties_equals_statsmodels_breslow_on_rossi(rng):
    rossi = load_rossi().rename(columns={"week": "t", "arrest": "e"})
    covariates = ["fin", "age", "race", "wexp", "mar", "paro", "prio"]
    sites = _sites(rossi, rng)
    fit = _fit_cox(sites, covariates)
    pooled = pd.concat([s.assign(site=k) for k, s in enumerate(sites)])
    reference = PHReg(
        pooled["t"], pooled[covariates], status=pooled["e"], strata=pooled["site"], ties="breslow"
    ).fit()
    assert np.allclose(fit["beta"], reference.params, atol=1e-6)
    assert np.allclose(np.sqrt(np.diag(fit["covariance"])), reference.bse, rtol=1e-5)


def test_logrank_between_groups_across_sites_equals_lifelines(cohort, rng):
    cohort = cohort.assign(arm=rng.choice(["a", "b", "c"], len(cohort)))
    cohort.loc[cohort["arm"] == "b", "t"] *= 0.8
    partials, owners, times, events = [], [], [], []
    for site in _sites(cohort, rng):
        for arm, rows in site.groupby("arm"):
            rows = rows.reset_index(drop=True)
            partial = survival.km_partial(rows["t"].values, rows["e"].values, 1.0, 10)
            partials.append(partial)
            owners.append(arm)
            times.append(pd.Series(_released_times(rows, partial, 1.0)))
            events.append(rows[["e", "arm"]])
    result = survival.logrank(partials, owners)
    released = pd.concat(events, ignore_index=True).assign(t=pd.concat(times, ignore_index=True))
    pooled = multivariate_logrank_test(released["t"], released["arm"], released["e"])
    assert result["df"] == 2
    assert np.isclose(result["statistic"], pooled.test_statistic, rtol=1e-9)
    assert result["p"] < 0.01


def test_logrank_without_events_gives_no_p_and_says_why():
    time = np.arange(1.0, 41.0)
    partials = [survival.km_partial(time[k::2], np.zeros(20), 100.0, 10) for k in (0, 1)]
    result = survival.logrank(partials)
    assert result["p"] is None and result["statistic"] is None
    assert result["reason"] == "no events in the released counts"
