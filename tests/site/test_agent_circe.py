"""An ATLAS cohort (Circe JSON) asked through a real hub of three synthetic sites: each site's
agent releases the count and its attrition through its guard, the hub shows them per site
and combined, and what it holds is those released counts only."""

import json
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select

from flip.config import SiteConfig, SitePolicy
from flip.data.cdm.store import open_store
from flip.data.cohort.circe import load_definition
from flip.data.cohort.circe.attrition import attrition_counts
from flip.hub.app import bootstrap_admin, create_app
from flip.hub.client import ResearcherClient
from flip.hub.db import query_results
from flip.hub.server import BackgroundServer
from flip.site.agent import SiteAgent
from flip.site.hub_client import HubClient
from flip.stats.attrition import combine_attrition
from tests.conftest import build_site

CIRCE = Path(__file__).parents[1] / "data" / "circe"
SITES = {"north": ("fhir-bundle", 3), "east": ("fhir-ndjson", 4), "south": ("csv", 5)}


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    root = tmp_path_factory.mktemp("circe-network")
    app = create_app(f"sqlite:///{root / 'hub.sqlite'}")
    hub = BackgroundServer(app).start()
    admin = ResearcherClient(hub.url, bootstrap_admin(app.state.engine))
    researcher = ResearcherClient(hub.url, admin.create_user("rita", "researcher"))
    agents = {}
    for name, (fmt, seed) in SITES.items():
        site = SiteConfig.load(build_site(root, name, fmt, 160, seed))
        site.policy = SitePolicy(min_cell_size=10)
        client = HubClient(hub.url, HubClient.enrol(hub.url, admin.create_site(name)))
        agents[name] = SiteAgent(site, client)
    yield app, researcher, agents
    for agent in agents.values():
        agent.hub.close()
    hub.stop()


@pytest.mark.slow
def test_an_atlas_cohort_runs_at_three_sites_with_attrition_per_site_and_combined(network):
    app, researcher, agents = network
    cohort = "smokers_with_high_hba1c.json"
    pid = researcher.create_project(f"atlas {cohort}")
    researcher.invite(pid, list(SITES))
    text = (CIRCE / cohort).read_text(encoding="utf-8")
    qid = researcher.create_query(pid, cohort, json.loads(text))
    for agent in agents.values():
        agent.run_once()
    view = researcher.query(qid)
    definition = load_definition(text)
    assert view["pending"] == [] and view["steps"] == ["primary criteria", *definition.rule_names()]
    for name, agent in agents.items():
        store = open_store(agent.site.store, read_only=True)
        try:
            truth = attrition_counts(store, definition)
        finally:
            store.close()
        shown = view["results"][name]["attrition"]
        assert len(shown) == len(truth)
        for value, count in zip(shown, truth, strict=True):
            if 0 < count < 10:
                assert value == "<10"
            else:
                assert value in (count, "withheld")
        assert view["results"][name]["count"] in (truth[-1], None)
    sites = {name: view["results"][name]["attrition"] for name in SITES}
    assert view["attrition"] == combine_attrition(sites)
    assert isinstance(view["attrition"][0], int) and view["attrition"][0] > 0
    with app.state.engine.connect() as conn:
        stored = conn.execute(
            select(query_results.c.attrition).where(query_results.c.query_id == qid)
        ).scalars()
        assert sorted(orjson.loads(s) for s in stored) == sorted(sites.values())
