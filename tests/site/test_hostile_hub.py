"""A hostile hub's Newton rounds: a site answers only proposals of one finite number per
coefficient that spread the weight over at least its smallest cell of rows, and at most
MAX_ROUNDS rounds of an approved analysis whatever ids and round numbers the hub claims."""

import json
import re

import numpy as np
import pytest

from flip.config import AutoApproval, SiteConfig, SitePolicy
from flip.data.features.store_analysis import AnalysisSpec, Declined, site_release
from flip.data.features.tabular import TabularData
from flip.data.ledger import Ledger
from flip.fl.tasks import mace_task
from flip.site.analyses import Analyses
from tests.conftest import build_site

MIN_CELL = 10


def _cohort(n: int = 200, seed: int = 0) -> TabularData:
    """Ages 30 to 70, and one person of 90."""
    rng = np.random.default_rng(seed)
    age = np.append(rng.integers(30, 71, n - 1), 90).astype(float)
    male = (rng.random(n) < 0.5).astype(float)
    y = (rng.random(n) < 1 / (1 + np.exp(-(age - 60) / 10))).astype(float)
    x = np.column_stack([age, male])
    return TabularData(np.arange(n), x, y, ["age", "male"])


def _logistic() -> AnalysisSpec:
    return AnalysisSpec(kind="regression", data=mace_task().data, covariates=["age", "male"])


@pytest.mark.parametrize(
    ("proposal", "why"),
    [
        ([0.0, 0.0], "is not 3 coefficients"),
        ([0.0, 0.0, 0.0, 0.0], "is not 3 coefficients"),
        ("0,0,0", "is not 3 coefficients"),
        ([0.0, "1", 0.0], "is not 3 coefficients"),
        ([0.0, float("nan"), 0.0], "not a finite number"),
        ([0.0, float("inf"), 0.0], "not a finite number"),
        ([0.0, 1e300, 0.0], "linear predictor beyond"),
    ],
)
def test_a_malformed_or_extreme_proposal_is_declined(proposal, why):
    with pytest.raises(Declined, match=why):
        site_release(_cohort(), _logistic(), 1, proposal, MIN_CELL)


def test_a_proposal_that_lets_the_oldest_person_dominate_is_declined():
    data = _cohort()
    # The 90-year-old at p = 1/2, everyone else below p = 1e-7: the Hessian would be theirs.
    isolating = [-0.8 * 90, 0.8, 0.0]
    with pytest.raises(Declined, match="fewer rows carry the weight than the site's minimum 10:"):
        site_release(data, _logistic(), 1, isolating, MIN_CELL)
    try:
        site_release(data, _logistic(), 1, isolating, MIN_CELL)
    except Declined as exc:  # the hub reads the reason: no statistic of the rows in it
        assert not re.search(r"\d\.\d", str(exc)), str(exc)
    fitted = site_release(data, _logistic(), 1, [-6.0, 0.1, 0.0], MIN_CELL)
    assert len(fitted["newton"]["gradient"]) == 3, "a proposal near the fit is answered"


def test_a_cox_proposal_that_lets_one_row_dominate_the_risk_sets_is_declined():
    data = _cohort()
    t = np.random.default_rng(1).exponential(300, len(data.y))
    survival = TabularData(data.person_ids, data.x, np.column_stack([t, data.y]), ["age", "male"])
    spec = AnalysisSpec(
        kind="survival",
        data=mace_task().data.model_copy(update={"outcome": "time-to-event"}),
        covariates=["age", "male"],
    )
    with pytest.raises(Declined, match="rows carry the weight"):
        site_release(survival, spec, 1, [0.5, 0.0], MIN_CELL)
    assert site_release(survival, spec, 1, [0.02, 0.1], MIN_CELL)["newton"]["hessian"]


