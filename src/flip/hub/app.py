"""The hub's FastAPI application."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine, insert, select

from flip import __version__
from flip.hub import api_tokens, audit
from flip.hub.api_docs import add_docs
from flip.hub.audit_checks import AuditChecks
from flip.hub.concepts import load_concepts
from flip.hub.db import connect, users
from flip.hub.federation import Federation
from flip.hub.json_guard import JsonGuard
from flip.hub.login_throttle import StoredThrottle
from flip.hub.passwords import PasswordWork
from flip.hub.policy import AccessPolicy
from flip.hub.prefix import API_PREFIX
from flip.hub.responses import ERRORS
from flip.hub.routes import (
    activity,
    admin,
    agent,
    analyses,
    listings,
    models,
    projects,
    quality,
    sessions,
    tokens,
)
from flip.hub.transactions import Fresh, Writer, WriteTurns
from flip.hub.web import add_web
from flip.hub.web.live import Streams
from flip.hub.web.pages import error_page
from flip.signing import load_or_create_key, retired_keys
from flip.webkit.limits import DEFAULT_MAX_BODY, BodySizeLimit

#: Seconds between two looks for analysis rounds past their timeout.
ANALYSIS_SWEEP = 30.0

log = logging.getLogger(__name__)


def create_app(
    database_url: str,
    max_body: int = DEFAULT_MAX_BODY,
    federation: Federation | None = None,
    signing_key: Path | None = None,
    policy: AccessPolicy | None = None,
    behind_tls: bool = False,
    registry: Path | None = None,
    analysis_sweep: float = ANALYSIS_SWEEP,
    vocabulary: Path | None = None,
) -> FastAPI:
    """The hub app on a database URL (SQLite by default, PostgreSQL in production).

    Request bodies over `max_body` bytes are refused with 413, JSON no store can keep
    (NaN, integers beyond 64 bits, deep nesting, NUL, lone surrogates) with 422. With a
    `federation`, the hub runs a Flower SuperLink for deployment runs, started and
    stopped with the app. The hub signs its audit heads and run certificates with the
    Ed25519 key at `signing_key` (made there, 0600, on first use); without one, with a
    key that lives as long as the app. `policy` caps token lifetimes and throttles
    password guessing. `behind_tls`: a proxy in front ends TLS, so the web app's
    cookies carry Secure. `registry`: the model registry the models pages and API read
    (default: the federation's, where its runs register their models). Every
    `analysis_sweep` s the hub closes the analysis rounds past their timeout.
    `vocabulary`: an Athena download's folder (or a subset) the cohort builder searches.
    """
    # the vocabulary first, then the database, then the key: a bad option leaves nothing behind
    concepts = None if vocabulary is None else load_concepts(vocabulary)
    engine = connect(database_url)
    key = Ed25519PrivateKey.generate() if signing_key is None else load_or_create_key(signing_key)
    turns = WriteTurns()
    writer = Writer(engine, turns)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if federation is not None:
            federation.changed = turns.changed_elsewhere
            await run_in_threadpool(federation.start, engine)
        sweeper = asyncio.create_task(_sweep_analyses(engine, writer, analysis_sweep))
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            if federation is not None:
                federation.stop()
            writer.close()

    app = FastAPI(
        title="FLIP hub",
        version=__version__,
        description="Coordinates projects, cohort counts and federated runs; holds no record.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.engine = engine
    app.state.behind_tls = behind_tls
    app.state.turns = turns
    app.state.fresh = Fresh(turns)
    app.state.streams = Streams()
    app.state.writer = writer
    app.state.federation = federation
    if registry is None and federation is not None:
        registry = federation.work / "models"
    app.state.registry = registry
    app.state.concepts = concepts
    app.state.signing_key = key
    #: Public keys the hub signed with before its key was rotated (`flip hub rotate-key`).
    app.state.retired_keys = [] if signing_key is None else retired_keys(signing_key)
    if federation is not None:
        federation.signing_key = app.state.signing_key
    #: When each site's agent last asked for work (Unix seconds, seen by this process).
    app.state.seen = {}
    app.state.audit_checks = AuditChecks()
    app.state.policy = policy = policy or AccessPolicy()
    app.state.throttle = StoredThrottle(
        engine, writer, policy.account_failures, policy.address_failures, policy.failure_window
    )
    app.state.passwords = PasswordWork(
        policy.password_workers, policy.password_queue, policy.password_profile
    )
    app.add_middleware(JsonGuard)
    app.add_middleware(BodySizeLimit, max_bytes=max_body, error_page=error_page)
    routers = (admin, tokens, sessions, activity, projects, listings, agent, models, analyses)
    routers += (quality,)
    for router in (r.router for r in routers):
        app.include_router(router, prefix=API_PREFIX, responses=ERRORS)

    @app.get("/health", tags=["health"])
    def health() -> dict[str, str]:
        """Liveness: the hub answers."""
        return {"status": "ok"}

    add_docs(app)
    add_web(app)
    return app


async def _sweep_analyses(engine: Engine, writer: Writer, every: float) -> None:
    """Close the analysis rounds past their timeout every `every` s, whoever reads them."""
    while True:
        await asyncio.sleep(every)
        try:
            await analyses.expire_overdue(engine, writer)
        except Exception:
            log.exception("cannot close the analysis rounds past their timeout")


def bootstrap_admin(
    engine: Engine, name: str = "admin", days: int = AccessPolicy().max_token_days
) -> str | None:
    """Create the first admin and return their token, which lives `days` (the hub's cap);
    None when an admin already exists."""
    with engine.begin() as conn:
        if conn.execute(select(users.c.id).where(users.c.role == "admin")).first():
            return None
        uid = conn.execute(insert(users).values(name=name, role="admin")).inserted_primary_key[0]
        token = api_tokens.mint(conn, uid, "default", days).token
        audit.append(conn, "hub", "user.create", f"user:{name}", {"role": "admin"})
        return token
