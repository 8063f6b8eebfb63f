"""A researcher cannot fill every invited site's poll with tasks: each task a site has yet to
decide is sent in its every poll (a person decides most, so they stay), and a project could
propose them without end (1,000 of ~1 MB each made every poll of every invited site a
gigabyte). A project holds at most MAX_OPEN_TASKS tasks waiting for a site's decision."""

from flip.hub.routes import projects as routes


def _task(n: int) -> dict:
    return {"hash": f"{n:064x}", "kind": "k", "spec": {"n": n}}


def test_a_project_holds_at_most_its_open_tasks(hub, monkeypatch):
    monkeypatch.setattr(routes, "MAX_OPEN_TASKS", 3)
    researcher = hub.user("rita", "researcher")
    site = hub.site("a")
    pid = hub.call("POST", "/projects", researcher, json={"name": "p"}).json()["id"]
    hub.call("POST", f"/projects/{pid}/sites", researcher, json={"sites": ["a"]})
    url = f"/projects/{pid}/tasks"
    made = [hub.call("POST", url, researcher, json=_task(n)).status_code for n in range(4)]
    assert made == [201, 201, 201, 409]
    assert len(hub.call("GET", "/agent/work", site).json()["tasks"]) == 3

    decision = {"project_id": pid, "task_hash": _task(0)["hash"], "decision": "declined"}
    assert hub.call("POST", "/agent/decisions", site, json=decision).status_code == 204
    assert hub.call("POST", url, researcher, json=_task(4)).status_code == 201, "one was decided"
    assert hub.call("POST", url, researcher, json=_task(5)).status_code == 409


def test_tasks_proposed_before_any_site_is_invited_count_too(hub, monkeypatch):
    monkeypatch.setattr(routes, "MAX_OPEN_TASKS", 2)
    researcher = hub.user("rita", "researcher")
    hub.site("a")
    pid = hub.call("POST", "/projects", researcher, json={"name": "p"}).json()["id"]
    url = f"/projects/{pid}/tasks"
    made = [hub.call("POST", url, researcher, json=_task(n)).status_code for n in range(3)]
    assert made == [201, 201, 409]
