"""Users, site enrolment and audit verification."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from flip.fl.runtime.flower import DeploymentError
from flip.hub import access, anchors, api_tokens, audit
from flip.hub.audit_checks import AuditChecks
from flip.hub.auth import Admin, Caller, new_token, token_hash
from flip.hub.db import now, sites, users
from flip.hub.federation import Federation
from flip.hub.routes import analyses as analysis_routes
from flip.hub.routes.sessions import confirm_password
from flip.hub.schemas import (
    EnrolIn,
    EnrolmentOut,
    EnrolmentRequest,
    PathId,
    RoleIn,
    SiteIn,
    TokenOut,
    TokenRequest,
    UserIn,
    UserOut,
)
from flip.hub.transactions import Conn, ReadConn, writes
from flip.signing import load_public

log = logging.getLogger(__name__)

router = APIRouter(tags=["admin"])


@router.post("/users", status_code=201)
async def create_user(body: UserIn, request: Request, who: Admin) -> TokenOut:
    """Create a user with a role and return their API token, once.

    From a session, the admin's own password is needed (`current_password`), as for any token.
    """
    days = request.app.state.policy.token_days(body.expires_in_days)
    if who.session is not None:
        await confirm_password(request, who, body.current_password, "current_password")
    password = await request.app.state.passwords.hash(body.password) if body.password else None

    def job(conn: Connection) -> TokenOut:
        site_id = None
        if body.site is not None:
            site_id = conn.execute(select(sites.c.id).where(sites.c.name == body.site)).scalar()
            if site_id is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"no site {body.site}")
        _refuse_taken_name(conn, body.name)
        try:
            with conn.begin_nested():
                uid = conn.execute(
                    insert(users).values(
                        name=body.name,
                        role=body.role,
                        password_hash=password,
                        site_id=site_id,
                    )
                ).inserted_primary_key[0]
        except IntegrityError:
            raise HTTPException(status.HTTP_409_CONFLICT, f"user {body.name} exists") from None
        token = api_tokens.mint(conn, uid, "default", days).token
        audit.append(conn, who.label, "user.create", f"user:{body.name}", {"role": body.role})
        return TokenOut(id=uid, name=body.name, token=token)

    return await request.app.state.writer.run(job)


def _enrolment(days: int) -> tuple[str, dict[str, object]]:
    """A new enrolment token and the columns that keep its hash and its end."""
    token = new_token("flip_e")
    ends = now() + timedelta(days=days)
    return token, {"enrolment_hash": token_hash(token), "enrolment_expires_at": ends}


def _issued(
    conn: Connection,
    who: Caller,
    action: str,
    site_id: int,
    name: str,
    token: str,
    columns: dict[str, Any],
) -> EnrolmentOut:
    """Audit `action` on site `name` with its token's end, and show the token once."""
    ends = columns["enrolment_expires_at"]
    audit.append(conn, who.label, action, f"site:{name}", {"expires_at": ends.isoformat()})
    return EnrolmentOut(id=site_id, name=name, enrolment_token=token, expires_at=ends)


def _refuse_taken_name(conn: Connection, name: str) -> None:
    """409 when a user has this name, or one that differs from it only by case."""
    taken = conn.execute(access.by_name(select(users.c.name), name)).scalar()
    if taken == name:
        raise HTTPException(status.HTTP_409_CONFLICT, f"user {name} exists")
    if taken is not None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"user name {name} is taken by {taken}: names must differ by more than case",
        )


@router.post("/sites", status_code=201)
@writes
def create_site(body: SiteIn, conn: Conn, who: Admin) -> EnrolmentOut:
    """Register a site and return its one-time enrolment token, which works for
    `expires_in_days` (7 unless asked); 409 if a site has the name in any case."""
    taken = conn.execute(
        select(sites.c.name).where(func.lower(sites.c.name) == body.name.lower())
    ).scalar()
    if taken is not None and taken != body.name:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"site name {body.name} is taken by {taken}: names must differ by more than case",
        )
    token, columns = _enrolment(body.expires_in_days)
    try:
        with conn.begin_nested():
            sid = conn.execute(
                insert(sites).values(name=body.name, status="pending", **columns)
            ).inserted_primary_key[0]
    except IntegrityError:
        raise HTTPException(status.HTTP_409_CONFLICT, f"site {body.name} exists") from None
    return _issued(conn, who, "site.create", sid, body.name, token, columns)


