"""Issue 19, item 7: a researcher or viewer sees only the projects they own or are in.

To anyone else a project, its queries and its runs do not exist (404), so walking
the sequential ids tells an outsider nothing; admins see everything.
"""

HASH = "ab" * 32


def _project(hub, owner: str) -> dict[str, int]:
    """A project with an enrolled site that answered a count, a task and a run."""
    site = hub.site("a")
    pid = hub.call("POST", "/projects", owner, json={"name": "secret"}).json()["id"]
    hub.call("POST", f"/projects/{pid}/sites", owner, json={"sites": ["a"]})
    task = {"hash": HASH, "kind": "tabular-logreg", "spec": {}}
    hub.call("POST", f"/projects/{pid}/tasks", owner, json=task)
    query = {"name": "rare disease", "definition": {}}
    qid = hub.call("POST", f"/projects/{pid}/queries", owner, json=query).json()["id"]
    answer = {"count": 37, "suppressed": False, "threshold": 10}
    assert hub.call("POST", f"/agent/queries/{qid}", site, json=answer).status_code == 204
    run = {"task_hash": HASH, "rounds": 1}
    rid = hub.call("POST", f"/projects/{pid}/runs", owner, json=run).json()["id"]
    return {"project": pid, "query": qid, "run": rid}


def _reads(ids: dict[str, int]) -> list[str]:
    return [f"/projects/{ids['project']}", f"/queries/{ids['query']}", f"/runs/{ids['run']}"]


def test_outsiders_cannot_read_or_walk_other_projects(hub):
    owner = hub.user("olga", "researcher")
    ids = _project(hub, owner)
    outsiders = {"researcher": hub.user("otto", "researcher"), "viewer": hub.user("vic", "viewer")}
    for role, token in outsiders.items():
        for path in _reads(ids):
            response = hub.call("GET", path, token)
            assert response.status_code == 404, (role, path, response.text)
            assert "37" not in response.text and "secret" not in response.text
        for kind in ("projects", "queries", "runs"):
            for n in range(1, 6):
                assert hub.call("GET", f"/{kind}/{n}", token).status_code == 404, (role, kind, n)
    otto = outsiders["researcher"]
    pid, rid = ids["project"], ids["run"]
    writes = [
        ("POST", f"/projects/{pid}/queries", {"name": "q", "definition": {}}),
        ("POST", f"/projects/{pid}/sites", {"sites": ["a"]}),
        ("POST", f"/projects/{pid}/runs", {"task_hash": HASH, "rounds": 1}),
        ("POST", f"/projects/{pid}/members", {"users": ["otto"]}),
        ("POST", f"/runs/{rid}/status", {"status": "cancelled"}),
        ("POST", f"/runs/{rid}/rounds", {"round": 1, "metrics": {"auroc": 0.5}}),
    ]
    for method, path, body in writes:
        assert hub.call(method, path, otto, json=body).status_code == 404, path


def test_members_and_viewer_members_read_admins_read_all(hub):
    owner = hub.user("olga", "researcher")
    ids = _project(hub, owner)
    member = hub.user("mira", "researcher")
    viewer = hub.user("vic", "viewer")
    added = hub.call(
        "POST", f"/projects/{ids['project']}/members", owner, json={"users": ["mira", "vic"]}
    )
    assert added.json() == ["mira", "vic"]
    for token in (owner, member, viewer, hub.admin):
        for path in _reads(ids):
            assert hub.call("GET", path, token).status_code == 200, path
    assert hub.call("GET", f"/queries/{ids['query']}", viewer).json()["results"]["a"]["count"] == 37
    query = {"name": "q", "definition": {}}
    made = hub.call("POST", f"/projects/{ids['project']}/queries", viewer, json=query)
    assert made.status_code == 403, "a viewer member reads but does not write"
