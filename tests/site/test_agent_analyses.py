"""Federated analyses through a real hub (uvicorn on loopback) and real agent steps at two
synthetic sites: nothing runs unapproved, only aggregates reach the hub, and the combined
result equals the pooled computation."""

import json
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from flip.cli.app import app as flip_app
from flip.cli.credentials import Credentials, save
from flip.config import AutoApproval, SiteConfig, SitePolicy
from flip.data.cdm import schema
from flip.data.cdm.store import open_store
from flip.data.cohort.circe.run import run_circe
from flip.data.cohort.guard import ReleaseGuard
from flip.data.features.store_analysis import AnalysisSpec
from flip.data.features.tabular import extract_raw
from flip.data.ledger import Ledger
from flip.fl.tasks import mace_task
from flip.hub.app import bootstrap_admin, create_app
from flip.hub.client import ResearcherClient
from flip.hub.db import analysis_releases
from flip.hub.server import BackgroundServer
from flip.site.agent import SiteAgent
from flip.site.approvals import decide
from flip.site.hub_client import HubClient
from flip.stats import cox, newton, regression
from flip.stats.model_cells import small_indicator_cell
from tests.conftest import build_site

CIRCE = Path(__file__).parents[1] / "data" / "circe"
SITES = {"st-a": ("fhir-bundle", 160, 2), "st-b": ("fhir-bundle", 120, 3)}


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    root = tmp_path_factory.mktemp("analyses")
    app = create_app(f"sqlite:///{root / 'hub.sqlite'}")
    hub = BackgroundServer(app).start()
    admin = ResearcherClient(hub.url, bootstrap_admin(app.state.engine))
    researcher = ResearcherClient(hub.url, admin.create_user("rita", "researcher"))
    agents = {}
    for name, (fmt, n, seed) in SITES.items():
        site = SiteConfig.load(build_site(root, name, fmt, n, seed))
        client = HubClient(hub.url, HubClient.enrol(hub.url, admin.create_site(name)))
        agents[name] = SiteAgent(site, client)
    app.state.researcher_token = researcher.http.headers["Authorization"].split()[1]
    app.state.url = hub.url
    yield app, researcher, agents
    for agent in agents.values():
        agent.hub.close()
    hub.stop()


def _project(researcher, name: str) -> int:
    pid = researcher.create_project(name)
    researcher.invite(pid, list(SITES))
    return pid


def _released(app, analysis_id: int) -> list[str]:
    with app.state.engine.connect() as conn:
        rows = conn.execute(
            select(analysis_releases.c.body).where(analysis_releases.c.analysis_id == analysis_id)
        )
        return [body for (body,) in rows if body is not None]


def _pooled(agents, spec: AnalysisSpec):
    """Each site's extracted cohort (as the analysis reads it), by site."""
    out = {}
    for name, agent in agents.items():
        store = open_store(agent.site.store, read_only=True)
        try:
            out[name] = extract_raw(store, spec.data)
        finally:
            store.close()
    return out


def _taking_part(pooled: dict, *, outcome: bool) -> dict:
    """The sites whose model sums count no small cell of age/male with the outcome (a
    logistic model's, with an intercept) or the event (a Cox model's): the others take no
    part (`small_indicator_cell`)."""
    names = ["intercept", "age", "male", "outcome"]
    out = {}
    for site, d in pooled.items():
        design = np.hstack([np.ones((len(d.y), 1)), d.x[:, :2]])
        if outcome:
            design = np.column_stack([design, d.y])
        else:
            design = np.column_stack([design[:, 1:], d.y[:, 1]])
        if small_indicator_cell(design, names if outcome else names[1:], 10) is None:
            out[site] = d
    return out


def _identifiers(agents) -> set[str]:
    found = set()
    for agent in agents.values():
        store = open_store(agent.site.store, read_only=True)
        try:
            with store.connect() as conn:
                found |= {
                    v
                    for (v,) in conn.execute(select(schema.person.c.person_source_value))
                    if v and len(v) > 3
                }
        finally:
            store.close()
    return found


