"""The site console (TestClient) against a real hub served on loopback and the site's real
agent, ledger and store: every page asks to sign in, every form needs its CSRF token, a
decision is written to the ledger first and then reaches the hub, and policy changes are
audited and taken up by the agent."""

from __future__ import annotations

import re
import stat
import threading
from pathlib import Path
from typing import get_args

import orjson
import pytest
import yaml
from fastapi.testclient import TestClient
from markupsafe import escape
from sqlalchemy import select, text
from typer.testing import CliRunner

from flip.cli.app import app as cli
from flip.config import SiteConfig
from flip.data.ledger import Ledger
from flip.fl.tasks import mace_task, task_hash
from flip.fl.tasks.base import TaskSpec
from flip.hub.app import bootstrap_admin, create_app
from flip.hub.client import ResearcherClient
from flip.hub.db import sites, task_decisions, tasks
from flip.hub.server import BackgroundServer
from flip.ports import free_port
from flip.site.agent import SiteAgent
from flip.site.console import create_app as create_console
from flip.site.console.passwords import password_path, set_password
from flip.site.console.policy import KINDS
from flip.site.hub_client import HubClient
from flip.site.status import AgentStatus, status_path
from tests.conftest import build_site
from tests.e2e.processes import wait_for

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
PASSWORD = "a console test password"
PAGES = ("/approvals", "/policy", "/data", "/audit", "/agent")


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """One hub on loopback, its admin and a researcher; one synthetic site's store."""
    folder = tmp_path_factory.mktemp("console")
    store = build_site(folder, "north", "csv", 120, seed=3).parent / "store.duckdb"
    app = create_app(f"sqlite:///{folder / 'hub.sqlite'}")
    server = BackgroundServer(app).start()
    admin = ResearcherClient(server.url, bootstrap_admin(app.state.engine))
    researcher = ResearcherClient(server.url, admin.create_user("rita", "researcher"))
    yield {"url": server.url, "engine": app.state.engine, "admin": admin, "rita": researcher}
    server.stop()
    store.unlink(missing_ok=True)


class Site:
    """A site enrolled with the hub: its site.yaml, agent and console."""

    count = 0

    def __init__(self, hub, folder: Path) -> None:
        Site.count += 1
        self.name = f"site-{Site.count}"
        store = next(Path(hub["engine"].url.database).parent.glob("north/store.duckdb"))
        credential = HubClient.enrol(hub["url"], hub["admin"].create_site(self.name))
        (folder / "credential").write_text(credential)
        self.config = folder / "site.yaml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "name": self.name,
                    "store": str(store),
                    "ledger": "ledger.sqlite",
                    "hub": hub["url"],
                }
            )
        )
        self.hub = hub
        self.client = HubClient(hub["url"], credential)
        self.agent = SiteAgent(self.site(), self.client, self.config)
        set_password(password_path(self.site().ledger), "dana", PASSWORD)
        self.http = TestClient(
            create_console(self.config), raise_server_exceptions=False, follow_redirects=False
        )

    def site(self) -> SiteConfig:
        return SiteConfig.load(self.config)

    def ledger(self) -> Ledger:
        return Ledger(self.site().ledger)

    def csrf(self, page: str) -> str:
        found = CSRF.search(self.http.get(page).text)
        assert found, f"no CSRF field on {page}"
        return found.group(1)

    def post(self, path: str, data: dict, page: str):
        """Submit a form of `page` with its CSRF token."""
        return self.http.post(path, data={"csrf": self.csrf(page), **data})

    def sign_in(self, name: str = "dana", password: str = PASSWORD):
        return self.post("/signin", {"name": name, "password": password}, "/signin")

    def propose(self, spec) -> tuple[int, str]:
        """A new project inviting this site, with `spec` proposed; the agent polls once."""
        rita = self.hub["rita"]
        pid = rita.create_project(f"cardiology {self.name}")
        rita.invite(pid, [self.name])
        digest = task_hash(spec)
        rita.propose_task(pid, digest, spec.kind, spec.model_dump(mode="json"))
        self.agent.run_once()
        return pid, digest

    def hub_decision(self, pid: int, digest: str) -> tuple[str, str] | None:
        with self.hub["engine"].connect() as conn:
            row = conn.execute(
                select(task_decisions.c.decision, task_decisions.c.reason)
                .join(tasks, tasks.c.id == task_decisions.c.task_id)
                .join(sites, sites.c.id == task_decisions.c.site_id)
                .where(tasks.c.project_id == pid, tasks.c.hash == digest, sites.c.name == self.name)
            ).first()
        return None if row is None else tuple(row)


