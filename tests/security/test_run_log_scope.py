"""A site shares a run log only for a run it joined: one that refused the run (or never
replied) cannot make the run's page show it training."""

HASH = "ab" * 32
ENTRY = {"seq": 1, "at": "2026-01-01T00:00:00", "action": "run.trained", "detail": {"loss": 0.1}}


def _run(hub, sites: list[str]) -> tuple[str, int, dict[str, str]]:
    researcher = hub.user("rita", "researcher")
    tokens = {name: hub.site(name) for name in sites}
    pid = hub.call("POST", "/projects", researcher, json={"name": "p"}).json()["id"]
    hub.call("POST", f"/projects/{pid}/sites", researcher, json={"sites": sites})
    task = {"hash": HASH, "kind": "k", "spec": {}}
    hub.call("POST", f"/projects/{pid}/tasks", researcher, json=task)
    run = {"task_hash": HASH, "rounds": 1}
    rid = hub.call("POST", f"/projects/{pid}/runs", researcher, json=run).json()["id"]
    return researcher, rid, tokens


def test_a_site_that_refused_a_run_shares_no_log_of_it(hub):
    researcher, rid, tokens = _run(hub, ["joiner", "refuser"])
    assert hub.call("POST", f"/agent/runs/{rid}", tokens["joiner"], json={"status": "joined"})
    refused = hub.call("POST", f"/agent/runs/{rid}", tokens["refuser"], json={"status": "refused"})
    assert refused.status_code == 204

    shared = hub.call(
        "POST", f"/agent/runs/{rid}/log", tokens["refuser"], json={"entries": [ENTRY]}
    )
    assert shared.status_code == 404, shared.text
    own = hub.call("POST", f"/agent/runs/{rid}/log", tokens["joiner"], json={"entries": [ENTRY]})
    assert own.status_code == 204, own.text

    logs = hub.call("GET", f"/runs/{rid}", researcher).json()["logs"]
    assert set(logs) == {"joiner"}


def test_a_site_that_never_replied_shares_no_log(hub):
    _, rid, tokens = _run(hub, ["quiet"])
    shared = hub.call("POST", f"/agent/runs/{rid}/log", tokens["quiet"], json={"entries": [ENTRY]})
    assert shared.status_code == 404
