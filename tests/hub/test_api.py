"""The hub API on SQLite and PostgreSQL: roles, enrolment, queries, decisions, runs, audit."""

import json
from pathlib import Path

from sqlalchemy import func, select, update

from flip.hub import db
from flip.hub.db import audit

HASH = "ab" * 32


def _project_with_sites(hub, researcher, *sites):
    pid = hub.call("POST", "/projects", researcher, json={"name": "p"}).json()["id"]
    response = hub.call("POST", f"/projects/{pid}/sites", researcher, json={"sites": list(sites)})
    assert response.status_code == 200, response.text
    return pid


def test_roles_are_enforced(hub):
    researcher = hub.user("rita", "researcher")
    viewer = hub.user("vic", "viewer")
    site = hub.site("st-a")
    assert hub.call("POST", "/users", json={"name": "x", "role": "admin"}).status_code == 401
    assert (
        hub.call(
            "POST", "/users", "flip_u_nonsense", json={"name": "x", "role": "admin"}
        ).status_code
        == 401
    )
    assert (
        hub.call("POST", "/users", researcher, json={"name": "x", "role": "admin"}).status_code
        == 403
    )
    assert hub.call("POST", "/projects", viewer, json={"name": "p"}).status_code == 403
    assert hub.call("POST", "/projects", site, json={"name": "p"}).status_code == 403
    assert hub.call("GET", "/agent/work", researcher).status_code == 403
    assert hub.call("GET", "/audit/verify", researcher).status_code == 403


def test_enrolment_token_works_once(hub):
    enrolment = hub.call("POST", "/sites", hub.admin, json={"name": "st-b"}).json()[
        "enrolment_token"
    ]
    first = hub.call("POST", "/sites/enrol", json={"enrolment_token": enrolment})
    assert first.status_code == 200
    assert hub.call("POST", "/sites/enrol", json={"enrolment_token": enrolment}).status_code == 401
    assert hub.call("POST", "/sites", hub.admin, json={"name": "st-b"}).status_code == 409


def test_query_results_are_released_counts_only(hub):
    researcher = hub.user("rita", "researcher")
    a, b = hub.site("a"), hub.site("b")
    outsider = hub.site("c")
    pid = _project_with_sites(hub, researcher, "a", "b")
    qid = hub.call(
        "POST", f"/projects/{pid}/queries", researcher, json={"name": "q", "definition": {}}
    ).json()["id"]
    assert [q["id"] for q in hub.call("GET", "/agent/work", a).json()["queries"]] == [qid]
    assert [q["id"] for q in hub.call("GET", "/agent/work", b).json()["queries"]] == [qid]
    assert hub.call("GET", "/agent/work", outsider).json()["queries"] == []
    assert (
        hub.call(
            "POST",
            f"/agent/queries/{qid}",
            outsider,
            json={"count": 50, "suppressed": False, "threshold": 10},
        ).status_code
        == 404
    )
    too_small = {"count": 3, "suppressed": False, "threshold": 10}
    assert hub.call("POST", f"/agent/queries/{qid}", a, json=too_small).status_code == 422
    small_bin = {
        "count": 42,
        "suppressed": False,
        "threshold": 10,
        "histograms": {"sex": {"female": 38, "male": 4}},
    }
    refused = hub.call("POST", f"/agent/queries/{qid}", a, json=small_bin)
    assert refused.status_code == 422 and "not a released count" in refused.text
    bins = {"sex": {"female": 32, "male": 10}, "age": {"60-69": 42}}
    ok = hub.call(
        "POST",
        f"/agent/queries/{qid}",
        a,
        json={"count": 42, "suppressed": False, "threshold": 10, "histograms": bins},
    )
    assert ok.status_code == 204
    again = {"count": 99, "suppressed": False, "threshold": 10}
    assert hub.call("POST", f"/agent/queries/{qid}", a, json=again).status_code == 204
    with hub.app.state.engine.connect() as conn:
        answers = conn.execute(
            select(func.count()).select_from(audit).where(audit.c.action == "query.answer")
        ).scalar_one()
    assert answers == 1, "answering twice changes nothing and audits once"
    assert hub.call("GET", "/agent/work", a).json()["queries"] == [], "answered: a's work is done"
    assert [q["id"] for q in hub.call("GET", "/agent/work", b).json()["queries"]] == [qid]
    view = hub.call("GET", f"/queries/{qid}", researcher).json()
    assert view["pending"] == ["b"] and view["total"] is None
    hub.call(
        "POST",
        f"/agent/queries/{qid}",
        b,
        json={"count": None, "suppressed": True, "threshold": 10},
    )
    view = hub.call("GET", f"/queries/{qid}", researcher).json()
    assert view["results"]["a"]["count"] == 42 and view["results"]["b"]["suppressed"]
    assert view["results"]["a"]["histograms"] == bins
    assert view["total"] is None and view["histograms"] == {}
    assert hub.call("GET", "/agent/work", a).json()["queries"] == []


