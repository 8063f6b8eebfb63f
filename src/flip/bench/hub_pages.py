"""The web app's pages under load: each page's time (p95) while the agents poll.

A researcher and an admin each hold a web session (made in the hub's database, as the
web sign-in makes one) and walk their pages in turn, one request at a time. Each page is
asked for once before the measure (the task catalog loads the task code at its first
view). The time is the request's round trip on loopback: the server's time and a
fraction of a millisecond.

The walk runs twice in one hub process under the same agents: on the small world (one
project, query and run: the reference) and after `grow` wrote a hub's years of work
(`GROWN_PROJECTS` projects by default, each with queries, tasks and finished runs the sites
answered); a page's p95 at scale over its p95 on the small world shows what grows with the data.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import Connection, insert, select

from flip.bench.ingest import Figure
from flip.hub.auth import new_token, token_hash
from flip.hub.client import ResearcherClient
from flip.hub.db import (
    connect,
    now,
    project_sites,
    projects,
    queries,
    query_results,
    run_rounds,
    run_sites,
    runs,
    sessions,
    sites,
    task_decisions,
    tasks,
    users,
)
from flip.hub.web.security import SESSION_COOKIE

#: Pages each role walks ({project}, {query}, {run}, {analysis}, {model} filled in).
RESEARCHER_PAGES = (
    "/projects",
    "/projects/{project}",
    "/projects/{project}/cohort",
    "/projects/{project}/concepts?find=systolic",
    "/projects/{project}/tasks/new",
    "/projects/{project}/tasks/review?builtin=mace-5y",
    "/queries/{query}",
    "/runs/{run}",
    "/analyses/{analysis}",
    "/models",
    "/models/{model}",
    "/quality",
    "/account",
)
ADMIN_PAGES = (
    "/admin/users",
    "/admin/sites",
    "/admin/audit",
    "/admin/requests",
    "/admin/maintenance",
    "/request-account",
    "/signin",
)
#: The grown hub: projects of the bench researcher, and per project the sites invited and
#: the queries (each answered by every site), tasks (each approved) and completed runs.
GROWN_PROJECTS = 300
GROWN_SITES = 10
GROWN_QUERIES = 20
GROWN_TASKS = 5
GROWN_RUNS = 10
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


def page_world(url: str, researcher: str, project: int, registry: Path) -> dict[str, Any]:
    """A query, a run and an analysis in the bench's project, and a model of it in the hub's
    `registry`, for their pages."""
    from flip.data.features.store_analysis import AnalysisSpec
    from flip.fl.tasks.catalog import mace_task

    client = ResearcherClient(url, researcher)
    try:
        query = client.create_query(project, "bench page", {"name": "bench page"})
        client.propose_task(project, "ab" * 32, "tabular-logreg", {"rounds": 3})
        run = client.create_run(project, "ab" * 32, 3)
        table1 = AnalysisSpec(kind="table1", data=mace_task(0).data)
        analysis = client.submit_analysis(project, table1.body())["id"]
    finally:
        client.close()
    model = bench_model(registry, project)
    return {"project": project, "query": query, "run": run, "analysis": analysis, "model": model}


def bench_model(registry: Path, project: int) -> str:
    """Register an untrained MACE model of `project` in `registry`, as a completed run
    would (two sites' rows and metrics); its id."""
    from flip.fl.registry import federated_lineage, register
    from flip.fl.tasks.catalog import mace_task
    from flip.fl.tasks.models import new_model

    spec = mace_task(0)
    per_site = {
        f"site-{n}": {"accuracy": 0.7, "auroc": 0.7 + n / 100, "n_train": 120 + n, "n_test": 40}
        for n in (1, 2)
    }
    lineage = federated_lineage(
        spec,
        rounds=3,
        per_site=per_site,
        round_metrics=[{"auroc": 0.6 + r / 20} for r in range(3)],
        project=project,
        run=None,
    )
    return register(registry, f"project{project}", new_model(spec).state_dict(), lineage).id


def grow(db_url: str, researcher: str, count: int = GROWN_PROJECTS) -> dict[str, int]:
    """Write `count` finished projects of `researcher` into the hub's database (as
    its API would have over months: every query answered, every task decided, every run
    completed, so none is in an agent's work); the ids of the newest's for its pages."""
    engine = connect(db_url)
    try:
        with engine.begin() as conn:
            return _grow(conn, researcher, count)
    finally:
        engine.dispose()


def _grow(conn: Connection, researcher: str, count: int) -> dict[str, int]:
    owner = conn.execute(select(users.c.id).where(users.c.name == researcher)).scalar_one()
    site_ids = itertools.cycle(conn.execute(select(sites.c.id).order_by(sites.c.id)).scalars())
    spec = orjson.dumps({"rounds": 3}).decode()
    metrics = [
        orjson.dumps({"auroc": 0.6 + r / 20, "loss": 1 / (r + 1)}).decode() for r in range(3)
    ]
    ids: dict[str, int] = {}
    for n in range(count):
        pid = conn.execute(
            insert(projects).values(name=f"grown {n}", description="bench", owner_id=owner)
        ).inserted_primary_key[0]
        invited = sorted({next(site_ids) for _ in range(GROWN_SITES)})
        conn.execute(
            insert(project_sites),
            [{"project_id": pid, "site_id": s, "status": "approved"} for s in invited],
        )
        task_ids = []
        for t in range(GROWN_TASKS):
            digest = f"{n:08x}{t:08x}" * 4
            tid = conn.execute(
                insert(tasks).values(project_id=pid, hash=digest, kind="tabular-logreg", spec=spec)
            ).inserted_primary_key[0]
            task_ids.append(tid)
            rows = [{"task_id": tid, "site_id": s, "decision": "approved"} for s in invited]
            conn.execute(insert(task_decisions), rows)
        for q in range(GROWN_QUERIES):
            definition = orjson.dumps({"name": f"q{q}"}).decode()
            qid = conn.execute(
                insert(queries).values(
                    project_id=pid, name=f"q{q}", definition=definition, created_by=owner
                )
            ).inserted_primary_key[0]
            answers = [
                {
                    "query_id": qid,
                    "site_id": s,
                    "count": 40 + s,
                    "suppressed": False,
                    "threshold": 10,
                }
                for s in invited
            ]
            conn.execute(insert(query_results), answers)
            ids["query"] = qid
        for r in range(GROWN_RUNS):
            rid = conn.execute(
                insert(runs).values(
                    project_id=pid,
                    task_id=task_ids[r % GROWN_TASKS],
                    rounds=3,
                    strategy="fedavg",
                    runtime="simulation",
                    status="completed",
                )
            ).inserted_primary_key[0]
            conn.execute(
                insert(run_sites),
                [{"run_id": rid, "site_id": s, "status": "joined"} for s in invited],
            )
            conn.execute(
                insert(run_rounds),
                [{"run_id": rid, "round": k + 1, "metrics": m} for k, m in enumerate(metrics)],
            )
            ids["run"] = rid
        ids["project"] = pid
    return ids


def warm(url: str, walkers: list[tuple[str, list[tuple[str, str]]]]) -> None:
    """Ask for every page once, untimed (a page's first view may load code); each must
    answer 200."""
    for cookie, pages in walkers:
        with httpx.Client(base_url=url, cookies={SESSION_COOKIE: cookie}, timeout=300) as http:
            for _, path in pages:
                answer = http.get(path)
                if answer.status_code != 200:
                    raise RuntimeError(f"page {path}: {answer.status_code} {answer.text[:200]}")


def paths(pages: tuple[str, ...], ids: dict[str, Any]) -> list[tuple[str, str]]:
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
    label: str,
    results: Any,
    percentile: Callable[[list[float], float], float],
    reference: Any = None,
) -> list[Figure]:
    """p95 of each page in milliseconds and its failures; with the `reference` walk's
    results (the small world), each page's p95 over its reference p95."""
    out = []
    for kind, values in sorted(results.seconds.items()):
        if not kind.startswith("page "):
            continue
        note = f"{len(values)} requests, {results.errors.get(kind, 0)} errors; aim < {AIM_MS}"
        p95 = percentile(values, 95)
        out.append(Figure(f"{label} {kind} p95", p95 * 1000, "ms", note))
        before = reference.seconds.get(kind) if reference is not None else None
        if before:
            ratio = p95 / percentile(before, 95)
            out.append(Figure(f"{label} {kind} p95 / small hub's", ratio, "x"))
    return out
