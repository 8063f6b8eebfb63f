"""The per-project caps cannot be multiplied by making more projects: a researcher owns at
most MAX_PROJECTS_PER_USER projects, and all the projects one user owns hold at most
MAX_OPEN_TASKS_PER_OWNER undecided tasks and MAX_RUNNING_ANALYSES_PER_OWNER running
analyses (429 naming the cap)."""

from flip.hub import quotas


def _task(n: int) -> dict:
    return {"hash": f"{n:064x}", "kind": "k", "spec": {"n": n}}


def _project(hub, token: str, name: str) -> int:
    made = hub.call("POST", "/projects", token, json={"name": name})
    assert made.status_code == 201, made.text
    return made.json()["id"]


def test_a_researcher_owns_at_most_the_cap_of_projects(hub, monkeypatch):
    monkeypatch.setattr(quotas, "MAX_PROJECTS_PER_USER", 3)
    rita, sam = hub.user("rita", "researcher"), hub.user("sam", "researcher")
    for n in range(3):
        _project(hub, rita, f"p{n}")
    refused = hub.call("POST", "/projects", rita, json={"name": "one more"})
    assert refused.status_code == 429
    assert refused.json()["detail"] == (
        "you own 3 projects, the most one researcher may (3): ask an admin"
    )
    assert len(hub.call("GET", "/projects", rita).json()) == 3
    _project(hub, sam, "sam's")  # another researcher has a cap of their own
    for n in range(4):  # admins are not counted
        _project(hub, hub.admin, f"admin {n}")


def test_undecided_tasks_are_capped_over_all_of_an_owners_projects(hub, monkeypatch):
    monkeypatch.setattr(quotas, "MAX_OPEN_TASKS_PER_OWNER", 3)
    rita, mia = hub.user("rita", "researcher"), hub.user("mia", "researcher")
    site = hub.site("a")
    first, second = _project(hub, rita, "p1"), _project(hub, rita, "p2")
    for pid in (first, second):
        hub.call("POST", f"/projects/{pid}/sites", rita, json={"sites": ["a"]})
    hub.call("POST", f"/projects/{second}/members", rita, json={"users": ["mia"]})
    for pid, n in ((first, 0), (first, 1), (second, 2)):
        assert hub.call("POST", f"/projects/{pid}/tasks", rita, json=_task(n)).status_code == 201
    for token in (rita, mia):
        refused = hub.call("POST", f"/projects/{second}/tasks", token, json=_task(3))
        assert refused.status_code == 429, refused.text
        assert "3 tasks their sites have yet to decide" in refused.json()["detail"]
    assert len(hub.call("GET", "/agent/work", site).json()["tasks"]) == 3

    decision = {"project_id": first, "task_hash": _task(0)["hash"], "decision": "declined"}
    assert hub.call("POST", "/agent/decisions", site, json=decision).status_code == 204
    made = hub.call("POST", f"/projects/{second}/tasks", mia, json=_task(3))
    assert made.status_code == 201, "one was decided"
    other = _project(hub, mia, "mia's own")
    assert hub.call("POST", f"/projects/{other}/tasks", mia, json=_task(4)).status_code == 201


def test_running_analyses_are_capped_over_all_of_an_owners_projects(hub, monkeypatch):
    monkeypatch.setattr(quotas, "MAX_RUNNING_ANALYSES_PER_OWNER", 2)
    rita = hub.user("rita", "researcher")
    hub.site("a")
    pids = [_project(hub, rita, f"p{n}") for n in range(3)]
    for pid in pids:
        hub.call("POST", f"/projects/{pid}/sites", rita, json={"sites": ["a"]})
    body = {"spec": {"kind": "table1"}}
    made = [hub.call("POST", f"/projects/{pid}/analyses", rita, json=body) for pid in pids]
    assert [m.status_code for m in made] == [201, 201, 429], made[-1].text
    assert "2 analyses running" in made[-1].json()["detail"]