def _longest_list(value) -> int:
    if isinstance(value, dict):
        return max((_longest_list(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return max([len(value), *(_longest_list(v) for v in value)])
    return 0


def _run(agents, rounds: int = 1) -> None:
    for _ in range(rounds):
        for agent in agents.values():
            agent.run_once()


def test_table1_runs_only_where_approved_and_only_aggregates_reach_the_hub(network):
    app, researcher, agents = network
    pid = _project(researcher, "table1")
    spec = AnalysisSpec(kind="table1", data=mace_task().data)
    submitted = researcher.submit_analysis(pid, spec.body())
    assert submitted["hash"] == spec.digest()
    _run(agents)
    waiting = researcher.analysis(submitted["id"])
    assert waiting["status"] == "running"
    assert waiting["sites"] == {"st-a": "waiting", "st-b": "waiting"}
    assert _released(app, submitted["id"]) == [], "an unapproved analysis does not run"
    assert "analysis.waiting" in [e["action"] for e in Ledger(agents["st-a"].site.ledger).entries()]

    decide(agents["st-a"].site, None, pid, spec.digest(), "approved", by="site-admin")
    _run(agents)
    half = researcher.analysis(submitted["id"])
    assert half["sites"] == {"st-a": "released round 0", "st-b": "waiting"}
    assert half["result"] is None

    agents["st-b"].site.policy = SitePolicy(auto_approve=[AutoApproval(kinds=["analysis:table1"])])
    _run(agents)
    done = researcher.analysis(submitted["id"])
    assert done["status"] == "completed", done
    pooled = _pooled(agents, spec)
    ages = np.concatenate([d.x[:, 0] for d in pooled.values()])
    age = done["result"]["combined"]["age"]
    assert age["n"] == len(ages)
    assert age["mean"] == pytest.approx(ages.mean())
    assert age["sd"] == pytest.approx(ages.std(ddof=1))
    assert done["result"]["sites"]["st-a"]["age"]["n"] == len(pooled["st-a"].y)
    outcome = done["result"]["combined"]["outcome"]["counts"]
    y = np.concatenate([d.y for d in pooled.values()])
    if all(isinstance(v, int) for v in outcome.values()):
        assert outcome == {"0": int((y == 0).sum()), "1": int((y == 1).sum())}

    bodies = _released(app, submitted["id"])
    assert len(bodies) == 2
    identifiers = _identifiers(agents)
    assert identifiers, "the stores hold person source values to look for"
    for body in bodies:
        assert not any(i in body for i in identifiers), "no identifier reaches the hub"
        assert "person_id" not in body
        fewest = min(len(d.y) for d in pooled.values())
        assert _longest_list(json.loads(body)) < fewest, "no per-row vector reaches the hub"


def test_a_declined_or_misstated_analysis_is_refused_and_releases_nothing(network):
    app, researcher, agents = network
    pid = _project(researcher, "refused")
    spec = AnalysisSpec(kind="table1", data=mace_task().data)
    body = spec.body()
    declined = researcher.submit_analysis(pid, body)
    misstated = researcher.submit_analysis(pid, {**body, "time_bin": 7})
    for agent in agents.values():
        decide(agent.site, None, pid, spec.digest(), "declined", by="site-admin", reason="no")
    _run(agents)
    assert researcher.analysis(declined["id"])["sites"]["st-a"] == "refused: no"
    assert researcher.analysis(declined["id"])["status"] == "failed"
    why = researcher.analysis(misstated["id"])["sites"]["st-b"]
    assert why == "refused: the analysis's spec does not hash to its claimed hash"
    assert _released(app, declined["id"]) == _released(app, misstated["id"]) == []


def test_logistic_regression_and_cox_take_newton_rounds_and_match_the_pooled_fit(network):
    _, researcher, agents = network
    pid = _project(researcher, "models")
    rule = AutoApproval(kinds=["analysis:regression", "analysis:survival"], projects=[pid])
    for agent in agents.values():
        agent.site.policy = SitePolicy(auto_approve=[rule])
    data = mace_task().data
    logistic = AnalysisSpec(kind="regression", data=data, covariates=["age", "male"])
    survival_data = data.model_copy(update={"outcome": "time-to-event"})
    survival = AnalysisSpec(
        kind="survival", data=survival_data, covariates=["age", "male"], time_bin=90
    )
    ids = [researcher.submit_analysis(pid, s.body())["id"] for s in (logistic, survival)]
    for _ in range(40):
        _run(agents)
        found = [researcher.analysis(i) for i in ids]
        if all(f["status"] != "running" for f in found):
            break
    fit, surv = found
    assert fit["status"] == surv["status"] == "completed", (fit["error"], surv["error"])
    assert fit["round"] > 2, "a logistic model takes Newton rounds"

    pooled = _taking_part(_pooled(agents, logistic), outcome=True)
    assert pooled and sorted(fit["result"]["withheld"]) == sorted(set(agents) - set(pooled))
    x = np.vstack([np.hstack([np.ones((len(d.y), 1)), d.x[:, :2]]) for d in pooled.values()])
    y = np.concatenate([d.y for d in pooled.values()])
    reference = newton.fit([lambda b: regression.logistic_partial(x, y, b)], 3)
    coef = fit["result"]["coef"]
    assert [coef["intercept"], coef["age"], coef["male"]] == pytest.approx(
        reference["beta"].tolist(), rel=1e-6
    )
    assert fit["result"]["n"] == len(y)

    pooled = _taking_part(_pooled(agents, survival), outcome=False)
    sites = [(d.y[:, 0], d.y[:, 1], d.x[:, :2].astype(float)) for d in pooled.values()]
    stratified = newton.fit([lambda b, s=s: cox.cox_partial(*s, b) for s in sites], 2)
    got = surv["result"]["cox"]["coef"]
    assert [got["age"], got["male"]] == pytest.approx(stratified["beta"].tolist(), rel=1e-6)
    assert surv["result"]["km"]["combined"]["times"], "a combined Kaplan-Meier curve"


def test_the_cli_submits_a_harmonisation_report_and_reads_it_side_by_side(
    network, tmp_path, monkeypatch
):
    app, researcher, agents = network
    pid = _project(researcher, "harmonise")
    monkeypatch.setenv("FLIP_CREDENTIALS", str(tmp_path / "credentials.json"))
    save(Credentials(hub=app.state.url, token=app.state.researcher_token))
    runner = CliRunner()
    systolic = mace_task().data.entry_concept_ids[0]
    submitted = runner.invoke(
        flip_app,
        [
            "analysis",
            "submit",
            "harmonisation",
            "--project",
            str(pid),
            "--json",
            "--concepts",
            f"{systolic},3004410",
        ],
    )
    assert submitted.exit_code == 0, submitted.output
    found = json.loads(submitted.stdout)
    for agent in agents.values():
        decide(agent.site, None, pid, found["hash"], "approved", by="site-admin")
    _run(agents)
    shown = runner.invoke(flip_app, ["analysis", "results", str(found["id"]), "--json"])
    result = json.loads(shown.stdout)["result"]
    assert set(result["sites"]) == set(SITES)
    rows = result["concepts"][str(systolic)]
    assert all(isinstance(n, int) and n > 0 for n in rows.values()), rows
    mapped = result["sites"]["st-a"]["concepts"][str(systolic)]
    assert mapped["table"] == "measurement" and mapped["sources"], mapped
    table = runner.invoke(flip_app, ["analysis", "results", str(found["id"])])
    assert table.exit_code == 0 and str(systolic) in table.stdout

    bad = runner.invoke(
        flip_app, ["analysis", "submit", "survival", "--project", str(pid), "--cohort", "mace-5y"]
    )
    assert bad.exit_code == 1
    assert "survival needs a time-to-event outcome" in bad.stderr


def _counts(value, found: list) -> list:
    """Every integer count in a released report (shares and ids left out)."""
    if isinstance(value, dict):
        for key, v in value.items():
            if key not in ("share", "concept_id", "min_cell"):
                _counts(v, found)
    elif isinstance(value, list):
        for v in value:
            _counts(v, found)
    elif isinstance(value, int) and not isinstance(value, bool):
        found.append(value)
    return found


def test_sites_release_suppressed_quality_aggregates_the_hub_shows_side_by_side(network):
    _, researcher, agents = network
    for agent in agents.values():
        agent.site.policy = SitePolicy(min_cell_size=5, share_quality=True)
        agent.quality_shared = None
    _run(agents)
    shown = researcher.quality()["sites"]
    assert set(shown) == set(SITES)
    for name, found in shown.items():
        report = found["report"]
        assert report["completeness"]["person.year_of_birth"]["share"] == 1.0
        assert set(report["unmapped"]) >= {"measurement", "condition_occurrence"}
        assert report["checks"] and all("status" in c for c in report["checks"])
        small = [n for n in _counts(report, []) if 0 < n < 5]
        assert small == [], f"{name} released counts under its smallest cell: {small}"
        text = json.dumps(report)
        assert not any(i in text for i in _identifiers(agents))
    agents["st-a"].site.policy = SitePolicy()
    _run(agents)
    assert "st-a" in researcher.quality()["sites"], "the last release stays on show"


def test_an_agent_polling_a_hub_without_analyses_goes_on():
    import httpx

    def hub(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"detail": "Not Found"})

    client = HubClient("http://hub.invalid", "flip_s_x")
    client.http = httpx.Client(
        base_url="http://hub.invalid/api/v1", transport=httpx.MockTransport(hub)
    )
    assert client.analyses() == []


def test_the_cohort_is_read_once_for_every_round_and_dropped_once_the_hub_stops_asking(
    network, monkeypatch
):
    from flip.site import analyses as site_analyses

    _, researcher, agents = network
    pid = _project(researcher, "rounds")
    rule = AutoApproval(kinds=["analysis:regression"], projects=[pid])
    reads = []
    real = site_analyses.extract

    def counted(store, spec):
        reads.append(spec.kind)
        return real(store, spec)

    monkeypatch.setattr(site_analyses, "extract", counted)
    for agent in agents.values():
        agent.site.policy = SitePolicy(auto_approve=[rule])
    spec = AnalysisSpec(kind="regression", data=mace_task().data, covariates=["age"])
    aid = researcher.submit_analysis(pid, spec.body())["id"]
    for _ in range(40):
        _run(agents)
        if researcher.analysis(aid)["status"] != "running":
            break
    found = researcher.analysis(aid)
    assert found["status"] == "completed" and found["round"] > 2
    assert reads == ["regression", "regression"], "one read per site, whatever the rounds"
    monkeypatch.setattr(site_analyses, "COHORT_TTL", 0.0)
    _run(agents)
    assert all(aid not in agent.analyses.cohorts for agent in agents.values())


def test_one_poll_is_one_request_for_work_analyses_included(network):
    _, researcher, agents = network
    pid = _project(researcher, "one-poll")
    spec = AnalysisSpec(kind="table1", data=mace_task().data, time_bin=11)
    submitted = researcher.submit_analysis(pid, spec.body())
    agent = agents["st-a"]
    asked = []
    agent.hub.http.event_hooks["request"].append(lambda r: asked.append((r.method, r.url.path)))
    try:
        agent.run_once()
    finally:
        agent.hub.http.event_hooks["request"].clear()
    gets = [path for method, path in asked if method == "GET"]
    assert gets == ["/api/v1/agent/work"], asked
    waiting = [e for e in Ledger(agent.site.ledger).entries() if e["action"] == "analysis.waiting"]
    assert any(json.loads(e["detail"])["analysis"] == submitted["id"] for e in waiting)


def test_malformed_analysis_items_are_refused_and_the_agent_goes_on(network, monkeypatch):
    """A hub (hostile or broken) sends items no hub of this version makes: each is refused
    (or, without an id to answer, audited), and the same poll still releases the good one."""
    _, researcher, agents = network
    pid = _project(researcher, "malformed")
    spec = AnalysisSpec(kind="table1", data=mace_task().data, time_bin=17)
    good = researcher.submit_analysis(pid, spec.body())
    agent = agents["st-a"]
    decide(agent.site, None, pid, spec.digest(), "approved", by="site-admin")
    real = agent.hub.work
    bad = [
        [1, 2],
        {"project_id": pid, "hash": spec.digest(), "spec": spec.body(), "round": 0},
        {"id": good["id"] + 1000, "project_id": pid, "hash": spec.digest(), "spec": []}
        | {"round": 0},
        {"id": "x", "round": "y"},
        {"id": good["id"] + 1001, "project_id": "p", "hash": 5, "spec": {}, "round": -3},
    ]

    def hostile(*args, **kwargs):
        work = real(*args, **kwargs)
        return work | {"analyses": bad + work["analyses"]}

    monkeypatch.setattr(agent.hub, "work", hostile)
    agent.run_once()
    assert researcher.analysis(good["id"])["sites"]["st-a"] == "released round 0"
    refused = [
        json.loads(e["detail"])["reason"]
        for e in Ledger(agent.site.ledger).entries()
        if e["action"] == "analysis.refused"
    ]
    assert sum(r.startswith("malformed analysis item") for r in refused) == len(bad)


def _smokers_at_first_visit() -> dict:
    """The Circe fixture's persons at their first visit, with a smoker recorded that day."""
    expression = json.loads((CIRCE / "smokers_with_high_hba1c.json").read_text(encoding="utf-8"))
    expression["InclusionRules"] = expression["InclusionRules"][:1]
    return expression


def test_an_analysis_takes_a_circe_cohort_its_members_from_their_start_date(
    network, tmp_path, monkeypatch
):
    app, researcher, agents = network
    pid = _project(researcher, "circe table1")
    expression = _smokers_at_first_visit()
    atlas = tmp_path / "smokers.json"
    atlas.write_text(json.dumps(expression), encoding="utf-8")
    monkeypatch.setenv("FLIP_CREDENTIALS", str(tmp_path / "credentials.json"))
    save(Credentials(hub=app.state.url, token=app.state.researcher_token))
    runner = CliRunner()
    submit = ["analysis", "submit", "table1", "--project", str(pid), "--cohort", "mace-5y"]
    submitted = runner.invoke(flip_app, [*submit, "--circe", str(atlas), "--json"])
    assert submitted.exit_code == 0, submitted.output
    found = json.loads(submitted.stdout)
    cohort = {"name": "smokers", "expression": expression}
    spec = AnalysisSpec(kind="table1", data=mace_task().data, cohort=cohort)
    assert found["hash"] == spec.digest(), "the spec carries the Circe cohort"
    unsupported = tmp_path / "devices.json"
    devices = {"DeviceExposure": {}}
    unsupported.write_text(
        json.dumps(expression | {"PrimaryCriteria": {"CriteriaList": [devices]}}), "utf-8"
    )
    refused = runner.invoke(flip_app, [*submit, "--circe", str(unsupported)])
    assert refused.exit_code == 1 and "'DeviceExposure' is not supported" in refused.stderr
    for agent in agents.values():
        decide(agent.site, None, pid, found["hash"], "approved", by="site-admin")
    _run(agents)
    done = researcher.analysis(found["id"])
    assert done["status"] == "completed", done

    for name, agent in agents.items():
        store = open_store(agent.site.store, read_only=True)
        try:
            starts = run_circe(store, expression).starts
            everyone = len(extract_raw(store, spec.data).y)
            with store.connect() as conn:
                born = {
                    pid: date(y, m or 7, d or 1)
                    for pid, y, m, d in conn.execute(
                        select(
                            schema.person.c.person_id,
                            schema.person.c.year_of_birth,
                            schema.person.c.month_of_birth,
                            schema.person.c.day_of_birth,
                        )
                    )
                }
        finally:
            store.close()
        assert 10 <= len(starts) < everyone, "the cohort is some of the site's persons"
        age = done["result"]["sites"][name]["age"]
        assert age["n"] == len(starts), "the rows are the Circe cohort's members"
        ages = [(start - born[p]).days / 365.25 for p, start in starts.items()]
        assert age["mean"] == pytest.approx(np.mean(ages), rel=1e-5), "aged at their start"
        with Ledger(agent.site.ledger) as ledger:
            guard = ReleaseGuard(ledger.engine, str(pid), "later query", 10, None)
            assert guard.released_before(frozenset(starts)), "audited as the project's count"