@pytest.fixture
def site(hub, tmp_path):
    made = Site(hub, tmp_path)
    yield made
    made.client.close()


def test_every_page_asks_to_sign_in_first(site):
    for path in PAGES:
        answer = site.http.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["location"] == f"/signin?next={path}"
    pid, digest = site.propose(mace_task(0))
    assert site.http.get(f"/approvals/{pid}/{digest}").status_code == 303
    refused = site.post(f"/approvals/{pid}/{digest}", {"decision": "approved"}, "/signin")
    assert refused.status_code == 303 and refused.headers["location"] == "/signin"
    assert site.ledger().decision(str(pid), digest) is None


def test_a_wrong_password_is_refused_and_audited_and_the_session_cookie_is_strict(site):
    wrong = site.sign_in(password="not the password at all")
    assert wrong.status_code == 401 and "do not match" in wrong.text
    assert site.http.get("/approvals").status_code == 303
    right = site.sign_in()
    assert right.status_code == 303 and right.headers["location"] == "/approvals"
    cookie = right.headers["set-cookie"]
    assert "flip_console_session=" in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    page = site.http.get("/approvals")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    actions = [e["action"] for e in site.ledger().entries()]
    assert actions[-2:] == ["console.signin.failed", "console.signin"]


def test_forms_without_their_csrf_token_are_refused(site):
    assert site.http.post("/signin", data={"name": "dana", "password": PASSWORD}).status_code == 403
    site.sign_in()
    pid, digest = site.propose(mace_task(0))
    bare = {"decision": "approved"}
    assert site.http.post(f"/approvals/{pid}/{digest}", data=bare).status_code == 403
    stale = {**bare, "csrf": "x" * 64}
    assert site.http.post(f"/approvals/{pid}/{digest}", data=stale).status_code == 403
    assert site.http.post("/policy", data={"min_cell_size": "3"}).status_code == 403
    assert site.http.post("/policy/rules", data={"kinds": "custom"}).status_code == 403
    assert site.http.post("/signout", data={}).status_code == 403
    assert site.ledger().decision(str(pid), digest) is None
    assert site.site().policy.min_cell_size == 10


def test_the_inbox_shows_an_offered_task_and_approving_it_writes_the_ledger_then_the_hub(site):
    site.sign_in()
    spec = mace_task(0)
    pid, digest = site.propose(spec)
    inbox = site.http.get("/approvals").text
    assert f"/approvals/{pid}/{digest}" in inbox
    assert f"cardiology {site.name}" in inbox and "rita" in inbox
    review = site.http.get(f"/approvals/{pid}/{digest}")
    assert review.status_code == 200
    assert digest in review.text
    assert 'class="code"' in review.text, "the code is highlighted"
    assert "def new_model" in review.text or "flip.fl.tasks.tabular_logreg" in review.text
    rows = re.search(r"<strong>(\d+)</strong> training rows", review.text)
    assert rows and int(rows.group(1)) > 0
    assert "measurement" in review.text and "condition_occurrence" in review.text
    form = f"/approvals/{pid}/{digest}"
    done = site.post(form, {"decision": "approved", "reason": "reviewed"}, form)
    assert done.status_code == 303 and done.headers["location"].endswith("done=recorded")
    assert site.ledger().is_approved(str(pid), digest)
    assert site.ledger().decision(str(pid), digest)["decided_by"] == "dana"
    assert site.hub_decision(pid, digest) == ("approved", "reviewed")
    site.agent.run_once()
    assert f"/approvals/{pid}/{digest}" not in site.http.get("/approvals").text.split("Latest")[0]


