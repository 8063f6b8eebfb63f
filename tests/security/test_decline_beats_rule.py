"""Issue 19 item 5: when the hub sends again a task the site admin declined, an auto-approve
rule that matches it must not approve it: a person's decision beats a rule, and the ledger
keeps the decline. Against a real hub served by uvicorn on loopback."""

from __future__ import annotations

import httpx
import pytest
import yaml
from sqlalchemy import delete, select
from typer.testing import CliRunner

from flip.cli.app import app as cli
from flip.config import AutoApproval, SiteConfig, SitePolicy
from flip.data.ledger import Ledger
from flip.fl.tasks import mace_task, task_hash
from flip.hub.app import bootstrap_admin, create_app
from flip.hub.client import ResearcherClient
from flip.hub.db import task_decisions
from flip.hub.server import BackgroundServer
from flip.site.agent import SiteAgent
from flip.site.approvals import decide
from flip.site.hub_client import HubClient

RULE = SitePolicy(auto_approve=[AutoApproval(kinds=["tabular-logreg"])])


@pytest.fixture
def hub(tmp_path):
    """(hub app, researcher, enrolled site client, site, project id, task hash): the task is
    proposed to the site's project, and the site's policy has a rule that approves it."""
    app = create_app(f"sqlite:///{tmp_path / 'hub.sqlite'}")
    server = BackgroundServer(app).start()
    admin = ResearcherClient(server.url, bootstrap_admin(app.state.engine))
    researcher = ResearcherClient(server.url, admin.create_user("rita", "researcher"))
    client = HubClient(server.url, HubClient.enrol(server.url, admin.create_site("st-a")))
    site = SiteConfig(
        name="st-a",
        store=str(tmp_path / "store.duckdb"),
        ledger=str(tmp_path / "ledger.sqlite"),
        policy=RULE,
    )
    pid = researcher.create_project("p")
    researcher.invite(pid, ["st-a"])
    spec = mace_task()
    digest = task_hash(spec)
    researcher.propose_task(pid, digest, spec.kind, spec.model_dump(mode="json"))
    yield app, researcher, client, site, pid, digest
    client.close()
    server.stop()


def _hub_decision(app) -> tuple[str, str] | None:
    """The hub's record of the site's decision on the one task, if it has one."""
    with app.state.engine.connect() as conn:
        row = conn.execute(select(task_decisions.c.decision, task_decisions.c.reason)).first()
    return None if row is None else (row[0], row[1])


def _assert_decline_kept(site: SiteConfig, pid: int, digest: str) -> None:
    ledger = Ledger(site.ledger)
    assert not ledger.is_approved(str(pid), digest)
    assert ledger.decision(str(pid), digest) == {
        "decision": "declined",
        "reason": "not for our patients",
        "decided_by": "site-admin",
    }
    assert "task.approved" not in [e["action"] for e in ledger.entries()]
    ledger.close()


def test_a_rule_does_not_approve_a_task_the_admin_declined_while_the_hub_was_away(hub):
    app, researcher, client, site, pid, digest = hub
    away = HubClient("http://127.0.0.1:9", "flip_s_x", timeout=0.5)
    with pytest.raises(httpx.HTTPError):  # the ledger first: the decline stands at the site
        decide(site, away, pid, digest, "declined", by="site-admin", reason="not for our patients")
    assert _hub_decision(app) is None, "the hub never heard of the decline"

    SiteAgent(site, client).run_once()  # the hub sends the task: the rule matches it

    _assert_decline_kept(site, pid, digest)
    assert _hub_decision(app) == ("declined", "not for our patients")
    assert researcher.project(pid)["sites"]["st-a"] == "invited", "not joined by approval"


def test_a_rule_does_not_approve_a_declined_task_the_hub_sends_again(hub):
    app, _, client, site, pid, digest = hub
    decide(site, client, pid, digest, "declined", by="site-admin", reason="not for our patients")
    with app.state.engine.begin() as conn:  # the hub's operator forgets the site's answer
        conn.execute(delete(task_decisions))

    agent = SiteAgent(site, client)
    agent.run_once()
    agent.run_once()

    _assert_decline_kept(site, pid, digest)
    assert _hub_decision(app) == ("declined", "not for our patients")


def test_the_rule_still_approves_a_task_no_person_decided(hub):
    app, _, client, site, pid, digest = hub
    SiteAgent(site, client).run_once()
    decision = Ledger(site.ledger).decision(str(pid), digest)
    assert decision is not None and decision["decided_by"] == "policy:auto_approve"
    assert _hub_decision(app) == ("approved", "")


@pytest.mark.parametrize("by", ["agent", "policy:IG-board-2026-17"])
def test_a_person_cannot_sign_a_decline_with_a_name_the_agent_takes_for_a_rule(hub, tmp_path, by):
    _, _, client, site, pid, digest = hub
    config = tmp_path / "site.yaml"
    config.write_text(yaml.safe_dump(site.model_dump(mode="json")))
    args = ["site", "decline", str(pid), digest, "--reason", "no", "--site-config", str(config)]

    refused = CliRunner().invoke(cli, [*args, "--by", by])

    assert refused.exit_code != 0 and "--by" in refused.output, refused.output
    assert Ledger(site.ledger).decision(str(pid), digest) is None, "nothing recorded"
    assert CliRunner().invoke(cli, [*args, "--by", "dr-jones"]).exit_code == 0
    SiteAgent(site, client).run_once()
    assert not Ledger(site.ledger).is_approved(str(pid), digest), "the person's decline stands"
