"""Issue 19, forged results: the rounds, completion and results of a run the hub's own
Flower federation drives (a deployment run) come only from the hub's recorder. A project
researcher who posts rounds or completes it with results gets 409 and changes nothing;
cancelling stays theirs. A simulation run (the researcher's own Flower) is recorded as
before."""

import pytest
from sqlalchemy import update

from flip.config import SiteConfig
from flip.fl.tasks import mace_task, task_hash
from flip.hub.app import bootstrap_admin, create_app
from flip.hub.client import HubError, ResearcherClient
from flip.hub.db import runs
from flip.hub.server import BackgroundServer
from flip.site.agent import SiteAgent
from flip.site.approvals import decide
from flip.site.hub_client import HubClient


@pytest.fixture
def joined(tmp_path):
    """(app, researcher, deployment run, simulation run), both joined by one site."""
    app = create_app(f"sqlite:///{tmp_path / 'hub.sqlite'}")
    hub = BackgroundServer(app).start()
    admin = ResearcherClient(hub.url, bootstrap_admin(app.state.engine))
    researcher = ResearcherClient(hub.url, admin.create_user("rita", "researcher"))
    project = researcher.create_project("forged")
    site = SiteConfig(name="alpha", store="-", ledger=str(tmp_path / "ledger.sqlite"))
    client = HubClient(hub.url, HubClient.enrol(hub.url, admin.create_site("alpha")))
    researcher.invite(project, ["alpha"])
    spec = mace_task()
    digest = task_hash(spec)
    researcher.propose_task(project, digest, spec.kind, spec.model_dump(mode="json"))
    decide(site, client, project, digest, "approved", by="site-admin")
    deployed = researcher.create_run(project, digest, 2, runtime="deployment")
    simulated = researcher.create_run(project, digest, 2)
    SiteAgent(site, client).run_once()
    # As the hub's SuperLink does once it submits a deployment run (this hub runs none).
    with app.state.engine.begin() as conn:
        conn.execute(update(runs).where(runs.c.id == deployed).values(status="running"))
    yield app, researcher, deployed, simulated
    client.close()
    hub.stop()


def _status(call) -> int:
    with pytest.raises(HubError) as raised:
        call()
    return raised.value.status


def test_a_researcher_cannot_post_rounds_or_results_of_a_deployment_run(joined):
    _, researcher, run, _ = joined
    assert _status(lambda: researcher.add_round(run, 1, {"auc": 0.999})) == 409
    forged = {"per_site": {}, "auc": 0.999}
    assert _status(lambda: researcher.set_run_status(run, "completed", forged)) == 409
    assert _status(lambda: researcher.set_run_status(run, "failed")) == 409
    shown = researcher.run(run)
    assert (shown["status"], shown["round_metrics"], shown["results"]) == ("running", [], None)
    researcher.set_run_status(run, "cancelled")
    assert researcher.run(run)["status"] == "cancelled"


def test_a_simulation_runs_rounds_and_results_are_still_the_researchers(joined):
    _, researcher, _, run = joined
    researcher.set_run_status(run, "running")
    researcher.add_round(run, 1, {"auc": 0.7})
    researcher.set_run_status(run, "completed", {"auc": 0.7})
    shown = researcher.run(run)
    assert (shown["status"], shown["results"]) == ("completed", {"auc": 0.7})