def test_a_circe_query_shows_each_sites_attrition_and_the_combined_one(hub):
    researcher = hub.user("rita", "researcher")
    a, b = hub.site("a"), hub.site("b")
    pid = _project_with_sites(hub, researcher, "a", "b")
    path = Path(__file__).parents[1] / "data" / "circe" / "t2dm_older_high_sbp.json"
    circe = json.loads(path.read_text(encoding="utf-8"))
    made = hub.call(
        "POST", f"/projects/{pid}/queries", researcher, json={"name": "t2dm", "definition": circe}
    )
    assert made.status_code == 201, made.text
    qid = made.json()["id"]
    steps = ["primary criteria", *(r["name"] for r in circe["InclusionRules"])]
    view = made.json()
    assert view["steps"] == steps and view["attrition"] == ["0+", "0+", "0+"]

    def answer(site, attrition, count=None):
        body = {"count": count, "suppressed": count is None, "threshold": 10}
        return hub.call("POST", f"/agent/queries/{qid}", site, json=body | {"attrition": attrition})

    for bad in ([120, 4, "<10"], [120, 60, "<5"], [120, 60, "few"], [120, 60], [-1, 0, 0]):
        refused = answer(a, bad)
        assert refused.status_code == 422, bad
    assert answer(a, [120, 60, "<10"]).status_code == 204
    view = hub.call("GET", f"/queries/{qid}", researcher).json()
    assert view["results"]["a"]["attrition"] == [120, 60, "<10"]
    assert view["attrition"] == ["120+", "60+", "1+"], "b is pending: a's <10 is at least 1"
    assert answer(b, [80, "withheld", 30], count=30).status_code == 204
    view = hub.call("GET", f"/queries/{qid}", researcher).json()
    assert view["results"]["b"]["attrition"] == [80, "withheld", 30]
    assert view["attrition"] == [200, "60+", "31+"]
    plain = hub.call(
        "POST", f"/projects/{pid}/queries", researcher, json={"name": "q", "definition": {}}
    ).json()
    assert plain["steps"] == [] and plain["attrition"] == []
    qid = plain["id"]
    assert answer(a, [120]).status_code == 422, "a FLIP cohort has no attrition steps"


def test_run_needs_a_joined_site_and_follows_its_state_machine(hub):
    researcher = hub.user("rita", "researcher")
    other = hub.user("otto", "researcher")
    a = hub.site("a")
    pid = _project_with_sites(hub, researcher, "a")
    body = {"hash": HASH, "kind": "tabular-logreg", "spec": {"x": 1}}
    assert hub.call("POST", f"/projects/{pid}/tasks", other, json=body).status_code == 404
    assert hub.call("POST", f"/projects/{pid}/tasks", researcher, json=body).status_code == 201
    assert (
        hub.call(
            "POST", f"/projects/{pid}/runs", researcher, json={"task_hash": "cd" * 32, "rounds": 2}
        ).status_code
        == 404
    )
    rid = hub.call(
        "POST", f"/projects/{pid}/runs", researcher, json={"task_hash": HASH, "rounds": 2}
    ).json()["id"]
    assert (
        hub.call("POST", f"/runs/{rid}/status", researcher, json={"status": "running"}).status_code
        == 409
    )
    decision = {"project_id": pid, "task_hash": HASH, "decision": "approved"}
    assert hub.call("POST", "/agent/decisions", a, json=decision).status_code == 204
    assert hub.call("GET", f"/projects/{pid}", researcher).json()["sites"] == {"a": "approved"}
    assert [r["id"] for r in hub.call("GET", "/agent/work", a).json()["runs"]] == [rid]
    assert hub.call("POST", f"/agent/runs/{rid}", a, json={"status": "joined"}).status_code == 204
    assert (
        hub.call("POST", f"/runs/{rid}/status", researcher, json={"status": "running"}).status_code
        == 200
    )
    assert (
        hub.call(
            "POST", f"/runs/{rid}/rounds", researcher, json={"round": 1, "metrics": {"auroc": 0.8}}
        ).status_code
        == 204
    )
    assert (
        hub.call(
            "POST", f"/runs/{rid}/rounds", researcher, json={"round": 1, "metrics": {"auroc": 0.8}}
        ).status_code
        == 409
    )
    done = hub.call(
        "POST",
        f"/runs/{rid}/status",
        researcher,
        json={"status": "completed", "results": {"ok": 1}},
    )
    assert done.json()["status"] == "completed" and done.json()["round_metrics"] == [{"auroc": 0.8}]
    assert (
        hub.call("POST", f"/runs/{rid}/status", researcher, json={"status": "running"}).status_code
        == 409
    )


