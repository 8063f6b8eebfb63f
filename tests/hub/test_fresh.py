"""The hub's read cache: a burst of polls after a write reads every site's work once."""

import asyncio
import threading
import time

from sqlalchemy import event, select

from flip.hub.auth import Principal
from flip.hub.db import sites
from flip.hub.routes.agent import _work, _works
from flip.hub.transactions import Fresh, WriteTurns

HASH = "a" * 64


class Reads:
    """Counts reads of one key and of every key, as the database would serve them."""

    def __init__(self, keys: int) -> None:
        self.keys = keys
        self.one: list[int] = []
        self.all = 0
        self.version = 0
        self.lock = threading.Lock()

    def read_one(self, key: int):
        with self.lock:
            self.one.append(key)
        return (key, self.version)

    def read_all(self):
        with self.lock:
            self.all += 1
        time.sleep(0.05)
        return {("work", k): (k, self.version) for k in range(self.keys)}


async def _poll(fresh: Fresh, reads: Reads, key: int):
    name = ("work", key)
    return await fresh.get(name, lambda: reads.read_one(key), name, read_all=reads.read_all)


def test_a_burst_of_misses_reads_everything_once_and_scoped_writes_reread_one():
    async def scenario():
        turns = WriteTurns()
        fresh = Fresh(turns)
        reads = Reads(keys=40)
        first = await asyncio.gather(*(_poll(fresh, reads, k) for k in range(40)))
        assert first == [(k, 0) for k in range(40)]
        assert (reads.all, reads.one) == (1, [])

        reads.version = 1
        turns.changed(("work", 3))
        again = await asyncio.gather(*(_poll(fresh, reads, k) for k in range(40)))
        assert again[3] == (3, 1) and again[4] == (4, 0)
        assert (reads.all, reads.one) == (1, [3])

        turns.changed()
        after = await asyncio.gather(*(_poll(fresh, reads, k) for k in range(40)))
        assert after == [(k, 1) for k in range(40)]
        assert (reads.all, reads.one) == (2, [3])

    asyncio.run(scenario())


def test_a_cancelled_poll_does_not_cancel_the_shared_read():
    async def scenario():
        fresh = Fresh(WriteTurns())
        reads = Reads(keys=2)
        gone = asyncio.ensure_future(_poll(fresh, reads, 0))
        kept = asyncio.ensure_future(_poll(fresh, reads, 1))
        await asyncio.sleep(0.01)
        gone.cancel()
        assert await kept == (1, 0)
        assert reads.all == 1

    asyncio.run(scenario())


def test_every_sites_work_read_at_once_equals_each_sites_own(hub):
    owner = hub.user("olive", "researcher")
    for name in ("a", "b", "c"):
        hub.site(name)
    pid = hub.call("POST", "/projects", owner, json={"name": "p"}).json()["id"]
    hub.call("POST", f"/projects/{pid}/sites", owner, json={"sites": ["a", "b"]})
    hub.call("POST", f"/projects/{pid}/tasks", owner, json={"hash": HASH, "kind": "k", "spec": {}})
    for name in ("q1", "q2"):
        hub.call("POST", f"/projects/{pid}/queries", owner, json={"name": name, "definition": {}})
    hub.call("POST", f"/projects/{pid}/runs", owner, json={"task_hash": HASH, "rounds": 1})
    with hub.app.state.engine.connect() as conn:
        ids = dict(conn.execute(select(sites.c.name, sites.c.id)).all())
        every = _works(conn)
        own = {
            name: _work(conn, Principal(kind="site", id=i, name=name, role="site"))
            for name, i in ids.items()
        }
    assert set(every) == {ids["a"], ids["b"]}
    for name in ("a", "b"):
        assert every[ids[name]] == own[name]
        assert [q["name"] for q in own[name].queries] == ["q1", "q2"]
        assert len(own[name].tasks) == 1 and len(own[name].runs) == 1
    assert own["c"].queries == own["c"].tasks == own["c"].runs == []


def test_a_callers_identity_outlives_unrelated_writes_but_not_credential_ones(hub):
    owner = hub.user("olive", "researcher")
    reads: list[str] = []

    def keep(conn, cursor, statement, parameters, context, executemany):
        if "token_hash" in statement and statement.lstrip().upper().startswith("SELECT"):
            reads.append(statement)

    event.listen(hub.app.state.engine, "before_cursor_execute", keep)
    try:
        pid = hub.call("POST", "/projects", owner, json={"name": "p"}).json()["id"]
        # the token's first use this hour wrote its last use (a credential write): read again
        hub.call("GET", f"/projects/{pid}", owner)
        reads.clear()
        assert hub.call("POST", "/projects", owner, json={"name": "q"}).status_code == 201
        assert reads == [], "a project write does not make the hub read who the caller is"
        hub.user("vic", "viewer")
        reads.clear()
        assert hub.call("GET", f"/projects/{pid}", owner).status_code == 200
        assert len(reads) == 1, "a write to users does"
    finally:
        event.remove(hub.app.state.engine, "before_cursor_execute", keep)