def test_the_task_page_names_each_concept_it_reads_from_the_sites_vocabulary(site):
    from flip.data.cdm.names import concept_names
    from flip.data.cdm.store import open_store
    from flip.site.console.review import concepts

    site.sign_in()
    spec = mace_task(0)
    pid, digest = site.propose(spec)
    page = site.http.get(f"/approvals/{pid}/{digest}").text
    ids = {i for _, read in concepts(spec) for i in read}
    store = open_store(site.site().store, read_only=True)
    try:
        with store.connect() as conn:
            names = concept_names(conn, ids)
    finally:
        store.close()
    assert names, "the synthetic site's vocabulary names the MACE task's concepts"
    table = page[page.index('id="concepts"') :]
    for concept_id, name in names.items():
        assert f"<code>{concept_id}</code>: {escape(name)}" in table
    for concept_id in ids - set(names):
        assert f"<code>{concept_id}</code>: <em>not in this site" in table


def test_the_task_page_says_what_a_personalised_task_keeps_at_the_site(site):
    site.sign_in()
    plain = mace_task(0)
    spec = plain.model_validate({**plain.model_dump(), "personal": "ditto", "ditto_lambda": 0.2})
    pid, digest = site.propose(spec)
    page = site.http.get(f"/approvals/{pid}/{digest}").text
    said = page[page.index('id="personal"') :].split("</p>")[0]
    assert "ditto" in said and "lambda 0.2" in said and "never sends it" in said
    pid, digest = site.propose(mace_task(1))
    page = site.http.get(f"/approvals/{pid}/{digest}").text
    assert "Personalisation: none" in page


def test_declining_needs_a_reason_and_records_it(site):
    site.sign_in()
    pid, digest = site.propose(mace_task(1))
    form = f"/approvals/{pid}/{digest}"
    empty = site.post(form, {"decision": "declined", "reason": "  "}, form)
    assert empty.status_code == 422 and "say why" in empty.text
    assert site.ledger().decision(str(pid), digest) is None
    site.post(form, {"decision": "declined", "reason": "no outcome review yet"}, form)
    assert site.ledger().decision(str(pid), digest)["decision"] == "declined"
    assert site.hub_decision(pid, digest) == ("declined", "no outcome review yet")


def test_a_task_the_hub_never_offered_cannot_be_decided(site):
    site.sign_in()
    digest = "a" * 64
    answer = site.post(f"/approvals/7/{digest}", {"decision": "approved"}, "/approvals")
    assert answer.status_code == 404
    assert site.ledger().decision("7", digest) is None


def test_a_task_whose_code_does_not_hash_to_its_hash_cannot_be_approved(site):
    """The page showed code X under the hash of another spec Y; approving covered Y unseen."""
    site.sign_in()
    shown, hidden = mace_task(0), mace_task(0).model_copy(update={"local_epochs": 50})
    rita = site.hub["rita"]
    pid = rita.create_project(f"mismatch {site.name}")
    rita.invite(pid, [site.name])
    digest = task_hash(hidden)
    rita.propose_task(pid, digest, shown.kind, shown.model_dump(mode="json"))
    site.agent.run_once()
    form = f"/approvals/{pid}/{digest}"
    review = site.http.get(form).text
    assert "does not match its code" in review and 'value="approved"' not in review
    answer = site.post(form, {"decision": "approved"}, form)
    assert answer.status_code == 409 and "do not hash to its hash" in answer.text
    decided = site.ledger().decision(str(pid), digest)
    assert decided is None or decided["decision"] == "declined"
    assert not site.ledger().is_approved(str(pid), digest)


def test_a_new_version_shows_its_diff_against_the_one_approved(site):
    site.sign_in()
    first = mace_task(0)
    pid, old = site.propose(first)
    form = f"/approvals/{pid}/{old}"
    site.post(form, {"decision": "approved"}, form)
    second = first.model_copy(update={"local_epochs": 9})
    digest = task_hash(second)
    site.hub["rita"].propose_task(pid, digest, second.kind, second.model_dump(mode="json"))
    site.agent.run_once()
    page = site.http.get(f"/approvals/{pid}/{digest}").text
    assert f"Against <code>{old[:12]}" in page
    changed = re.sub(r"<[^>]+>", "", page)
    assert '-  "local_epochs": 5' in changed and '+  "local_epochs": 9' in changed


