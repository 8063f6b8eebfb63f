"""The hub served by uvicorn under more concurrent callers than it has worker threads."""

import asyncio
import time

import httpx
import pytest
from sqlalchemy import create_engine, insert, select

from flip.hub.app import bootstrap_admin, create_app
from flip.hub.client import ResearcherClient
from flip.hub.db import connect, sites
from flip.hub.server import BackgroundServer
from flip.hub.transactions import Writer, WriteTurns

#: More than Starlette's 40 worker threads, so writers would starve them if they held threads.
CALLERS = 120


@pytest.fixture
def served(hub_db_url):
    app = create_app(hub_db_url)
    server = BackgroundServer(app).start()
    admin = ResearcherClient(server.url, bootstrap_admin(app.state.engine))
    yield server.url, admin
    admin.close()
    server.stop()
    app.state.engine.dispose()


async def _storm(url: str, researcher: str, site: str) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=CALLERS * 2)
    async with httpx.AsyncClient(base_url=url + "/api/v1", limits=limits, timeout=60) as http:
        writes = [
            http.post(
                "/projects",
                json={"name": f"p{i}"},
                headers={"Authorization": f"Bearer {researcher}"},
            )
            for i in range(CALLERS)
        ]
        polls = [
            http.get("/agent/work", headers={"Authorization": f"Bearer {site}"})
            for _ in range(CALLERS)
        ]
        return await asyncio.gather(*writes, *polls)


def test_concurrent_writers_and_pollers_all_succeed_and_the_audit_chain_holds(served):
    url, admin = served
    researcher = admin.create_user("rita", "researcher")
    site = httpx.post(
        url + "/api/v1/sites/enrol", json={"enrolment_token": admin.create_site("st-a")}
    ).json()["token"]
    responses = asyncio.run(_storm(url, researcher, site))
    statuses = [r.status_code for r in responses]
    assert statuses == [201] * CALLERS + [200] * CALLERS
    ids = {r.json()["id"] for r in responses[:CALLERS]}
    assert len(ids) == CALLERS
    verdict = admin.http.get("/audit/verify").json()
    assert (verdict["ok"], verdict["broken_at"], verdict["site_ledgers"]) == (True, None, [])


def test_a_long_poll_returns_as_soon_as_work_arrives(served):
    url, admin = served
    researcher = ResearcherClient(url, admin.create_user("rita", "researcher"))
    site = httpx.post(
        url + "/api/v1/sites/enrol", json={"enrolment_token": admin.create_site("st-a")}
    ).json()["token"]
    pid = researcher.create_project("p")
    researcher.invite(pid, ["st-a"])
    headers = {"Authorization": f"Bearer {site}"}

    started = time.monotonic()
    idle = httpx.get(url + "/api/v1/agent/work", params={"wait": 0.5}, headers=headers)
    assert idle.json() == {
        "queries": [],
        "tasks": [],
        "runs": [],
        "analyses": [],
        "train": [],
        "flower": None,
    }
    assert time.monotonic() - started >= 0.5

    async def poll_then_ask() -> tuple[dict, float]:
        async with httpx.AsyncClient(base_url=url + "/api/v1", timeout=60) as http:
            poll = asyncio.create_task(
                http.get("/agent/work", params={"wait": 30}, headers=headers)
            )
            await asyncio.sleep(0.3)
            assert not poll.done()
            asked = time.monotonic()
            await asyncio.to_thread(researcher.create_query, pid, "all", {"name": "all"})
            response = await poll
            return response.json(), time.monotonic() - asked

    work, latency = asyncio.run(poll_then_ask())
    assert [q["name"] for q in work["queries"]] == ["all"]
    assert latency < 5  # woken by the write, not by the 30 s timeout


def test_a_long_poll_longer_than_a_minute_is_refused(served):
    url, admin = served
    site = httpx.post(
        url + "/api/v1/sites/enrol", json={"enrolment_token": admin.create_site("st-a")}
    ).json()["token"]
    response = httpx.get(
        url + "/api/v1/agent/work",
        params={"wait": 600},
        headers={"Authorization": f"Bearer {site}"},
    )
    assert response.status_code == 422


async def _create_sites(url: str, admin: str, names: list[str]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url + "/api/v1", timeout=60) as http:
        headers = {"Authorization": f"Bearer {admin}"}
        return await asyncio.gather(
            *(http.post("/sites", json={"name": n}, headers=headers) for n in names)
        )


def test_writes_committed_together_fail_alone(served, hub_db_url):
    """Writes queued at once commit as one group; one that fails leaves the others in."""
    url, admin = served
    names = [f"site-{i // 2}" for i in range(60)]  # each name twice: one of each pair is refused
    responses = asyncio.run(_create_sites(url, admin.http.headers["authorization"][7:], names))
    created = [r for r in responses if r.status_code == 201]
    refused = [r for r in responses if r.status_code == 409]
    assert len(created) == len(refused) == 30, [r.status_code for r in responses]
    assert all("exists" in r.json()["detail"] for r in refused)
    engine = create_engine(hub_db_url)
    with engine.connect() as conn:
        stored = conn.execute(select(sites.c.name)).scalars().all()
    engine.dispose()
    assert sorted(stored) == sorted(set(names))
    verdict = admin.http.get("/audit/verify").json()
    assert (verdict["ok"], verdict["broken_at"], verdict["site_ledgers"]) == (True, None, [])


def test_a_job_that_fails_in_a_group_rolls_back_alone(hub_db_url):
    """The writer's group commit: each job has its own savepoint; the batch commits once."""
    engine = connect(hub_db_url)
    writer = Writer(engine, WriteTurns())

    def job(i: int):
        def run(conn):
            conn.execute(insert(sites).values(name=f"w{i}", status="active"))
            if i % 3 == 0:
                raise ValueError(f"job {i} fails after its insert")
            return i

        return run

    async def burst():
        return await asyncio.gather(
            *(writer.run(job(i)) for i in range(30)), return_exceptions=True
        )

    try:
        results = asyncio.run(burst())
    finally:
        writer.close()
    assert [r for r in results if not isinstance(r, Exception)] == [i for i in range(30) if i % 3]
    assert all(str(results[i]).startswith(f"job {i} fails") for i in range(0, 30, 3))
    with engine.connect() as conn:
        stored = set(conn.execute(select(sites.c.name)).scalars())
    engine.dispose()
    assert stored == {f"w{i}" for i in range(30) if i % 3}


def test_a_lone_job_that_fails_leaves_nothing_and_the_next_one_lands(hub_db_url):
    """A job the writer runs alone (no savepoint) still changes nothing when it fails."""
    engine = connect(hub_db_url)
    writer = Writer(engine, WriteTurns())

    def failing(conn):
        conn.execute(insert(sites).values(name="lone-failed", status="active"))
        raise ValueError("fails after its insert")

    def landing(conn):
        conn.execute(insert(sites).values(name="lone-landed", status="active"))
        return "landed"

    async def one_after_another():
        with pytest.raises(ValueError, match="fails after its insert"):
            await writer.run(failing)
        return await writer.run(landing)

    try:
        assert asyncio.run(one_after_another()) == "landed"
    finally:
        writer.close()
    with engine.connect() as conn:
        stored = set(conn.execute(select(sites.c.name)).scalars())
    engine.dispose()
    assert stored == {"lone-landed"}
