"""The site agent against a real hub served by uvicorn on loopback."""

import threading

import pytest
from sqlalchemy import text

from flip.config import AutoApproval, SiteConfig, SitePolicy
from flip.data.cdm.store import open_store
from flip.data.ingest import ingest_path
from flip.data.ledger import Ledger
from flip.fl.tasks import mace_task, task_hash
from flip.hub.app import bootstrap_admin, create_app
from flip.hub.client import ResearcherClient
from flip.hub.server import BackgroundServer
from flip.site.agent import SiteAgent
from flip.site.anchor import key_path
from flip.site.approvals import decide
from flip.site.hub_client import HubClient

DIABETES = {
    "name": "diabetes",
    "include": [{"table": "condition_occurrence", "concept_ids": [201826]}],
}


@pytest.fixture
def world(tmp_path, exported):
    _, patients, folder = exported("fhir-bundle", n=120)
    store = open_store(tmp_path / "store.duckdb")
    store.create()
    ingest_path(store, "fhir", folder)
    store.close()
    app = create_app(f"sqlite:///{tmp_path / 'hub.sqlite'}")
    hub = BackgroundServer(app).start()
    admin = ResearcherClient(hub.url, bootstrap_admin(app.state.engine))
    researcher = ResearcherClient(hub.url, admin.create_user("rita", "researcher"))
    site = SiteConfig(
        name="st-a", store=str(tmp_path / "store.duckdb"), ledger=str(tmp_path / "ledger.sqlite")
    )
    client = HubClient(hub.url, HubClient.enrol(hub.url, admin.create_site("st-a")))
    yield patients, site, client, researcher
    client.close()
    hub.stop()


def test_agent_answers_with_suppression_and_audits_it(world):
    patients, site, client, researcher = world
    pid = researcher.create_project("p")
    researcher.invite(pid, ["st-a"])
    diabetics = sum("diabetes" in p.conditions for p in patients)
    site.policy = SitePolicy(min_cell_size=diabetics + 1)
    qid = researcher.create_query(pid, "diabetes", DIABETES)
    assert SiteAgent(site, client).run_once() == 1
    released = researcher.query(qid)["results"]["st-a"]
    assert released == {
        "count": None,
        "suppressed": True,
        "threshold": diabetics + 1,
        "error": None,
        "histograms": {},
        "attrition": [],
    }
    site.policy = SitePolicy(min_cell_size=2)
    qid = researcher.create_query(pid, "diabetes again", DIABETES)
    SiteAgent(site, client).run_once()
    assert researcher.query(qid)["results"]["st-a"]["count"] == diabetics
    actions = [e["action"] for e in Ledger(site.ledger).entries()]
    assert actions.count("query.answered") == 2
    assert SiteAgent(site, client).run_once() == 0


def test_agent_releases_coarse_histograms_with_small_bins_suppressed(world):
    patients, site, client, researcher = world
    pid = researcher.create_project("p")
    researcher.invite(pid, ["st-a"])
    site.policy = SitePolicy(min_cell_size=5)
    qid = researcher.create_query(pid, "all by age", {"name": "all", "histograms": ["age", "sex"]})
    SiteAgent(site, client).run_once()
    answer = researcher.query(qid)
    mine = answer["results"]["st-a"]
    assert mine["count"] == len(patients)
    sexes = mine["histograms"]["sex"]
    assert sum(v for v in sexes.values() if v) <= len(patients)
    ages = mine["histograms"]["age"]
    released = [v for v in ages.values() if v is not None]
    assert all(v == 0 or v >= 5 for v in released)
    assert answer["histograms"] == mine["histograms"], "one site: the combined bins are its own"
    hidden = [k for k, v in ages.items() if v is None]
    assert len(hidden) != 1, "a lone suppressed bin would be recoverable from the total"