def test_a_hub_without_flower_refuses_deployment_runs_and_node_keys(hub):
    researcher = hub.user("rita", "researcher")
    a = hub.site("a")
    pid = _project_with_sites(hub, researcher, "a")
    body = {"hash": HASH, "kind": "tabular-logreg", "spec": {"x": 1}}
    hub.call("POST", f"/projects/{pid}/tasks", researcher, json=body)
    run = {"task_hash": HASH, "rounds": 2, "runtime": "deployment"}
    rid = hub.call("POST", f"/projects/{pid}/runs", researcher, json=run).json()["id"]
    decision = {"project_id": pid, "task_hash": HASH, "decision": "approved"}
    hub.call("POST", "/agent/decisions", a, json=decision)
    hub.call("POST", f"/agent/runs/{rid}", a, json={"status": "joined"})
    refused = hub.call("POST", f"/runs/{rid}/status", researcher, json={"status": "running"})
    assert refused.status_code == 409 and "flip hub serve --flower" in refused.json()["detail"]
    assert hub.call("GET", f"/runs/{rid}", researcher).json()["status"] == "requested"
    key = {"public_key": "ecdsa-sha2-nistp384 " + "A" * 160}
    assert hub.call("POST", "/agent/node-key", a, json=key).status_code == 409
    bad = hub.call("POST", "/agent/node-key", a, json={"public_key": "ssh-rsa " + "A" * 100})
    assert bad.status_code == 422
    work = hub.call("GET", "/agent/work", a).json()
    assert work["train"] == [] and work["flower"] is None


def test_bad_requests_get_4xx_never_5xx(hub):
    researcher = hub.user("rita", "researcher")
    cases = [
        ("GET", "/projects/999", None),
        ("GET", "/projects/not-a-number", None),
        ("POST", "/projects", {"name": ""}),
        ("POST", "/projects", {"name": 5, "description": []}),
        ("POST", "/projects/999/sites", {"sites": ["nowhere"]}),
        ("POST", "/projects/999/runs", {"task_hash": "zz", "rounds": -1}),
        ("GET", "/queries/999", None),
        ("GET", "/runs/999", None),
        ("GET", "/runs/99999999999999999999", None),
        ("POST", "/runs/1/rounds", {"round": 2**63, "metrics": {}}),
    ]
    for method, path, body in cases:
        response = hub.call(method, path, researcher, json=body)
        assert 400 <= response.status_code < 500, (method, path, response.status_code)
        assert response.json()["detail"]


def test_oversized_bodies_get_413_and_change_nothing(hub):
    researcher = hub.user("rita", "researcher")
    huge = {"name": "p", "description": "x" * (2 << 20)}
    declared = hub.call("POST", "/projects", researcher, json=huge)
    assert declared.status_code == 413
    assert "over the limit" in declared.json()["detail"]

    def streamed():
        yield b'{"name": "p", "description": "'
        for _ in range(40):
            yield b"y" * 65536
        yield b'"}'

    chunked = hub.call(
        "POST",
        "/projects",
        researcher,
        content=streamed(),
        headers={"Content-Type": "application/json"},
    )
    assert chunked.status_code == 413
    assert "over the limit" in chunked.json()["detail"]
    with hub.app.state.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(db.projects)).scalar_one() == 0


def test_audit_chain_verifies_and_detects_tampering(hub):
    researcher = hub.user("rita", "researcher")
    hub.call("POST", "/projects", researcher, json={"name": "p"})
    verdict = hub.call("GET", "/audit/verify", hub.admin).json()
    assert (verdict["ok"], verdict["broken_at"], verdict["site_ledgers"]) == (True, None, [])
    with hub.app.state.engine.begin() as conn:
        conn.execute(update(audit).where(audit.c.seq == 2).values(actor="user:mallory"))
    verdict = hub.call("GET", "/audit/verify?full=true", hub.admin).json()
    assert (verdict["ok"], verdict["broken_at"]) == (False, 2)


