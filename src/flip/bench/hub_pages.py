"""The web app's pages under load: each page's time (p95) while the agents poll.

A researcher and an admin each hold a web session (made in the hub's database, as the
web sign-in makes one) and walk their pages in turn, one request at a time. Each page is
asked for once before the measure (the task catalog loads the task code at its first
view). The time is the request's round trip on loopback: the server's time and a
fraction of a millisecond.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import insert, select

from flip.bench.ingest import Figure
from flip.hub.auth import new_token, token_hash
from flip.hub.client import ResearcherClient
from flip.hub.db import connect, now, sessions, users
from flip.hub.web.security import SESSION_COOKIE

#: Pages each role walks ({project}, {query}, {run} filled in).
RESEARCHER_PAGES = (
    "/projects",
    "/projects/{project}",
    "/projects/{project}/cohort",
    "/projects/{project}/tasks/new",
    "/queries/{query}",
    "/runs/{run}",
    "/models",
    "/account",
)
ADMIN_PAGES = (
    "/admin/users",
    "/admin/sites",
    "/admin/audit",
    "/admin/requests",
    "/admin/maintenance",
    "/request-account",
)
#: Seconds between two pages of one walker.
PAUSE = 0.05
#: The p95 each page aims under.
AIM_MS = 100


def web_session(db_url: str, name: str) -> str:
    """A web session's token for user `name`, made as the web sign-in makes one."""
    engine = connect(db_url)
    try:
        with engine.begin() as conn:
            uid = conn.execute(select(users.c.id).where(users.c.name == name)).scalar_one()
            token = new_token("flip_l")
            conn.execute(
                insert(sessions).values(
                    user_id=uid,
                    token_hash=token_hash(token),
                    expires_at=now() + timedelta(hours=2),
                    web=True,
                )
            )
        return token
    finally:
        engine.dispose()


def page_world(url: str, researcher: str, project: int) -> dict[str, int]:
    """A query and a run in the bench's project, for their pages."""
    client = ResearcherClient(url, researcher)
    try:
        query = client.create_query(project, "bench page", {"name": "bench page"})
        client.propose_task(project, "ab" * 32, "tabular-logreg", {"rounds": 3})
        run = client.create_run(project, "ab" * 32, 3)
    finally:
        client.close()
    return {"project": project, "query": query, "run": run}


def warm(url: str, walkers: list[tuple[str, list[tuple[str, str]]]]) -> None:
    """Ask for every page once, untimed (a page's first view may load code); each must
    answer 200."""
    for cookie, pages in walkers:
        with httpx.Client(base_url=url, cookies={SESSION_COOKIE: cookie}, timeout=300) as http:
            for _, path in pages:
                answer = http.get(path)
                if answer.status_code != 200:
                    raise RuntimeError(f"page {path}: {answer.status_code} {answer.text[:200]}")


def paths(pages: tuple[str, ...], ids: dict[str, int]) -> list[tuple[str, str]]:
    """(pattern, path) of each page, the world's ids filled in."""
    return [(p, p.format(**ids)) for p in pages]


async def walk(
    timed: Callable[..., Awaitable[object]],
    connection: Any,
    pages: list[tuple[str, str]],
    until: float,
    results: Any,
) -> None:
    """Ask for each page in turn until `until` (monotonic), each timed by `timed` under
    "page PATTERN"."""
    while time.monotonic() < until:
        for pattern, path in pages:
            await timed(results, f"page {pattern}", connection, "GET", path)
            await asyncio.sleep(PAUSE)
    connection.close()


def figures(
    label: str, results: Any, percentile: Callable[[list[float], float], float]
) -> list[Figure]:
    """p95 of each page in milliseconds, and its failures."""
    out = []
    for kind, values in sorted(results.seconds.items()):
        if kind.startswith("page "):
            note = f"{len(values)} requests, {results.errors.get(kind, 0)} errors; aim < {AIM_MS}"
            out.append(Figure(f"{label} {kind} p95", percentile(values, 95) * 1000, "ms", note))
    return out
