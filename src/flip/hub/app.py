"""The hub's FastAPI application."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import Engine, insert, select

from flip import __version__
from flip.hub import audit
from flip.hub.auth import new_token, token_hash
from flip.hub.db import connect, users
from flip.hub.limits import DEFAULT_MAX_BODY, BodySizeLimit
from flip.hub.routes import activity, admin, agent, projects, sessions
from flip.hub.transactions import WriteTurns

API_PREFIX = "/api/v1"


def create_app(database_url: str, max_body: int = DEFAULT_MAX_BODY) -> FastAPI:
    """The hub app on a database URL (SQLite by default, PostgreSQL in production).

    Request bodies over `max_body` bytes are refused with 413.
    """
    app = FastAPI(
        title="FLIP hub",
        version=__version__,
        description="Coordinates projects, cohort counts and federated runs; holds no record.",
    )
    app.state.engine = connect(database_url)
    app.state.turns = WriteTurns()
    app.add_middleware(BodySizeLimit, max_bytes=max_body)
    routers = (admin, sessions, activity, projects, agent)
    for router in (r.router for r in routers):
        app.include_router(router, prefix=API_PREFIX)

    @app.get("/health", tags=["health"])
    def health() -> dict[str, str]:
        """Liveness: the hub answers."""
        return {"status": "ok"}

    return app


def bootstrap_admin(engine: Engine, name: str = "admin") -> str | None:
    """Create the first admin and return their token; None when an admin already exists."""
    with engine.begin() as conn:
        if conn.execute(select(users.c.id).where(users.c.role == "admin")).first():
            return None
        token = new_token("flip_u")
        conn.execute(insert(users).values(name=name, role="admin", token_hash=token_hash(token)))
        audit.append(conn, "hub", "user.create", f"user:{name}", {"role": "admin"})
        return token