@router.post("/sites/{site_id}/enrolment")
@writes
def renew_enrolment(
    site_id: PathId, conn: Conn, who: Admin, body: EnrolmentRequest | None = None
) -> EnrolmentOut:
    """A new enrolment token for a site that has not enrolled yet (its last one expired or
    was lost); the one before stops working."""
    body = body or EnrolmentRequest()
    row = conn.execute(select(sites.c.name, sites.c.status).where(sites.c.id == site_id)).first()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no site {site_id}")
    if row.status != "pending":
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"site {row.name} is {row.status}: it cannot enrol again"
        )
    token, columns = _enrolment(body.expires_in_days)
    conn.execute(update(sites).where(sites.c.id == site_id).values(**columns))
    return _issued(conn, who, "site.enrolment.renew", site_id, row.name, token, columns)


@router.post("/sites/enrol")
@writes
def enrol(body: EnrolIn, conn: Conn) -> TokenOut:
    """Exchange a one-time enrolment token, before it expires, for the site's credential."""
    site = conn.execute(
        select(sites).where(sites.c.enrolment_hash == token_hash(body.enrolment_token))
    ).first()
    if site is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown or already used enrolment token")
    if site.status != "pending":
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"site {site.name} is {site.status}")
    ends = site.enrolment_expires_at
    if ends is None or now() >= ends:
        when = "" if ends is None else f" at {ends.isoformat(timespec='minutes')} UTC"
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"enrolment token for site {site.name} expired{when}: ask the hub admin for a new one",
        )
    if body.public_key is not None:
        try:
            load_public(body.public_key.strip())
        except ValueError as exc:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"public_key: {exc}"
            ) from None
    credential = new_token("flip_s")
    conn.execute(
        update(sites)
        .where(sites.c.id == site.id, sites.c.status == "pending")
        .values(
            enrolment_hash=None,
            enrolment_expires_at=None,
            credential_hash=token_hash(credential),
            status="active",
            signing_key=body.public_key and body.public_key.strip(),
        )
    )
    audit.append(conn, f"site:{site.name}", "site.enrol", f"site:{site.name}")
    return TokenOut(id=site.id, name=site.name, token=credential)


@router.get("/audit/verify")
def verify_audit(
    request: Request,
    conn: ReadConn,
    who: Admin,
    full: Annotated[
        bool, Query(description="Check every entry, not only those since the last check.")
    ] = False,
) -> dict[str, object]:
    """Check the audit chain: `ok` is false and `broken_at` names the entry if edited, or
    `site_ledgers` lists a site ledger's signed head that broke the one before it.

    A check reads the entries appended since the last one (and the entry it ended at);
    `full`, the first check after the hub starts and one a day read them all (`checked`).
    """
    return audit_verdict(conn, request.app.state.audit_checks, full)


def audit_verdict(conn: Connection, checks: AuditChecks, full: bool) -> dict[str, object]:
    """The audit chain's and the site ledgers' check, as `GET /audit/verify` answers it."""
    checked, breaks = checks.check(conn, full), anchors.ledger_breaks(conn)
    broken = checked.pop("broken_at")
    return {
        "ok": broken is None and not breaks,
        "broken_at": broken,
        "site_ledgers": breaks,
        "checked": checked,
    }


def found_user(conn: Connection, user_id: int):
    """The user's row, or 404."""
    try:
        return access.find_user(conn, user_id)
    except access.NoSuchUser as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None


def active_user(conn: Connection, user_id: int):
    """The user's row, or 404; 409 while an admin has revoked their access."""
    row = found_user(conn, user_id)
    if row.revoked_at is not None:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"user {row.name}'s access is revoked: restore it"
        )
    return row