def test_agent_declines_a_task_whose_hash_lies_and_joins_only_approved_runs(world):
    _, site, client, researcher = world
    pid = researcher.create_project("p")
    researcher.invite(pid, ["st-a"])
    spec = mace_task()
    researcher.propose_task(pid, "0" * 64, spec.kind, spec.model_dump(mode="json"))
    researcher.propose_task(pid, task_hash(spec), spec.kind, spec.model_dump(mode="json"))
    agent = SiteAgent(site, client)
    agent.run_once()
    assert not Ledger(site.ledger).is_approved(str(pid), "0" * 64)
    unapproved_run = researcher.create_run(pid, task_hash(spec), 2)
    agent.run_once()
    assert researcher.run(unapproved_run)["sites"]["st-a"]["status"] == "refused"
    decide(site, client, pid, task_hash(spec), "approved", by="admin")
    approved_run = researcher.create_run(pid, task_hash(spec), 2)
    agent.run_once()
    assert researcher.run(approved_run)["sites"]["st-a"]["status"] == "joined"


def test_agent_backs_off_while_the_hub_is_down(tmp_path, caplog):
    site = SiteConfig(name="x", store=str(tmp_path / "s.duckdb"), ledger=str(tmp_path / "l.sqlite"))
    client = HubClient("http://127.0.0.1:9", "flip_s_x", timeout=0.5)
    stop = threading.Event()
    thread = threading.Thread(target=SiteAgent(site, client).run_forever, args=(stop, 0.05, 0.4))
    with caplog.at_level("WARNING", logger="flip.site.agent"):
        thread.start()
        stop.wait(1.4)
        assert thread.is_alive(), "the agent survives an unreachable hub"
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()
    delays = [r.args[2] for r in caplog.records if "hub unreachable" in r.msg]
    assert delays[:4] == [0.05, 0.1, 0.2, 0.4], "the wait doubles after each failure"
    assert all(d == 0.4 for d in delays[4:]), "and stops growing at the ceiling"


def test_agent_applies_the_site_policy_to_queries_and_tasks(world):
    _, site, client, researcher = world
    allowed, other = researcher.create_project("allowed"), researcher.create_project("other")
    for pid in (allowed, other):
        researcher.invite(pid, ["st-a"])
    site.policy = SitePolicy(
        allowed_projects=[allowed],
        max_rounds=20,
        auto_approve=[AutoApproval(kinds=["tabular-logreg"], max_rounds=10)],
    )
    refused = researcher.create_query(other, "diabetes", DIABETES)
    answered = researcher.create_query(allowed, "diabetes", DIABETES)
    short = mace_task().model_copy(update={"rounds": 5})
    medium = mace_task().model_copy(update={"rounds": 15})
    long = mace_task().model_copy(update={"rounds": 50})
    for spec in (short, medium, long):
        researcher.propose_task(allowed, task_hash(spec), spec.kind, spec.model_dump(mode="json"))
    SiteAgent(site, client).run_once()

    assert researcher.query(refused)["results"]["st-a"]["error"].startswith("refused: project")
    assert researcher.query(answered)["results"]["st-a"]["error"] is None
    ledger = Ledger(site.ledger)
    assert ledger.is_approved(str(allowed), task_hash(short)), "auto-approved by the rule"
    assert not ledger.is_approved(str(allowed), task_hash(medium)), "waits for the admin"
    assert not ledger.is_approved(str(allowed), task_hash(long))
    actions = [(e["action"], e["detail"]) for e in ledger.entries()]
    assert any(a == "query.refused" for a, _ in actions)
    declined = [d for a, d in actions if a == "task.declined"]
    assert len(declined) == 1 and "at most 20 rounds" in str(declined[0])
    ledger.close()


def _approved_run(site, client, researcher, rounds: int) -> tuple[int, str, int]:
    """(project, task hash, run) of a run of a task the site approved, in a new project."""
    pid = researcher.create_project("p")
    researcher.invite(pid, ["st-a"])
    spec = mace_task()
    digest = task_hash(spec)
    researcher.propose_task(pid, digest, spec.kind, spec.model_dump(mode="json"))
    decide(site, client, pid, digest, "approved", by="admin")
    return pid, digest, researcher.create_run(pid, digest, rounds)