def test_a_linear_regression_or_a_cox_model_without_covariates_takes_no_newton_round():
    data = _cohort()
    value = TabularData(data.person_ids, data.x, data.x[:, 0] * 2.0, ["age", "male"])
    linear = AnalysisSpec(
        kind="regression",
        data=mace_task().data.model_copy(update={"outcome": "regression"}),
        covariates=["age", "male"],
    )
    with pytest.raises(Declined, match="takes no Newton rounds"):
        site_release(value, linear, 1, [0.0, 0.0, 0.0], MIN_CELL)
    survival = TabularData(data.person_ids, data.x, np.column_stack([data.x[:, 0], data.y]), [])
    curves = AnalysisSpec(
        kind="survival", data=mace_task().data.model_copy(update={"outcome": "time-to-event"})
    )
    with pytest.raises(Declined, match="takes no Newton rounds"):
        site_release(survival, curves, 1, [], MIN_CELL)


class _Hub:
    def __init__(self):
        self.sent = []

    def release_analysis(self, analysis_id, round_, release, refused=None):
        self.sent.append((analysis_id, round_, release is not None, refused))


def less_one(monkeypatch) -> dict[str, bool]:
    """Make the site's extract drop its first person while the returned flag is set."""
    from flip.site import analyses

    real = analyses.extract
    drop = {"one": False}

    def extract(store, spec):
        data = real(store, spec)
        if not drop["one"]:
            return data
        keep = np.arange(len(data.y)) != 0
        return TabularData(data.person_ids[keep], data.x[keep], data.y[keep], data.feature_names)

    monkeypatch.setattr(analyses, "extract", extract)
    return drop


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    return SiteConfig.load(build_site(root, "hs", "fhir-bundle", 160, 2))


def test_the_rounds_a_site_answers_of_one_analysis_are_counted_across_ids(site, monkeypatch):
    from flip.site import analyses

    monkeypatch.setattr(analyses, "MAX_ROUNDS", 3)
    site.policy = SitePolicy(auto_approve=[AutoApproval(kinds=["analysis:table1"])])
    hub = _Hub()
    spec = AnalysisSpec(kind="table1", data=mace_task().data, time_bin=13)
    handler = Analyses(site, hub)
    # The hub sends the approved hash again under new ids, each claiming round 0.
    for analysis_id in (101, 102, 103, 104):
        item = {"id": analysis_id, "project_id": 1, "hash": spec.digest(), "spec": spec.body()}
        handler.handle(item | {"round": 0, "proposal": None})
    assert [s[2] for s in hub.sent] == [True, True, True, False]
    assert hub.sent[-1][3] == "this site answers at most 3 rounds of an analysis"
    refused = [
        json.loads(e["detail"])
        for e in Ledger(site.ledger).entries()
        if e["action"] == "analysis.refused"
    ]
    assert refused[-1]["analysis"] == 104


def test_an_analysis_whose_cohort_differs_by_a_few_persons_from_one_released_is_refused(
    site, monkeypatch
):
    """Table 1 of a cohort, then of the same cohort less one person: n and the sum of age
    differ by that person's age. The second is refused; the first again is released."""
    site.policy = SitePolicy(auto_approve=[AutoApproval(kinds=["analysis:table1"])])
    drop = less_one(monkeypatch)
    hub = _Hub()
    handler = Analyses(site, hub)
    first = AnalysisSpec(kind="table1", data=mace_task().data, time_bin=21)
    second = AnalysisSpec(kind="table1", data=mace_task().data, time_bin=22)
    item = {"project_id": 2, "round": 0, "proposal": None}
    handler.handle(item | {"id": 201, "hash": first.digest(), "spec": first.body()})
    drop["one"] = True
    handler.handle(item | {"id": 202, "hash": second.digest(), "spec": second.body()})
    drop["one"] = False
    handler.handle(item | {"id": 203, "hash": first.digest(), "spec": first.body()})
    assert [(s[0], s[2]) for s in hub.sent] == [(201, True), (202, False), (203, True)]
    assert "differs by 1 to 9 persons" in hub.sent[1][3]
    other_project = item | {"project_id": 3, "id": 204, "hash": second.digest()}
    drop["one"] = True
    handler.handle(other_project | {"spec": second.body()})
    assert hub.sent[-1][2], "another project was given no count of the first cohort"