@router.post("/users/{user_id}/token")
async def rotate_token(
    user_id: PathId, request: Request, who: Caller, body: TokenRequest | None = None
) -> TokenOut:
    """A new API token ("default") for a user (an admin, or the user themself) that replaces
    every token they have: all the others stop working. `POST /users/{id}/tokens` adds one.

    Its lifetime is at most the hub's cap (and, made with an API token, that token's); from
    a session, the caller's password is needed.
    """
    if who.kind != "user" or (who.role != "admin" and who.id != user_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only an admin or the user may do this")
    body = body or TokenRequest()
    days = request.app.state.policy.token_days(body.expires_in_days)
    if who.session is not None:
        await confirm_password(request, who, body.password)

    def job(conn: Connection) -> TokenOut:
        row = active_user(conn, user_id)
        api_tokens.end_all(conn, user_id)
        token = api_tokens.mint(conn, user_id, "default", days, who.token_expires).token
        audit.append(conn, who.label, "user.token.rotate", f"user:{row.name}")
        return TokenOut(id=row.id, name=row.name, token=token)

    return await request.app.state.writer.run(job)


@router.put("/users/{user_id}/role")
async def set_role(user_id: PathId, body: RoleIn, request: Request, who: Admin) -> UserOut:
    """Change a user's role (and a site admin's site); not an admin's own, so a hub always
    keeps the admin who acts. From a session, the admin's password is needed."""
    if user_id == who.id:
        raise HTTPException(status.HTTP_409_CONFLICT, "an admin cannot change their own role")
    if who.session is not None:
        await confirm_password(request, who, body.current_password, "current_password")

    def job(conn: Connection) -> UserOut:
        row = found_user(conn, user_id)
        site_id = None
        if body.site is not None:
            site_id = conn.execute(select(sites.c.id).where(sites.c.name == body.site)).scalar()
            if site_id is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"no site {body.site}")
        conn.execute(
            update(users).where(users.c.id == user_id).values(role=body.role, site_id=site_id)
        )
        detail = {"from": row.role, "to": body.role, "site": body.site}
        audit.append(conn, who.label, "user.role", f"user:{row.name}", detail)
        return UserOut(id=row.id, name=row.name, role=body.role, site=body.site)

    return await request.app.state.writer.run(job)


@router.delete("/users/{user_id}/token", status_code=204)
@writes
def revoke_token(user_id: PathId, conn: Conn, who: Admin) -> None:
    """Revoke a user's access: all their API tokens, sessions and password login end until
    an admin restores it."""
    found_user(conn, user_id)
    access.revoke(conn, user_id, who.label)


@router.post("/users/{user_id}/restore")
async def restore_user(
    user_id: PathId, request: Request, who: Admin, body: TokenRequest | None = None
) -> TokenOut:
    """Give a revoked user access again, with a new API token (shown once).

    From a session, the admin's password is needed, as for any new token.
    """
    body = body or TokenRequest()
    days = request.app.state.policy.token_days(body.expires_in_days)
    if who.session is not None:
        await confirm_password(request, who, body.password)

    def job(conn: Connection) -> TokenOut:
        found_user(conn, user_id)
        uid, name, token = access.restore(conn, user_id, who.label, days)
        return TokenOut(id=uid, name=name, token=token)

    return await request.app.state.writer.run(job)


@router.delete("/sites/{site_id}/signing-key", status_code=204)
@writes
def clear_site_key(site_id: PathId, conn: Conn, who: Admin) -> None:
    """Forget a site's registered signing key (it lost its `signing.key`): its next signed
    ledger head registers the key it holds then. Audited; its kept heads stay."""
    try:
        anchors.clear_site_key(conn, site_id, who.label)
    except anchors.NoSuchSite as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except anchors.NoKey as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None


@router.post("/sites/{site_id}/disable", status_code=204)
async def disable_site(site_id: PathId, request: Request, who: Admin) -> None:
    """Disable a site: its credential stops working, it gets no more work, and its Flower
    SuperNode's key is unregistered from the hub's SuperLink, so it trains no more rounds
    of a run it joined."""

    def job(conn: Connection) -> str:
        row = conn.execute(select(sites).where(sites.c.id == site_id)).first()
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no site {site_id}")
        conn.execute(
            update(sites)
            .where(sites.c.id == site_id)
            .values(status="disabled", enrolment_hash=None, enrolment_expires_at=None)
        )
        audit.append(conn, who.label, "site.disable", f"site:{row.name}")
        analysis_routes.site_disabled(conn, site_id)
        return str(row.name)

    name = await request.app.state.writer.run(job)
    federation: Federation | None = request.app.state.federation
    if federation is None:
        return
    try:
        node = await run_in_threadpool(federation.unregister, name)
    except DeploymentError as exc:  # the next hub start unregisters it
        log.error("site %s: its SuperNode key stays registered for now: %s", name, exc)
        node = None
    if node is not None:

        def unregistered(conn: Connection) -> None:
            audit.append(conn, who.label, "site.node.unregister", f"site:{name}", {"node": node})

        await request.app.state.writer.run(unregistered)