def test_the_diff_is_against_this_projects_approved_version_and_says_when_it_is_not(site):
    """Version 5 approved in project A, version 7 later in project B: version 9 in project A
    is diffed against A's own 5 (B's approval covers B only); in a new project C, where none
    was approved, the diff against B's 7 is labelled as from another project."""
    site.sign_in()
    first = mace_task(0)
    approved = []
    for version in (first, first.model_copy(update={"local_epochs": 7})):
        approved.append(site.propose(version))
        form = "/approvals/{}/{}".format(*approved[-1])
        site.post(form, {"decision": "approved"}, form)
    (pid, own), (_, elsewhere) = approved
    second = first.model_copy(update={"local_epochs": 9})
    digest = task_hash(second)
    site.hub["rita"].propose_task(pid, digest, second.kind, second.model_dump(mode="json"))
    site.agent.run_once()
    page = site.http.get(f"/approvals/{pid}/{digest}").text
    assert f"Against <code>{own[:12]}" in page, "diffed against another project's approval"
    assert "another project" not in page
    changed = re.sub(r"<[^>]+>", "", page)
    assert '-  "local_epochs": 5' in changed and '+  "local_epochs": 9' in changed
    project, third = site.propose(first.model_copy(update={"local_epochs": 3}))
    page = site.http.get(f"/approvals/{project}/{third}").text
    assert f"Against <code>{elsewhere[:12]}" in page
    assert "approved in <strong>another project</strong>" in page


def test_policy_changes_are_audited_written_and_taken_up_by_the_agent(site):
    site.sign_in()
    changed = site.post(
        "/policy",
        {"min_cell_size": "20", "kinds": ["tabular-logreg", "tabular-mlp"], "max_epsilon": "4"},
        "/policy",
    )
    assert changed.status_code == 303 and changed.headers["location"] == "/policy?done=changed"
    policy = site.site().policy
    assert (policy.min_cell_size, policy.max_epsilon) == (20, 4.0)
    assert policy.allowed_task_kinds == ["tabular-logreg", "tabular-mlp"]
    entry = site.ledger().entries()[-1]
    assert entry["action"] == "policy.changed"
    detail = orjson.loads(entry["detail"])
    assert detail["by"] == "dana" and detail["changes"]["min_cell_size"] == [10, 20]
    assert site.ledger().verify() is None
    bad = site.post("/policy", {"min_cell_size": "0", "kinds": ["custom"]}, "/policy")
    assert bad.status_code == 422 and "min_cell_size" in bad.text
    assert site.site().policy.min_cell_size == 20
    site.agent.run_once()
    assert site.agent.site.policy.min_cell_size == 20, "the agent took up the new policy"
    assert not policy.share_quality
    shared = {"min_cell_size": "20", "kinds": ["tabular-logreg"], "share_quality": "true"}
    site.post("/policy", shared, "/policy")
    assert site.site().policy.share_quality
    assert (
        'id="share_quality" name="share_quality" value="true" checked'
        in site.http.get("/policy").text
    )


def test_auto_approve_rules_are_added_and_removed_with_an_audit(site):
    site.sign_in()
    added = site.post(
        "/policy/rules",
        {"kinds": ["tabular-logreg"], "projects": "3, 5", "max_rounds": "10"},
        "/policy",
    )
    assert added.status_code == 303
    rules = site.site().policy.auto_approve
    assert [(r.kinds, r.projects, r.max_rounds) for r in rules] == [
        (["tabular-logreg"], [3, 5], 10)
    ]
    assert "3, 5" in site.http.get("/policy").text
    site.post("/policy/rules", {"kinds": ["analysis:table1", "no-such-kind"]}, "/policy")
    assert site.site().policy.auto_approve[1].kinds == ["analysis:table1"]
    first, second = _removals(site.http.get("/policy").text)
    site.post(second, {}, "/policy")
    bad = site.post("/policy/rules", {"kinds": ["tabular-logreg"], "projects": "x"}, "/policy")
    assert bad.status_code == 422
    site.post(first, {}, "/policy")
    assert site.site().policy.auto_approve == []
    actions = [e["action"] for e in site.ledger().entries()]
    assert actions.count("policy.changed") == 4