def test_histograms_combine_across_sites_and_stay_hidden_where_any_site_suppressed(hub):
    researcher = hub.user("rita", "researcher")
    a, b = hub.site("a"), hub.site("b")
    pid = _project_with_sites(hub, researcher, "a", "b")
    qid = hub.call(
        "POST", f"/projects/{pid}/queries", researcher, json={"name": "q", "definition": {}}
    ).json()["id"]
    answers = {
        a: {"sex": {"female": 20, "male": 22}, "age": {"50-59": 12, "60-69": 30}},
        b: {"sex": {"female": 15, "male": None}, "age": {"60-69": 0, "70-79": 19}},
    }
    for token, bins in answers.items():
        body = {"count": 42 if token == a else 21, "suppressed": False, "threshold": 10}
        response = hub.call(
            "POST", f"/agent/queries/{qid}", token, json=body | {"histograms": bins}
        )
        assert response.status_code == 204, response.text
    view = hub.call("GET", f"/queries/{qid}", researcher).json()
    assert view["total"] == 63
    assert view["histograms"] == {
        "age": {"50-59": 12, "60-69": 30, "70-79": 19},
        "sex": {"female": 35, "male": None},
    }


def test_a_site_admin_sees_what_their_site_was_asked_and_released_and_nothing_else(hub):
    researcher = hub.user("rita", "researcher")
    a = hub.site("a")
    hub.site("b")
    pid = _project_with_sites(hub, researcher, "a", "b")
    qid = hub.call(
        "POST", f"/projects/{pid}/queries", researcher, json={"name": "q", "definition": {}}
    ).json()["id"]
    hub.call(
        "POST", f"/projects/{pid}/tasks", researcher, json={"hash": HASH, "kind": "k", "spec": {}}
    )
    hub.call(
        "POST",
        f"/agent/queries/{qid}",
        a,
        json={"count": 12, "suppressed": False, "threshold": 10},
    )
    hub.call(
        "POST",
        "/agent/decisions",
        a,
        json={"project_id": pid, "task_hash": HASH, "decision": "declined", "reason": "no"},
    )
    with hub.app.state.engine.connect() as conn:
        sites = dict(conn.execute(select(db.sites.c.name, db.sites.c.id)).all())
    body = {"name": "sam", "role": "site_admin", "site": "a"}
    sam = hub.call("POST", "/users", hub.admin, json=body).json()["token"]
    seen = hub.call("GET", f"/sites/{sites['a']}/activity", sam).json()
    assert seen["site"] == "a" and seen["projects"] == {str(pid): "invited"}
    assert seen["queries"] == [
        {
            "id": qid,
            "project_id": pid,
            "name": "q",
            "released": {"count": 12, "suppressed": False, "error": None},
        }
    ]
    assert [d["decision"] for d in seen["decisions"]] == ["declined"]
    assert {"query.answer", "task.declined", "site.enrol"} <= {e["action"] for e in seen["audit"]}
    assert hub.call("GET", f"/sites/{sites['b']}/activity", sam).status_code == 403
    assert hub.call("GET", f"/projects/{pid}", sam).status_code == 403, "no hub-wide reading"
    nameless = {"name": "x", "role": "site_admin"}
    assert hub.call("POST", "/users", hub.admin, json=nameless).status_code == 422
    unknown = {"name": "y", "role": "site_admin", "site": "nowhere"}
    assert hub.call("POST", "/users", hub.admin, json=unknown).status_code == 404


