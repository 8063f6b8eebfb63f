"""Hub latency under site agents polling at 1 Hz and a researcher at work, on SQLite and PostgreSQL.

The hub runs as its own process (`flip hub serve`), as in production. First the same
agents poll `/health` only: the floor of uvicorn + FastAPI on this machine, the
reference. Then each agent polls `/agent/work` once a second (plain polls, no long
poll) and answers any cohort query it finds, while a researcher makes ten calls a
second: a new query every five seconds (so a burst of one answer per agent), and
reads of the project and of the newest query (each audited read is a write).
The load generator pauses its own garbage collector while it measures.
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from flip.bench import hub_pages
from flip.bench.ingest import Figure
from flip.hub.app import API_PREFIX, bootstrap_admin
from flip.hub.client import ResearcherClient
from flip.hub.db import connect
from flip.hub.web.security import SESSION_COOKIE
from flip.ports import free_port

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@dataclass
class Latencies:
    """Seconds per request, by kind, and the failures."""

    seconds: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def figures(self, label: str) -> list[Figure]:
        """p50 and p99 in milliseconds per kind, and the error count."""
        out = []
        for kind, values in sorted(self.seconds.items()):
            note = f"{len(values)} requests, {self.errors.get(kind, 0)} errors"
            out.append(Figure(f"{label} {kind} p50", percentile(values, 50) * 1000, "ms", note))
            out.append(
                Figure(f"{label} {kind} p99", percentile(values, 99) * 1000, "ms", "aim < 50")
            )
        return out


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank `p`th percentile of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@contextmanager
def hub_process(db_url: str, log: Path, registry: Path | None = None) -> Iterator[str]:
    """`flip hub serve` on a free loopback port (reading the model `registry`, if given);
    yields its base URL."""
    port = free_port()
    command = [sys.executable, "-m", "flip", "hub", "serve", "--db", db_url, "--port", str(port)]
    if registry is not None:
        command += ["--registry", str(registry)]
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [*command, "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=stderr
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # a loaded machine starts it slowly
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the hub did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        process.kill()
        process.wait()


@contextmanager
def postgres_database(server_url: str) -> Iterator[str | None]:
    """A new, empty database on the server (dropped afterwards), or None if unreachable."""
    name = f"flip_bench_hub_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    except OperationalError:
        admin.dispose()
        yield None
        return
    try:
        yield server_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def _world(url: str, admin_token: str, agents: int) -> tuple[str, list[str], int]:
    """A researcher, `agents` enrolled sites and a project inviting them all."""
    admin = ResearcherClient(url, admin_token)
    researcher = admin.create_user("bench-researcher", "researcher")
    credentials = []
    for i in range(agents):
        enrolment = admin.create_site(f"site-{i:03d}")
        response = httpx.post(
            f"{url}{API_PREFIX}/sites/enrol", json={"enrolment_token": enrolment}, timeout=30
        )
        credentials.append(response.raise_for_status().json()["token"])
    client = ResearcherClient(url, researcher)
    project = client.create_project("bench")
    client.invite(project, [f"site-{i:03d}" for i in range(agents)])
    admin.close()
    client.close()
    return researcher, credentials, project


class _Connection:
    """One keep-alive HTTP/1.1 connection on asyncio streams.

    A lean client on purpose: httpx spends milliseconds of CPU per request, which
    would show up in the latencies this benchmark measures.
    """

    def __init__(self, url: str, token: str | None, cookie: str | None = None) -> None:
        address = httpx.URL(url)
        self.host, self.port = address.host, address.port or 80
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        auth += f"Cookie: {SESSION_COOKIE}={cookie}\r\n" if cookie else ""
        self.headers = f"Host: {self.host}\r\n{auth}"
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, method: str, path: str, body: object = None) -> tuple[int, bytes]:
        """(status, body) of one request."""
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.streams
        payload = b"" if body is None else orjson.dumps(body)
        extra = f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        head = f"{method} {path} HTTP/1.1\r\n{self.headers}{extra if payload else ''}\r\n"
        try:
            writer.write(head.encode() + payload)
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            return status, (await reader.readexactly(length) if length else b"")
        except (OSError, IndexError, ValueError, asyncio.IncompleteReadError):
            writer.close()
            self.streams = None
            raise

    def close(self) -> None:
        """Close the connection."""
        if self.streams is not None:
            self.streams[1].close()


async def _timed(
    results: Latencies, kind: str, http: _Connection, method: str, path: str, body: object = None
) -> bytes | None:
    """The body of a successful request, timing it under `kind`; None on failure."""
    start = time.perf_counter()
    try:
        status, data = await http.request(method, path, body)
    except (OSError, IndexError, ValueError, asyncio.IncompleteReadError):
        results.errors[kind] += 1
        return None
    results.seconds[kind].append(time.perf_counter() - start)
    if status >= 400:
        results.errors[kind] += 1
        return None
    return data


async def _agent(
    url: str, credential: str, path: str, until: float, results: Latencies, answer: bool
) -> None:
    http = _Connection(url, credential)
    await asyncio.sleep(random.random())
    while time.monotonic() < until:
        tick = time.monotonic()
        data = await _timed(results, "agent poll", http, "GET", path)
        if answer and data:
            for query in orjson.loads(data)["queries"]:
                body = {"count": None, "suppressed": True, "threshold": 10}
                where = f"{API_PREFIX}/agent/queries/{query['id']}"
                await _timed(results, "agent answer", http, "POST", where, body)
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
    http.close()


async def _researcher(url: str, token: str, project: int, until: float, results: Latencies) -> None:
    http = _Connection(url, token)
    queries: list[int] = []
    step = 0
    while time.monotonic() < until:
        step += 1
        if step % 50 == 1:
            body = {"name": f"q{step}", "definition": {"name": f"q{step}"}}
            where = f"{API_PREFIX}/projects/{project}/queries"
            data = await _timed(results, "researcher write", http, "POST", where, body)
            if data:
                queries.append(orjson.loads(data)["id"])
        elif queries and step % 2:
            where = f"{API_PREFIX}/queries/{queries[-1]}"
            await _timed(results, "researcher read", http, "GET", where)
        else:
            await _timed(
                results, "researcher read", http, "GET", f"{API_PREFIX}/projects/{project}"
            )
        await asyncio.sleep(0.1)
    http.close()


async def _load(
    url: str,
    researcher: str,
    credentials: list[str],
    project: int,
    seconds: float,
    walkers: list[tuple[str, list[tuple[str, str]]]],
):
    reference, measured, pages = Latencies(), Latencies(), Latencies()
    until = time.monotonic() + seconds / 2
    await asyncio.gather(*(_agent(url, c, "/health", until, reference, False) for c in credentials))
    until = time.monotonic() + seconds
    work = f"{API_PREFIX}/agent/work"
    await asyncio.gather(
        *(_agent(url, c, work, until, measured, True) for c in credentials),
        _researcher(url, researcher, project, until, measured),
        *(
            hub_pages.walk(_timed, _Connection(url, None, cookie), walked, until, pages)
            for cookie, walked in walkers
        ),
    )
    return reference, measured, pages


async def _walk_only(
    url: str, credentials: list[str], seconds: float, walkers: list[tuple[str, list]]
) -> Latencies:
    """The pages walked again while the agents poll for work (the grown hub's walk)."""
    pages, polls = Latencies(), Latencies()
    until = time.monotonic() + seconds
    work = f"{API_PREFIX}/agent/work"
    await asyncio.gather(
        *(_agent(url, c, work, until, polls, True) for c in credentials),
        *(
            hub_pages.walk(_timed, _Connection(url, None, cookie), walked, until, pages)
            for cookie, walked in walkers
        ),
    )
    return pages


@contextmanager
def _collector_paused() -> Iterator[None]:
    """This process's garbage collector off: a full collection here (~100 ms) would
    stall every request in flight and count as the hub's latency."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def measure(
    db_url: str,
    label: str,
    agents: int,
    seconds: float,
    work: Path,
    projects: int = hub_pages.GROWN_PROJECTS,
) -> list[Figure]:
    """Every latency figure for a hub on `db_url`; pages again after `projects` were grown."""
    engine = connect(db_url)
    admin_token = bootstrap_admin(engine)
    engine.dispose()
    assert admin_token is not None
    with (
        tempfile.TemporaryDirectory(dir=work) as models,
        hub_process(db_url, work / f"hub-{label}.log", Path(models)) as url,
    ):
        registry = Path(models)
        researcher, credentials, project = _world(url, admin_token, agents)
        ids = hub_pages.page_world(url, researcher, project, registry)
        walkers = [
            (hub_pages.web_session(db_url, name), hub_pages.paths(pages, ids))
            for name, pages in (
                ("bench-researcher", hub_pages.RESEARCHER_PAGES),
                ("admin", hub_pages.ADMIN_PAGES),
            )
        ]
        hub_pages.warm(url, walkers)
        with _collector_paused():
            reference, measured, pages = asyncio.run(
                _load(url, researcher, credentials, project, seconds, walkers)
            )
        grown = hub_pages.grow(db_url, "bench-researcher", projects)
        walkers = [
            (cookie, hub_pages.paths(pages_of, ids | grown))
            for cookie, pages_of in (
                (walkers[0][0], hub_pages.RESEARCHER_PAGES),
                (walkers[1][0], hub_pages.ADMIN_PAGES),
            )
        ]
        hub_pages.warm(url, walkers)
        with _collector_paused():
            at_scale = asyncio.run(_walk_only(url, credentials, seconds, walkers))
    health = reference.figures(f"{label} reference: /health")
    figures = health + measured.figures(label) + hub_pages.figures(label, pages, percentile)
    scale = f"{label} {projects} projects:"
    figures += hub_pages.figures(scale, at_scale, percentile, reference=pages)
    polls, floor = measured.seconds["agent poll"], reference.seconds["agent poll"]
    if polls and floor:
        ratio = percentile(polls, 99) / percentile(floor, 99)
        figures.append(Figure(f"{label} poll p99 / /health p99", ratio, "x"))
    return figures


def run(
    work: Path,
    agents: int = 100,
    seconds: float = 20.0,
    postgres: str = DEFAULT_POSTGRES,
    projects: int = hub_pages.GROWN_PROJECTS,
) -> list[Figure]:
    """Figures on SQLite, then on PostgreSQL when the server is reachable; the pages are
    timed again after `projects` finished projects were written into the hub."""
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work) as scratch:
        sqlite = f"sqlite:///{Path(scratch) / 'hub.sqlite'}"
        figures = measure(sqlite, "sqlite", agents, seconds, work, projects)
    with postgres_database(postgres) as url:
        if url is None:
            figures.append(Figure("postgresql", 0, "", f"skipped: {postgres} is unreachable"))
        else:
            figures += measure(url, "postgresql", agents, seconds, work, projects)
    figures.append(Figure("load", agents, "agents", f"1 Hz each, {os.cpu_count()} cores"))
    return figures