def test_agent_shares_its_run_log_only_when_its_policy_says_so(world):
    _, site, client, researcher = world
    pid, digest, run = _approved_run(site, client, researcher, rounds=2)
    agent = SiteAgent(site, client)
    agent.run_once()
    assert researcher.run(run)["logs"] == {}, "not shared by default"

    ledger = Ledger(site.ledger)
    ledger.record("run.stats", {"project": str(pid), "task_hash": digest, "n_train": 90})
    for number in (1, 2):  # what the ClientApp records after each round it trains
        ledger.record(
            "run.trained",
            {"project": str(pid), "task_hash": digest, "round": number, "n_train": 90, "loss": 0.5},
        )
    ledger.close()
    site.policy = SitePolicy(share_logs=True)
    agent.run_once()
    agent.run_once()
    logs = researcher.run(run)["logs"]["st-a"]
    assert [e["action"] for e in logs] == ["run.joined", "run.stats", "run.trained", "run.trained"]
    assert [e["detail"].get("round") for e in logs[2:]] == [1, 2]
    SiteAgent(site, client).run_once()  # a restarted agent sends everything again
    assert len(researcher.run(run)["logs"]["st-a"]) == 4, "each entry is kept once"
    twice = logs[-1] | {"seq": logs[-1]["seq"] + 100}
    client.share_run_log(run, [twice, twice])
    assert len(researcher.run(run)["logs"]["st-a"]) == 5, "a repeated entry in one body too"


def test_agent_shares_a_run_log_longer_than_one_request_holds(world):
    """The hub takes at most 1,000 log entries a request; a run of more rounds (or an agent
    restarted after one, which sends everything again) made every poll fail after its work,
    so the agent never reached starting its SuperNode again."""
    _, site, client, researcher = world
    pid, digest, run = _approved_run(site, client, researcher, rounds=1500)
    site.policy = SitePolicy(share_logs=True)
    agent = SiteAgent(site, client)
    agent.run_once()
    with Ledger(site.ledger) as ledger:
        for number in range(1, 1501):
            detail = {"project": str(pid), "task_hash": digest, "round": number, "loss": 0.5}
            ledger.record("run.trained", detail)
    agent.run_once()
    logs = researcher.run(run)["logs"]["st-a"]
    assert len(logs) == 1501
    assert [e["detail"]["round"] for e in logs[1:]] == list(range(1, 1501))


def test_a_site_admins_long_decline_reason_does_not_stop_the_agent(world):
    """The hub keeps 2,000 characters of a reason; a person's longer one (kept whole in the
    ledger) was sent as it was, refused with 422 on every poll, and no run or task after
    it was ever handled."""
    _, site, client, researcher = world
    pid = researcher.create_project("p")
    researcher.invite(pid, ["st-a"])
    spec = mace_task()
    digest = task_hash(spec)
    researcher.propose_task(pid, digest, spec.kind, spec.model_dump(mode="json"))
    why = "not with our data: " + "x" * 2500
    decide(site, None, pid, digest, "declined", by="admin", reason=why)
    run = researcher.create_run(pid, digest, 2)
    assert SiteAgent(site, client).run_once() == 2
    assert researcher.run(run)["sites"]["st-a"]["status"] == "refused"
    with Ledger(site.ledger) as ledger:
        assert ledger.decision(str(pid), digest)["reason"] == why, "the ledger keeps it whole"


def test_an_answer_the_hub_refuses_does_not_hold_up_the_work_after_it(world):
    """A store whose births span 250 years has 26 age bins; the hub takes at most 20, so it
    refused the answer (422) on every poll, and the queries, tasks and runs after it were
    never handled. The item is refused with the hub's reason instead, and work goes on."""
    _, site, client, researcher = world
    store = open_store(site.store)
    with store.begin() as conn:
        conn.execute(text("UPDATE person SET year_of_birth = 1775 + (person_id * 7) % 250"))
    store.close()
    pid = researcher.create_project("p")
    researcher.invite(pid, ["st-a"])
    everyone = {"name": "everyone", "histograms": ["age"]}
    binned = researcher.create_query(pid, "ages", everyone)
    after = researcher.create_query(pid, "diabetes", DIABETES)
    spec = mace_task()
    digest = task_hash(spec)
    researcher.propose_task(pid, digest, spec.kind, spec.model_dump(mode="json"))
    decide(site, client, pid, digest, "declined", by="admin", reason="no")
    run = researcher.create_run(pid, digest, 2)
    assert SiteAgent(site, client).run_once() == 3
    refused = researcher.query(binned)["results"]["st-a"]
    assert refused["error"].startswith("refused: the hub refused this site's answer (422")
    assert researcher.query(after)["results"]["st-a"]["count"] is not None
    assert researcher.run(run)["sites"]["st-a"]["status"] == "refused"
    with Ledger(site.ledger) as ledger:
        failed = [e for e in ledger.entries() if e["action"] == "query.failed"]
    assert len(failed) == 1 and "histograms" in str(failed[0]["detail"])