def test_project_members_work_on_the_project_until_taken_off(hub):
    owner = hub.user("olga", "researcher")
    member = hub.user("mira", "researcher")
    outsider = hub.user("otto", "researcher")
    hub.user("vera", "viewer")
    pid = hub.call("POST", "/projects", owner, json={"name": "p"}).json()["id"]
    query = {"name": "q", "definition": {}}

    assert hub.call("POST", f"/projects/{pid}/queries", member, json=query).status_code == 404
    added = hub.call("POST", f"/projects/{pid}/members", owner, json={"users": ["mira"]})
    assert added.status_code == 200, added.text
    assert added.json() == ["mira"]
    assert hub.call("GET", f"/projects/{pid}", member).json()["members"] == ["mira"]
    assert hub.call("GET", f"/projects/{pid}", outsider).status_code == 404

    assert hub.call("POST", f"/projects/{pid}/queries", member, json=query).status_code == 201
    assert hub.call("POST", f"/projects/{pid}/queries", outsider, json=query).status_code == 404
    # Members work on the project; only its owner (or an admin) says who they are.
    again = hub.call("POST", f"/projects/{pid}/members", member, json={"users": ["otto"]})
    assert again.status_code == 403

    # A viewer may be a member: it reads the project, and writes nothing.
    viewer = hub.call("POST", f"/projects/{pid}/members", owner, json={"users": ["vera"]})
    assert viewer.json() == ["mira", "vera"]
    admin = hub.call("POST", f"/projects/{pid}/members", owner, json={"users": ["admin"]})
    assert admin.status_code == 422 and "admin" in admin.json()["detail"]
    unknown = hub.call("POST", f"/projects/{pid}/members", owner, json={"users": ["nobody"]})
    assert unknown.status_code == 404 and "nobody" in unknown.json()["detail"]
    twice = hub.call("POST", f"/projects/{pid}/members", owner, json={"users": ["mira"]})
    assert twice.json() == ["mira", "vera"]

    with hub.app.state.engine.connect() as conn:
        mira = conn.execute(select(db.users.c.id).where(db.users.c.name == "mira")).scalar_one()
    assert hub.call("DELETE", f"/projects/{pid}/members/{mira}", owner).status_code == 204
    assert hub.call("DELETE", f"/projects/{pid}/members/{mira}", owner).status_code == 404
    assert hub.call("POST", f"/projects/{pid}/queries", member, json=query).status_code == 404
    assert hub.call("GET", f"/projects/{pid}", owner).json()["members"] == ["vera"]
    with hub.app.state.engine.connect() as conn:
        actions = conn.execute(
            select(audit.c.action).where(audit.c.action.like("project.member.%"))
        ).scalars()
        assert list(actions) == [
            "project.member.add",
            "project.member.add",
            "project.member.remove",
        ]


def test_a_hub_run_takes_its_tasks_strategy(hub):
    researcher = hub.user("rita", "researcher")
    hub.site("a")
    pid = _project_with_sites(hub, researcher, "a")
    spec = {"name": "t", "strategy": {"name": "krum", "options": {"num_malicious_nodes": 0}}}
    body = {"hash": HASH, "kind": "tabular-logreg", "spec": spec}
    assert hub.call("POST", f"/projects/{pid}/tasks", researcher, json=body).status_code == 201
    run = {"task_hash": HASH, "rounds": 2}
    made = hub.call("POST", f"/projects/{pid}/runs", researcher, json=run)
    assert made.status_code == 201 and made.json()["strategy"] == "krum"
    other = {**run, "strategy": "fedavg"}
    other = hub.call("POST", f"/projects/{pid}/runs", researcher, json=other)
    assert other.status_code == 422 and "names 'krum'" in other.json()["detail"]


def test_a_hub_run_of_more_rounds_than_its_task_approves_is_refused_when_requested(hub):
    """Each site refuses the rounds past the task's: a run asking more would fail mid-way,
    after the sites spent their budget on the rounds before."""
    researcher = hub.user("rita", "researcher")
    hub.site("a")
    pid = _project_with_sites(hub, researcher, "a")
    body = {"hash": HASH, "kind": "tabular-logreg", "spec": {"name": "t", "rounds": 3}}
    assert hub.call("POST", f"/projects/{pid}/tasks", researcher, json=body).status_code == 201
    more = hub.call(
        "POST", f"/projects/{pid}/runs", researcher, json={"task_hash": HASH, "rounds": 4}
    )
    assert more.status_code == 422 and "has 3 rounds" in more.json()["detail"]
    run = {"task_hash": HASH, "rounds": 3}
    assert hub.call("POST", f"/projects/{pid}/runs", researcher, json=run).status_code == 201


def test_a_circe_query_whose_rules_are_not_a_short_list_is_refused_not_a_500(hub):
    researcher = hub.user("rita", "researcher")
    hub.site("a")
    pid = _project_with_sites(hub, researcher, "a")
    base = {"ConceptSets": [], "PrimaryCriteria": {"CriteriaList": []}}
    for rules in (5, {"name": "x"}, "abc", [{"name": "r"}] * 100):
        definition = base | {"InclusionRules": rules}
        made = hub.call(
            "POST",
            f"/projects/{pid}/queries",
            researcher,
            json={"name": "q", "definition": definition},
        )
        assert made.status_code == 422, (str(rules)[:40], made.status_code, made.text[:200])
