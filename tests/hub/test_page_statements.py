"""No page reads the database once per row: each page's SQL statements are as many for a
hub with one project, task, query and run as for one with many (no N+1)."""

from sqlalchemy import event

from tests.hub.test_web import person


def _grow(hub, owner, site: str, copies: int) -> dict[str, int]:
    """`copies` projects, each inviting `site`, with tasks it decided, queries it answered
    and runs; the ids of the last project's."""
    ids: dict[str, int] = {}
    for n in range(copies):
        pid = hub.call("POST", "/projects", owner.token, json={"name": f"grown {n}"}).json()["id"]
        hub.call("POST", f"/projects/{pid}/sites", owner.token, json={"sites": [site]})
        for t in range(copies):
            digest = f"{n:02x}{t:02x}" * 16
            task = {"hash": digest, "kind": "tabular-logreg", "spec": {"rounds": 2}}
            hub.call("POST", f"/projects/{pid}/tasks", owner.token, json=task)
            decision = {"project_id": pid, "task_hash": digest, "decision": "approved"}
            assert (
                hub.call("POST", "/agent/decisions", hub.site_token, json=decision).status_code
                == 204
            )
            run = {"task_hash": digest, "rounds": 2}
            ids["run"] = hub.call("POST", f"/projects/{pid}/runs", owner.token, json=run).json()[
                "id"
            ]
            query = {"name": f"q{t}", "definition": {}}
            qid = hub.call("POST", f"/projects/{pid}/queries", owner.token, json=query).json()["id"]
            answer = {"count": 12, "suppressed": False, "threshold": 10}
            hub.call("POST", f"/agent/queries/{qid}", hub.site_token, json=answer)
            ids["query"] = qid
        ids["project"] = pid
    return ids


def _statements(hub, browser, path: str) -> int:
    seen = []

    def keep(*_args) -> None:
        seen.append(1)

    engine = hub.app.state.engine
    event.listen(engine, "before_cursor_execute", keep)
    try:
        answer = browser.http.get(path)
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    assert answer.status_code == 200, (path, answer.status_code)
    return len(seen)


PAGES = (
    "/projects",
    "/projects/{project}",
    "/queries/{query}",
    "/runs/{run}",
    "/admin/users",
    "/admin/sites",
    "/admin/audit",
)


def _counts(hub, owner, admin, ids: dict[str, int]) -> dict[str, int]:
    """Statements per page: the fewest of three asks (a read that fills a cache, which
    lives a few seconds, is not the page's own)."""
    out = {}
    for pattern in PAGES:
        browser = admin if pattern.startswith("/admin") else owner
        out[pattern] = min(_statements(hub, browser, pattern.format(**ids)) for _ in range(3))
    return out


def test_each_page_reads_as_often_for_many_rows_as_for_one(web, admin):
    owner = person(web, "n-plus-one")
    web.site_token = web.site("n1-site")
    before = _counts(web, owner, admin, _grow(web, owner, "n1-site", 1))
    after = _counts(web, owner, admin, _grow(web, owner, "n1-site", 4))
    assert after == before
