"""A live view (server-sent events) follows its user's access as it is now: a demoted
user's open stream ends."""

from __future__ import annotations

import threading
import time

from sqlalchemy import select

from flip.hub.db import users
from flip.hub.web import live
from tests.hub.test_web import person


def test_a_live_stream_ends_when_its_admin_is_demoted(web, monkeypatch):
    """An admin (not a member) follows a query of someone else's project live; another admin
    makes them a researcher. Their pages 404 at once, and the open stream, which reads its
    user afresh on each tick, says it is done rather than going on until LIFETIME."""
    monkeypatch.setattr(live, "POLL", 0.1)
    monkeypatch.setattr(live, "LIFETIME", 20.0)
    owner = person(web, "adv21-owner")
    watcher = person(web, "adv21-exadmin", "admin")
    web.site("adv21-s")
    pid = web.call("POST", "/projects", owner.token, json={"name": "adv21 private"}).json()["id"]
    web.call("POST", f"/projects/{pid}/sites", owner.token, json={"sites": ["adv21-s"]})
    query = {"name": "never answered", "definition": {}}
    qid = web.call("POST", f"/projects/{pid}/queries", owner.token, json=query).json()["id"]
    with web.app.state.engine.connect() as conn:
        uid = conn.execute(select(users.c.id).where(users.c.name == "adv21-exadmin")).scalar()
    demote = threading.Timer(
        1.0,
        web.call,
        ("PUT", f"/users/{uid}/role", web.admin),
        {"json": {"role": "researcher"}},
    )
    demote.start()
    started = time.monotonic()
    with watcher.http.stream("GET", f"/queries/{qid}/events") as events:
        body = "".join(events.iter_text())
    demote.join()
    assert watcher.http.get(f"/queries/{qid}").status_code == 404, "no longer theirs to see"
    assert time.monotonic() - started < 10, "the stream went on after the demotion"
    assert body.endswith("event: done\ndata: \n\n")
