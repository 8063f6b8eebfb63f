"""Issue 19, the class of a1df49e/f45938d: free text a site sends (a query's error, a task's
decline reason, a run's refusal, its shared log) is bounded and kept as one line of text at
the hub's API, on SQLite and PostgreSQL hubs, so a hostile site cannot store terminal escapes
or forged lines for a researcher's or admin's terminal; a name a site keys its numbers by
(a histogram bin, a data-quality label) that is not one line of text is refused (422)."""

import orjson
from sqlalchemy import select

from flip.hub.db import audit

HASH = "cd" * 32
#: An OSC-52 clipboard write, a colour, a forged second line and a bidi override (a NUL is
#: refused anywhere in a body: tests/security/test_hub_hostile_input.py).
HOSTILE = "bad\x1b]52;c;cm0gLXJmIH4=\x07 \x1b[31mred\n\rerror: forged\u202eend"


def _one_line(text: str) -> None:
    assert text and all(c.isprintable() for c in text), repr(text)
    assert "bad" in text and "red" in text and "forged" in text and "end" in text, repr(text)


def _world(hub):
    """A researcher's project with site `st-a` invited and a proposed task."""
    researcher = hub.user("rita", "researcher")
    site = hub.site("st-a")
    pid = hub.call("POST", "/projects", researcher, json={"name": "p"}).json()["id"]
    hub.call("POST", f"/projects/{pid}/sites", researcher, json={"sites": ["st-a"]})
    task = {"hash": HASH, "kind": "tabular-logreg", "spec": {"name": "t"}}
    assert hub.call("POST", f"/projects/{pid}/tasks", researcher, json=task).status_code == 201
    return researcher, site, pid


def test_a_sites_query_error_is_stored_as_one_line(hub):
    researcher, site, pid = _world(hub)
    definition = {"include": [{"table": "condition_occurrence", "concept_ids": [201826]}]}
    qid = hub.call(
        "POST", f"/projects/{pid}/queries", researcher, json={"name": "q", "definition": definition}
    ).json()["id"]
    answer = {"count": None, "suppressed": False, "threshold": 10, "error": HOSTILE}
    sent = hub.call("POST", f"/agent/queries/{qid}", site, json=answer)
    assert sent.status_code == 204, sent.text
    _one_line(hub.call("GET", f"/queries/{qid}", researcher).json()["results"]["st-a"]["error"])
    blank = hub.site("st-b")
    hub.call("POST", f"/projects/{pid}/sites", researcher, json={"sites": ["st-b"]})
    sent = hub.call("POST", f"/agent/queries/{qid}", blank, json=answer | {"error": "\x1b\n"})
    assert sent.status_code == 204, sent.text
    shown = hub.call("GET", f"/queries/{qid}", researcher).json()["results"]["st-b"]["error"]
    assert shown == "no reason given", "an error of control characters alone still says so"
    too_long = hub.call("POST", f"/agent/queries/{qid}", site, json=answer | {"error": "x" * 501})
    assert too_long.status_code == 422


def test_a_sites_decline_reason_is_stored_as_one_line(hub):
    researcher, site, pid = _world(hub)
    decision = {"project_id": pid, "task_hash": HASH, "decision": "declined", "reason": HOSTILE}
    sent = hub.call("POST", "/agent/decisions", site, json=decision)
    assert sent.status_code == 204, sent.text
    [task] = hub.call("GET", f"/projects/{pid}/tasks", researcher).json()
    assert task["decisions"]["st-a"][0] == "declined"
    _one_line(task["decisions"]["st-a"][1])
    activity = hub.call("GET", "/sites/1/activity", hub.admin).json()
    _one_line(activity["decisions"][0]["reason"])
    with hub.app.state.engine.connect() as conn:
        [detail] = conn.execute(
            select(audit.c.detail).where(audit.c.action == "task.declined")
        ).scalars()
    _one_line(orjson.loads(detail)["reason"])
    too_long = decision | {"reason": "x" * 2001}
    assert hub.call("POST", "/agent/decisions", site, json=too_long).status_code == 422


def test_a_sites_run_refusal_is_stored_as_one_line(hub):
    researcher, site, pid = _world(hub)
    rid = hub.call(
        "POST", f"/projects/{pid}/runs", researcher, json={"task_hash": HASH, "rounds": 3}
    ).json()["id"]
    sent = hub.call(
        "POST", f"/agent/runs/{rid}", site, json={"status": "refused", "reason": HOSTILE}
    )
    assert sent.status_code == 204, sent.text
    run = hub.call("GET", f"/runs/{rid}", researcher).json()
    assert run["sites"]["st-a"]["status"] == "refused"
    _one_line(run["sites"]["st-a"]["reason"])


def test_a_joined_sites_shared_log_is_stored_as_one_line(hub):
    researcher, site, pid = _world(hub)
    rid = hub.call(
        "POST", f"/projects/{pid}/runs", researcher, json={"task_hash": HASH, "rounds": 3}
    ).json()["id"]
    joined = hub.call("POST", f"/agent/runs/{rid}", site, json={"status": "joined"})
    assert joined.status_code == 204, joined.text
    entry = {"seq": 1, "at": "2026\x1b[2J\n", "action": "run.trained", "detail": {}}
    sent = hub.call("POST", f"/agent/runs/{rid}/log", site, json={"entries": [entry]})
    assert sent.status_code == 204, sent.text
    [logged] = hub.call("GET", f"/runs/{rid}", researcher).json()["logs"]["st-a"]
    assert logged["at"] == "2026 [2J", logged["at"]


def test_names_a_site_keys_its_numbers_by_must_be_one_line_of_text(hub):
    researcher, site, pid = _world(hub)
    definition = {"include": [{"table": "condition_occurrence", "concept_ids": [201826]}]}
    qid = hub.call(
        "POST", f"/projects/{pid}/queries", researcher, json={"name": "q", "definition": definition}
    ).json()["id"]
    answer = {"count": 20, "suppressed": False, "threshold": 10}
    bins = {"age": {"40-49": 12, "\x1b[8m50-59": 10}}
    refused = hub.call("POST", f"/agent/queries/{qid}", site, json=answer | {"histograms": bins})
    assert refused.status_code == 422 and "one line" in refused.text, refused.text
    assert hub.call("GET", f"/queries/{qid}", researcher).json()["pending"] == ["st-a"]


def test_a_supernode_keys_comment_is_one_line_of_ascii(hub):
    """The key is written to the SuperLink's files as ASCII and handed to Flower's tools: a
    comment with control characters or other than ASCII is refused (422), not a 500."""
    site = hub.site("st-a")
    key = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY="
    for comment in ("\x1b]52;c;eA==\x07", "a\rb", "caf\u00e9"):
        sent = hub.call("POST", "/agent/node-key", site, json={"public_key": f"{key} {comment}\n"})
        assert sent.status_code == 422, (comment, sent.status_code, sent.text)
    plain = hub.call("POST", "/agent/node-key", site, json={"public_key": f"{key} st-a@host\n"})
    assert plain.status_code == 409, "a plain key passes the checks (this hub runs no Flower)"