def test_a_hub_refusing_the_ledger_head_for_good_does_not_stop_the_work(world, caplog):
    """A site that lost its signing key shows the hub a head signed by a new one; the hub
    refuses it (the registered key is another) on every poll. The agent used to stop there,
    before its work; it now says why and goes on answering."""
    _, site, client, researcher = world
    agent = SiteAgent(site, client)
    agent.run_once()
    key_path(site).unlink()
    pid = researcher.create_project("p")
    researcher.invite(pid, ["st-a"])
    qid = researcher.create_query(pid, "diabetes", DIABETES)
    assert agent.run_once() == 1
    assert researcher.query(qid)["results"]["st-a"]["count"] is not None
    assert "the hub refused this site's ledger head" in caplog.text


def test_a_run_log_the_hub_refuses_for_good_does_not_stop_the_poll(world, caplog):
    """A hub restored from a backup no longer knows a run the site joined: it refuses that
    run's log with 404 on every poll. The agent raised out of the poll (so it backed off and
    never started its SuperNode); it now logs and audits the refusal once, and goes on."""
    _, site, client, researcher = world
    _, _, run = _approved_run(site, client, researcher, rounds=2)
    site.policy = SitePolicy(share_logs=True)
    with Ledger(site.ledger) as ledger:
        ledger.record("run.joined", {"run": 4242, "project": "77", "task_hash": "f" * 64})
    agent = SiteAgent(site, client)
    assert agent.run_once() == 1, "the poll goes on to the work after the refused log"
    agent.run_once()
    assert [e["action"] for e in researcher.run(run)["logs"]["st-a"]] == ["run.joined"]
    assert "the hub refused run 4242's log (404" in caplog.text
    with Ledger(site.ledger) as ledger:
        refused = [e for e in ledger.entries() if e["action"] == "run.log.refused"]
    assert len(refused) == 1, "audited once, not on every poll"
    assert '"run":4242' in str(refused[0]["detail"])


def test_agent_answers_a_circe_query_and_refuses_what_it_cannot_run(world):
    """A cohort exported from ATLAS goes through the hub like FLIP's own; a Circe element
    FLIP does not run is refused with its name."""
    import json
    from pathlib import Path

    _, site, client, researcher = world
    pid = researcher.create_project("p")
    researcher.invite(pid, ["st-a"])
    site.policy = SitePolicy(min_cell_size=1)
    path = Path(__file__).parents[1] / "data" / "circe" / "hypertension_men_not_diabetic.json"
    circe = json.loads(path.read_text(encoding="utf-8"))
    answered = researcher.create_query(pid, "hypertension", circe)
    circe["PrimaryCriteria"]["CriteriaList"] = [{"Specimen": {}}]
    refused = researcher.create_query(pid, "specimens", circe)
    SiteAgent(site, client).run_once()
    from flip.data.cohort import count_cohort
    from flip.data.cohort.circe import load_definition
    from flip.data.cohort.circe.attrition import attrition_counts

    store = open_store(site.store, read_only=True)
    definition = load_definition(path.read_text(encoding="utf-8"))
    expected = count_cohort(store, definition)
    steps = attrition_counts(store, definition)
    store.close()
    view = researcher.query(answered)
    assert view["results"]["st-a"]["count"] == expected > 0
    assert view["steps"] == ["primary criteria", *definition.rule_names()]
    assert view["results"]["st-a"]["attrition"] == view["attrition"] == steps
    assert steps[-1] == expected and steps[0] > expected
    error = researcher.query(refused)["results"]["st-a"]["error"]
    assert "'Specimen' is not supported" in error
