"""The hub admin's pages: users, sites and the audit log (each action is the API's)."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, status
from fastapi.responses import Response
from sqlalchemy import update

from flip.hub import mfa
from flip.hub.access import find_user
from flip.hub.auth import Principal
from flip.hub.db import now, users
from flip.hub.routes import admin as admin_api
from flip.hub.routes import sessions as sessions_api
from flip.hub.routes.sessions import confirm_password
from flip.hub.schemas import (
    ENROLMENT_DAYS,
    LONGEST_ENROLMENT_DAYS,
    MAX_INT,
    EnrolmentOut,
    EnrolmentRequest,
    PasswordIn,
    PathId,
    RoleIn,
    SiteIn,
    TokenRequest,
    UserIn,
)
from flip.hub.web import banner, reads
from flip.hub.web.pages import WebAdmin, WebRoute, page, read
from flip.hub.web.security import check_csrf
from flip.webkit.render import see_other

router = APIRouter(prefix="/admin", route_class=WebRoute, dependencies=[Depends(check_csrf)])

ROLES = ("researcher", "viewer", "site_admin", "admin")
_CONNECTED_MINUTES = reads.CONNECTED_SECONDS // 60


#: Days a one-time password works; then the admin makes a new one.
ONE_TIME_DAYS = 7


def one_time_password() -> str:
    """A password for one sign-in, shown once to the admin who passes it on."""
    return "-".join(secrets.token_urlsafe(6) for _ in range(3))


async def mark_one_time(request: Request, user_id: int) -> None:
    """Mark the user's password as one-time, working for ONE_TIME_DAYS: the web asks for
    their own at sign-in, the API refuses it."""
    ends = now() + timedelta(days=ONE_TIME_DAYS)
    await request.app.state.writer.run(
        lambda conn: conn.execute(
            update(users)
            .where(users.c.id == user_id)
            .values(password_one_time=True, password_expires_at=ends)
        )
    )


async def invite(
    request: Request, who: Principal, name: str, role: str, site: str, admin_password: str
) -> tuple[str, str]:
    """Create user `name` with a one-time password they sign in with (then enrol TOTP);
    their stored name and that password, to be shown once."""
    password = one_time_password()
    body = UserIn(
        name=name,
        role=role,
        site=site.strip() or None,
        password=password,
        current_password=admin_password,
    )
    out = await admin_api.create_user(body=body, request=request, who=who)
    await mark_one_time(request, out.id)
    return out.name, password


async def _users_page(request: Request, status_code: int = 200, **shown):
    found = await read(request, reads.all_users)
    site_names = [s["name"] for s in await read(request, lambda c: reads.all_sites(c, {}))]
    context = {"users": found, "roles": ROLES, "sites": site_names, **shown}
    return page(request, "admin_users.html", status_code, **context)


@router.get("/users")
async def users_page(request: Request, who: WebAdmin):
    """Every user with role, site, state and second factor; invite, disable, reset."""
    return await _users_page(request)


@router.post("/users")
async def invite_user(
    request: Request,
    who: WebAdmin,
    name: Annotated[str, Form()],
    role: Annotated[str, Form()],
    admin_password: Annotated[str, Form()],
    site: Annotated[str, Form()] = "",
):
    """Create a user with a one-time password (shown once) they sign in with, then enrol TOTP."""
    made, password = await invite(request, who, name.strip(), role, site, admin_password)
    return await _users_page(request, 201, invited={"name": made, "password": password})


@router.post("/users/{user_id}/disable")
async def disable_user(request: Request, user_id: PathId, who: WebAdmin) -> Response:
    """Revoke every credential of the user (the API's revoke)."""
    if user_id == who.id:
        raise HTTPException(status.HTTP_409_CONFLICT, "an admin cannot disable themself")
    await admin_api.revoke_token(user_id=user_id, who=who, request=request)
    return see_other("/admin/users")


@router.post("/users/{user_id}/restore")
async def restore_user(
    request: Request, user_id: PathId, who: WebAdmin, admin_password: Annotated[str, Form()]
) -> Response:
    """Give a disabled user access again (the API's restore; their new API token is not shown:
    they make one on their account page)."""
    body = TokenRequest(password=admin_password)
    await admin_api.restore_user(user_id=user_id, request=request, who=who, body=body)
    return see_other("/admin/users")


@router.post("/users/{user_id}/password")
async def reset_password(
    request: Request, user_id: PathId, who: WebAdmin, admin_password: Annotated[str, Form()]
):
    """Set a new one-time password for the user (shown once); their sessions end."""
    password = one_time_password()
    body = PasswordIn(password=password, current_password=admin_password)
    await sessions_api.set_password(user_id=user_id, body=body, request=request, who=who)
    await mark_one_time(request, user_id)
    name = await read(request, lambda conn: find_user(conn, user_id).name)
    return await _users_page(request, reset={"name": name, "password": password})


@router.post("/users/{user_id}/mfa")
async def reset_mfa(
    request: Request, user_id: PathId, who: WebAdmin, admin_password: Annotated[str, Form()]
) -> Response:
    """Turn the user's TOTP off: they enrol a new device at their next sign-in."""
    await confirm_password(request, who, admin_password, "admin_password")

    def job(conn) -> None:
        admin_api.found_user(conn, user_id)
        mfa.reset(conn, user_id, who.label)

    await request.app.state.writer.run(job)
    return see_other("/admin/users")


@router.post("/users/{user_id}/role")
async def change_role(
    request: Request,
    user_id: PathId,
    who: WebAdmin,
    role: Annotated[str, Form()],
    admin_password: Annotated[str, Form()],
    site: Annotated[str, Form()] = "",
) -> Response:
    """Give the user another role (the API's role change, audited)."""
    body = RoleIn(role=role, site=site.strip() or None, current_password=admin_password)
    await admin_api.set_role(user_id=user_id, body=body, request=request, who=who)
    return see_other("/admin/users")


#: The enrolment token's lifetime field on the sites page: its default and its most.
_ENROLMENT_FORM = {
    "enrolment_days": ENROLMENT_DAYS,
    "longest_enrolment_days": LONGEST_ENROLMENT_DAYS,
}


@router.get("/sites")
async def sites_page(request: Request, who: WebAdmin):
    """Every site's connection status: state, when its agent last polled this hub, its
    health; create and disable."""
    found = await read(request, lambda conn: reads.all_sites(conn, request.app.state.seen))
    return page(
        request,
        "admin_sites.html",
        sites=found,
        connected_minutes=_CONNECTED_MINUTES,
        **_ENROLMENT_FORM,
    )


@router.post("/sites")
async def create_site(
    request: Request,
    who: WebAdmin,
    name: Annotated[str, Form()],
    days: Annotated[int, Form(ge=1, le=LONGEST_ENROLMENT_DAYS)] = ENROLMENT_DAYS,
):
    """Register a site; its one-time enrolment token, working for `days`, is shown here, once."""
    body = SiteIn(name=name.strip(), expires_in_days=days)
    out = await admin_api.create_site(body=body, who=who, request=request)
    return await _sites_with(request, out)


@router.post("/sites/{site_id}/enrolment")
async def renew_enrolment(
    request: Request,
    site_id: PathId,
    who: WebAdmin,
    days: Annotated[int, Form(ge=1, le=LONGEST_ENROLMENT_DAYS)] = ENROLMENT_DAYS,
):
    """A new enrolment token for a site not enrolled yet, shown here, once."""
    body = EnrolmentRequest(expires_in_days=days)
    out = await admin_api.renew_enrolment(site_id=site_id, body=body, who=who, request=request)
    return await _sites_with(request, out)


async def _sites_with(request: Request, created: EnrolmentOut):
    found = await read(request, lambda conn: reads.all_sites(conn, request.app.state.seen))
    return page(
        request,
        "admin_sites.html",
        201,
        sites=found,
        created=created,
        connected_minutes=_CONNECTED_MINUTES,
        **_ENROLMENT_FORM,
    )


@router.post("/sites/{site_id}/disable")
async def disable_site(request: Request, site_id: PathId, who: WebAdmin) -> Response:
    """Disable a site: its credential stops working."""
    await admin_api.disable_site(site_id=site_id, who=who, request=request)
    return see_other("/admin/sites")


@router.get("/audit")
async def audit_log(
    request: Request,
    who: WebAdmin,
    before: Annotated[int | None, Query(ge=1, le=MAX_INT)] = None,
    verify: Annotated[int, Query(ge=0, le=2)] = 0,
):
    """The audit log, newest first, 50 a page; with `verify`, the chain's check: 1 from
    where the last check ended, 2 of every entry."""
    entries = await read(request, lambda conn: reads.audit_page(conn, before))
    checked = None
    if verify:
        checks = request.app.state.audit_checks
        checked = await read(
            request, lambda conn: admin_api.audit_verdict(conn, checks, full=verify == 2)
        )
    return page(request, "admin_audit.html", entries=entries, checked=checked)


@router.get("/maintenance")
async def maintenance(request: Request, who: WebAdmin):
    """The maintenance banner every page shows: set or clear it."""
    return page(request, "admin_maintenance.html", limit=banner.MAX_LENGTH)


@router.post("/maintenance")
async def set_banner(
    request: Request, who: WebAdmin, text: Annotated[str, Form(max_length=banner.MAX_LENGTH)] = ""
) -> Response:
    """Set the banner (empty clears it), audited; every page shows it."""
    message = " ".join(text.split())
    await request.app.state.writer.run(lambda conn: banner.store(conn, message, who.label))
    request.app.state.banner.keep(message)
    return see_other("/admin/maintenance")
