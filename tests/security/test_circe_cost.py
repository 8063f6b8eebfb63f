"""Issue 19 item 1, one costly query: a Circe cohort of many inclusion rules tied a site's
agent for minutes (OHDSI's translator re-tokenized the whole script for each pattern, so
the time grew with the rules squared). Its translation now grows linearly, and the agent
gives each work item at most the policy's `max_item_seconds`: past it the item is refused
with the reason, audited, and the agent goes on with the next."""

import copy
import json
import time
from pathlib import Path

import pytest

from flip.config import SiteConfig, SitePolicy
from flip.data.cohort.circe.run import _statements
from flip.data.ledger import Ledger
from flip.hub.app import bootstrap_admin, create_app
from flip.hub.client import ResearcherClient
from flip.hub.server import BackgroundServer
from flip.site.agent import SiteAgent
from flip.site.hub_client import HubClient
from tests.conftest import build_site

CIRCE = Path(__file__).parents[1] / "data" / "circe" / "smokers_with_high_hba1c.json"


def _rules(n: int) -> dict:
    """The smokers cohort with `n` inclusion rules, each one measurement criterion."""
    base = json.loads(CIRCE.read_text())
    rule = base["InclusionRules"][1]
    base["InclusionRules"] = [copy.deepcopy(rule) | {"name": f"r{i}"} for i in range(n)]
    for i, each in enumerate(base["InclusionRules"]):
        criteria = each["expression"]["CriteriaList"][0]["Criteria"]
        criteria["Measurement"]["ValueAsNumber"]["Value"] = i / 100
    return base


def _translation_seconds(n: int) -> float:
    start = time.perf_counter()
    _statements.__wrapped__(json.dumps(_rules(n), sort_keys=True), "main", "duckdb")
    return time.perf_counter() - start


def test_the_translation_of_a_circe_cohort_grows_linearly_with_its_rules():
    _translation_seconds(2)  # imports and compiled patterns
    few, many = _translation_seconds(5), _translation_seconds(40)
    # Linear: at most 8 times (less with the fixed part); quadratic was over 30 times.
    assert many / few < 16, (few, many)


@pytest.fixture
def agent(tmp_path):
    app = create_app(f"sqlite:///{tmp_path / 'hub.sqlite'}")
    hub = BackgroundServer(app).start()
    admin = ResearcherClient(hub.url, bootstrap_admin(app.state.engine))
    researcher = ResearcherClient(hub.url, admin.create_user("rita", "researcher"))
    site = SiteConfig.load(build_site(tmp_path, "north", "fhir-bundle", 120, 3))
    client = HubClient(hub.url, HubClient.enrol(hub.url, admin.create_site("north")))
    yield SiteAgent(site, client), researcher
    client.close()
    hub.stop()


def test_a_query_past_the_sites_time_limit_is_refused_and_the_agent_goes_on(agent):
    agent, researcher = agent
    agent.site.policy = SitePolicy(max_item_seconds=0.01)
    pid = researcher.create_project("costly")
    researcher.invite(pid, ["north"])
    costly = researcher.create_query(pid, "forty rules", _rules(40))
    agent.run_once()
    refused = researcher.query(costly)["results"]["north"]
    assert refused["count"] is None
    assert "longer than the site's limit of 0.01 s" in refused["error"], refused
    with Ledger(agent.site.ledger) as ledger:
        failed = [e for e in ledger.entries() if e["action"] == "query.failed"]
    assert "TimeLimit" in failed[-1]["detail"]
    agent.site.policy = SitePolicy()
    cheap = researcher.create_query(pid, "everyone", {"name": "all"})
    agent.run_once()
    assert researcher.query(cheap)["results"]["north"]["count"] > 0
