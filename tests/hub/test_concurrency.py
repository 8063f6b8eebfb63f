"""The hub served by uvicorn under more concurrent callers than it has worker threads."""

import asyncio
import time

import httpx
import pytest

from flip.hub.app import bootstrap_admin, create_app
from flip.hub.client import ResearcherClient
from flip.hub.server import BackgroundServer

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
    assert verdict == {"ok": True, "broken_at": None}


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
    assert idle.json() == {"queries": [], "tasks": [], "runs": [], "train": [], "flower": None}
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