def _removals(page: str) -> list[str]:
    """The policy page's rule removal forms' actions, in the order of the rules."""
    return re.findall(r'action="(/policy/rules/[0-9a-f]+/delete)"', page)


def test_removing_a_rule_from_a_stale_page_removes_that_rule_or_none(site):
    """Two admins load the policy page with rules A, B, C. One removes A; the other, from the
    stale page, removes B: B goes, not C (which sits where B was). Removing A again, already
    gone, is refused with 409 and changes nothing."""
    site.sign_in()
    for kind in ("tabular-logreg", "tabular-mlp", "custom"):
        site.post("/policy/rules", {"kinds": [kind]}, "/policy")
    stale = _removals(site.http.get("/policy").text)
    assert len(stale) == 3
    assert site.post(stale[0], {}, "/policy").status_code == 303
    assert site.post(stale[1], {}, "/policy").status_code == 303
    assert [r.kinds for r in site.site().policy.auto_approve] == [["custom"]]
    again = site.post(stale[0], {}, "/policy")
    assert again.status_code == 409 and "reload the policy page" in again.text
    assert [r.kinds for r in site.site().policy.auto_approve] == [["custom"]]
    assert site.post("/policy/rules/1/delete", {}, "/policy").status_code == 422, "no positions"


def test_the_audit_page_verifies_the_chain_and_shows_a_break(site):
    site.sign_in()
    pid, digest = site.propose(mace_task(0))
    form = f"/approvals/{pid}/{digest}"
    site.post(form, {"decision": "approved"}, form)
    assert "The chain holds" in site.http.get("/audit").text
    with site.ledger().engine.begin() as conn:
        conn.execute(text("UPDATE audit SET detail = '{}' WHERE action = 'task.approved'"))
    page = site.http.get("/audit").text
    assert "The chain is broken at entry" in page


def test_the_data_page_shows_ingest_runs_quality_checks_and_unmapped_codes(site):
    site.sign_in()
    page = site.http.get("/data")
    assert page.status_code == 200
    assert "Ingest runs" in page.text and "Quality checks" in page.text
    assert '<th scope="col" class="num">Withdrawn</th>' in page.text
    assert re.search(r'<td class="num">\d+</td>', page.text)
    assert "Unmapped codes" in page.text


def test_the_agent_page_shows_the_last_poll_and_the_last_error(site):
    site.sign_in()
    assert "has not run here yet" in site.http.get("/agent").text
    site.agent.run_once()
    page = site.http.get("/agent").text
    assert 'state-approved">yes' in page
    with AgentStatus(status_path(site.site().ledger)) as status:
        status.polled(site.site().hub, "hub unreachable: connection refused")
    page = site.http.get("/agent").text
    assert 'state-declined">no' in page and "connection refused" in page


def test_an_agent_that_cannot_reach_its_hub_records_why(tmp_path):
    site = SiteConfig(name="s", store="store.duckdb", ledger=str(tmp_path / "ledger.sqlite"))
    dead = HubClient(f"http://127.0.0.1:{free_port()}", "credential", timeout=2)
    stop = threading.Event()
    runner = threading.Thread(target=SiteAgent(site, dead).run_forever, args=(stop, 0.05))
    runner.start()

    def failed():
        with AgentStatus(status_path(site.ledger)) as status:
            return status.agent()

    try:
        found = wait_for(failed, "the agent's first failed poll", timeout=30)
    finally:
        stop.set()
        runner.join()
        dead.close()
    assert found["connected"] is False and found["last_contact"] is None
    assert found["last_error"].startswith("hub unreachable")


def test_the_policy_page_offers_every_task_kind():
    assert get_args(TaskSpec.model_fields["kind"].annotation) == KINDS


