"""Issue 19 item 6, a hostile hub's Newton round: a site answers round k > 0 of an analysis
only when it released round 0 of that analysis (same project, same spec hash), and guards
every round's cohort, so a round 1 sent for a cohort one person away from a released one
is refused instead of giving away that person's covariates and outcome."""

import json

import pytest

from flip.config import AutoApproval, SiteConfig, SitePolicy
from flip.data.features.store_analysis import AnalysisSpec
from flip.data.ledger import Ledger
from flip.fl.tasks import mace_task
from flip.site import analyses
from tests.conftest import build_site
from tests.site.test_hostile_hub import less_one


class _Hub:
    def __init__(self) -> None:
        self.sent: list[tuple[int, int, bool, str | None]] = []

    def release_analysis(self, analysis_id, round_, release, refused=None):
        self.sent.append((analysis_id, round_, release is not None, refused))


@pytest.fixture
def site(tmp_path):
    config = SiteConfig.load(build_site(tmp_path, "hs", "fhir-bundle", 160, 2))
    config.policy = SitePolicy(auto_approve=[AutoApproval(kinds=["analysis:regression"])])
    return config


def _spec(time_bin: int) -> AnalysisSpec:
    return AnalysisSpec(
        kind="regression",
        data=mace_task().data,
        covariates=["age", "systolic_bp"],
        time_bin=time_bin,
    )


def test_a_newton_round_of_an_analysis_whose_round_0_was_refused_is_refused(site, monkeypatch):
    drop = less_one(monkeypatch)
    hub = _Hub()
    handler = analyses.Analyses(site, hub)
    first, second = _spec(21), _spec(22)
    item = {"project_id": 2, "proposal": None}
    handler.handle(item | {"id": 1, "round": 0, "hash": first.digest(), "spec": first.body()})
    drop["one"] = True
    handler.handle(item | {"id": 2, "round": 0, "hash": second.digest(), "spec": second.body()})
    newton = {"round": 1, "proposal": [0.0, 0.0, 0.0]}
    handler.handle(item | newton | {"id": 3, "hash": second.digest(), "spec": second.body()})
    assert [(s[0], s[2]) for s in hub.sent] == [(1, True), (2, False), (3, False)]
    assert "round 0" in hub.sent[-1][3]
    refused = [
        json.loads(e["detail"])
        for e in Ledger(site.ledger).entries()
        if e["action"] == "analysis.refused"
    ]
    assert refused[-1]["analysis"] == 3


def test_a_newton_round_of_another_project_or_never_started_analysis_is_refused(site):
    hub = _Hub()
    handler = analyses.Analyses(site, hub)
    spec = _spec(23)
    item = {"hash": spec.digest(), "spec": spec.body()}
    handler.handle(item | {"project_id": 4, "id": 5, "round": 0, "proposal": None})
    newton = {"round": 1, "proposal": [0.0, 0.0, 0.0]}
    handler.handle(item | newton | {"project_id": 5, "id": 6})
    handler.handle(item | newton | {"project_id": 4, "id": 7})
    assert [(s[0], s[2]) for s in hub.sent] == [(5, True), (6, False), (7, True)]


def test_every_rounds_cohort_is_guarded(site, monkeypatch):
    """Round 0 released on the whole cohort; a later round whose cohort is one person less
    (the data changed, or a hub resent under a new id) is refused by the guard."""
    drop = less_one(monkeypatch)
    hub = _Hub()
    handler = analyses.Analyses(site, hub)
    spec = _spec(24)
    item = {"project_id": 6, "hash": spec.digest(), "spec": spec.body()}
    handler.handle(item | {"id": 8, "round": 0, "proposal": None})
    drop["one"] = True
    handler.handle(item | {"id": 9, "round": 1, "proposal": [0.0, 0.0, 0.0]})
    assert [(s[0], s[2]) for s in hub.sent] == [(8, True), (9, False)]
    assert "differs by 1 to 9 persons" in hub.sent[-1][3]
