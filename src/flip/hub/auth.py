"""Bearer tokens for users and sites: random, shown once, stored as SHA-256."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy import (
    Connection,
    DateTime,
    Integer,
    cast,
    false,
    literal,
    null,
    or_,
    select,
    union_all,
    update,
)

from flip.hub.db import api_tokens, now, sessions, sites, users
from flip.hub.transactions import CREDENTIALS, reading

ROLES = ("admin", "researcher", "viewer", "site_admin")
#: How finely an API token's last use is kept: at most one write per token in this time.
LAST_USED_GRAIN = timedelta(hours=1)


def new_token(prefix: str) -> str:
    """A fresh high-entropy token, e.g. flip_u_… for users, flip_s_… for sites."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def token_hash(token: str) -> str:
    """How a token is stored: its SHA-256 (tokens are random, so no salt is needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


def stale_use(last_used: datetime | None, at: datetime) -> bool:
    """Whether a token last used at `last_used` should have its use written down at `at`."""
    return last_used is None or at - last_used >= LAST_USED_GRAIN


def note_use(conn: Connection, token_id: int, at: datetime) -> None:
    """Write down that the token was used at `at`, unless a use within the grain is kept."""
    conn.execute(
        update(api_tokens)
        .where(
            api_tokens.c.id == token_id,
            or_(
                api_tokens.c.last_used_at.is_(None),
                api_tokens.c.last_used_at <= at - LAST_USED_GRAIN,
            ),
        )
        .values(last_used_at=at)
    )


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user with a role, or a site."""

    kind: str
    id: int
    name: str
    role: str
    session: int | None = None
    site_id: int | None = None
    #: Whether the session was opened by the web app's sign-in (password and TOTP).
    web: bool = False
    #: Whether the user still has a one-time password (the web asks for a new one first).
    one_time: bool = False
    #: When the API token the user calls with ends (None: a session, or no end).
    token_expires: datetime | None = None

    @property
    def label(self) -> str:
        """How the audit log names this caller."""
        return f"{self.kind}:{self.name}"


def _callers(digest: str):
    """The sessions, users (by one of their API tokens) and sites whose token hashes to
    `digest`, in one query."""
    return union_all(
        select(
            literal("session").label("kind"),
            users.c.id,
            users.c.name,
            users.c.role,
            sessions.c.id.label("session"),
            users.c.site_id,
            sessions.c.expires_at.label("expires"),
            literal("active").label("status"),
            users.c.revoked_at.label("revoked"),
            sessions.c.web,
            users.c.password_one_time,
            cast(null(), Integer).label("token_id"),
            cast(null(), DateTime).label("last_used"),
        )
        .join(users, users.c.id == sessions.c.user_id)
        .where(sessions.c.token_hash == digest),
        select(
            literal("user"),
            users.c.id,
            users.c.name,
            users.c.role,
            null(),
            users.c.site_id,
            api_tokens.c.expires_at,
            literal("active"),
            users.c.revoked_at,
            false(),
            users.c.password_one_time,
            api_tokens.c.id,
            api_tokens.c.last_used_at,
        )
        .join(users, users.c.id == api_tokens.c.user_id)
        .where(api_tokens.c.token_hash == digest),
        select(
            literal("site"),
            sites.c.id,
            sites.c.name,
            literal("site"),
            null(),
            null(),
            null(),
            sites.c.status,
            null(),
            false(),
            false(),
            null(),
            null(),
        ).where(sites.c.credential_hash == digest),
    )


async def principal(request: Request) -> Principal:
    """The caller named by the Authorization header, or 401; 403 for a web session opened with
    a one-time password (the API refuses that password's login: it refuses its session too)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing bearer token")
    who = await caller_of(request, token.strip())
    if who.one_time:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "this session was opened with a one-time password: choose your own on the web first",
        )
    return who


async def caller_of(request: Request, token: str) -> Principal:
    """Who holds `token` (a session, a user's API token or a site's credential), or 401:
    the one check behind the API's bearer header and the web app's session cookie."""
    digest = token_hash(token)

    def read() -> dict:
        with reading(request.app.state.engine) as conn:
            return {row.kind: row for row in conn.execute(_callers(digest))}

    key = ("caller", digest)
    found = await request.app.state.fresh.get(key, read, CREDENTIALS, everything=False)
    if any(row.revoked is not None for row in found.values()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "this user's access is revoked: ask an admin to restore it",
        )
    if (session := found.get("session")) is not None:
        if session.expires < now():
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "session expired: log in again")
        return Principal(
            "user",
            session.id,
            session.name,
            session.role,
            session.session,
            session.site_id,
            bool(session.web),
            bool(session.password_one_time),
        )
    if (user := found.get("user")) is not None:
        at = now()
        if user.expires is not None and user.expires < at:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "token expired: ask for a new one")
        if stale_use(user.last_used, at):
            await request.app.state.writer.run(
                lambda conn: note_use(conn, user.token_id, at), wake=False
            )
        return Principal(
            "user", user.id, user.name, user.role, site_id=user.site_id, token_expires=user.expires
        )
    site = found.get("site")
    if site is not None and site.status == "active":
        return Principal("site", site.id, site.name, "site")
    raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown or revoked token")


#: Who may do what: the role sets the API's routes and the web app's pages both check.
ADMINS = ("admin",)
RESEARCHERS = ("admin", "researcher")
READERS = ("admin", "researcher", "viewer")
SITES = ("site",)


def require(*roles: str, source=principal):
    """A dependency that lets through only callers (found by `source`) with one of `roles`."""

    async def check(who: Principal = Depends(source)) -> Principal:
        if who.role not in roles:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"this needs the role {' or '.join(roles)}"
            )
        return who

    return check


Caller = Annotated[Principal, Depends(principal)]
Admin = Annotated[Principal, Depends(require(*ADMINS))]
Researcher = Annotated[Principal, Depends(require(*RESEARCHERS))]
Reader = Annotated[Principal, Depends(require(*READERS))]
Site = Annotated[Principal, Depends(require(*SITES))]