def test_set_password_makes_a_private_argon2_file_and_serving_needs_one(tmp_path):
    config = tmp_path / "site.yaml"
    SiteConfig(name="s", store="store.duckdb", ledger="ledger.sqlite").save(config)
    runner = CliRunner()
    refused = runner.invoke(cli, ["site", "console", "--site-config", str(config)])
    assert refused.exit_code == 1 and "no console password is set" in refused.output
    short = runner.invoke(
        cli,
        ["site", "console", "set-password", "--site-config", str(config), "--user", "dana"],
        input="short\nshort\n",
    )
    assert short.exit_code == 1 and "12 to 256 characters" in short.output
    made = runner.invoke(
        cli,
        ["site", "console", "set-password", "--site-config", str(config), "--user", "dana"],
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert made.exit_code == 0, made.output
    path = password_path(tmp_path / "ledger.sqlite")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = orjson.loads(path.read_bytes())
    assert stored["dana"].startswith("$argon2id$") and PASSWORD not in path.read_text()
    agent_name = runner.invoke(
        cli,
        ["site", "console", "set-password", "--site-config", str(config), "--user", "agent"],
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert agent_name.exit_code == 1 and "name a person" in agent_name.output


def test_the_inbox_lists_an_analysis_waiting_and_approving_it_lets_the_agent_release_it(site):
    from flip.data.features.store_analysis import AnalysisSpec

    site.sign_in()
    rita = site.hub["rita"]
    pid = rita.create_project(f"table one {site.name}")
    rita.invite(pid, [site.name])
    spec = AnalysisSpec(kind="table1", data=mace_task(0).data)
    submitted = rita.submit_analysis(pid, spec.body())
    site.agent.run_once()
    inbox = site.http.get("/approvals").text
    form = f"/approvals/analysis/{pid}/{spec.digest()}"
    assert form in inbox and f"analysis {submitted['id']}" in inbox
    shown = site.http.get(form)
    assert shown.status_code == 200 and spec.digest() in shown.text
    assert "&#34;kind&#34;: &#34;table1&#34;" in shown.text or '"kind": "table1"' in shown.text
    done = site.post(form, {"decision": "approved"}, form)
    assert done.status_code == 303, done.text
    assert site.ledger().is_approved(str(pid), spec.digest())
    site.agent.run_once()
    assert rita.analysis(submitted["id"])["sites"][site.name] == "released round 0"
    assert form not in site.http.get("/approvals").text.split("Latest")[0]

    other = AnalysisSpec(kind="table1", data=mace_task(0).data, time_bin=7)
    declined = rita.submit_analysis(pid, other.body())
    site.agent.run_once()
    form = f"/approvals/analysis/{pid}/{other.digest()}"
    assert site.post(form, {"decision": "declined", "reason": " "}, form).status_code == 422
    site.post(form, {"decision": "declined", "reason": "not this cohort"}, form)
    site.agent.run_once()
    assert rita.analysis(declined["id"])["sites"][site.name] == "refused: not this cohort"
    unknown = site.post(
        f"/approvals/analysis/{pid}/{'b' * 64}", {"decision": "approved"}, "/approvals"
    )
    assert unknown.status_code == 404


def test_a_waiting_analysis_the_policy_now_forbids_is_shown_so_and_cannot_be_approved(site):
    from flip.data.features.store_analysis import AnalysisSpec
    from flip.site.console.policy import change_policy

    site.sign_in()
    rita = site.hub["rita"]
    pid = rita.create_project(f"forbidden {site.name}")
    rita.invite(pid, [site.name])
    spec = AnalysisSpec(kind="regression", data=mace_task(0).data)
    submitted = rita.submit_analysis(pid, spec.body())
    site.agent.run_once()
    form = f"/approvals/analysis/{pid}/{spec.digest()}"
    assert "forbids" not in site.http.get(form).text
    change_policy(site.config, "dana", {"allowed_analysis_kinds": ["table1", "survival"]})
    inbox = site.http.get("/approvals").text.split("Latest")[0]
    row = re.search(rf"<tr>(?:(?!</tr>).)*{re.escape(form)}.*?</tr>", inbox, re.S).group(0)
    assert "forbidden by policy" in row
    page = site.http.get(form).text
    assert "This site's policy forbids this analysis" in page
    assert "analysis kind regression is not allowed by site policy" in page
    assert 'value="approved"' not in page, "no approve button"
    refused = site.post(form, {"decision": "approved"}, form)
    assert refused.status_code == 409 and "not allowed by site policy" in refused.text
    assert not site.ledger().is_approved(str(pid), spec.digest())
    site.agent.run_once()
    assert rita.analysis(submitted["id"])["sites"][site.name] == (
        "refused: analysis kind regression is not allowed by site policy"
    )
