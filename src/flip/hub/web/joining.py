"""Asking for an account: the public form, and the admin's queue to approve or decline."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.responses import Response
from pydantic import BaseModel, Field, ValidationError

from flip.hub import access_requests
from flip.hub.schemas import Name, PathId
from flip.hub.web.admin import ROLES, invite
from flip.hub.web.pages import WebAdmin, WebRoute, page, read
from flip.hub.web.security import check_csrf
from flip.webkit.render import problems, see_other
from flip.webkit.throttle import client_address

router = APIRouter(route_class=WebRoute, dependencies=[Depends(check_csrf)])


class AccessRequestIn(BaseModel):
    """What the public form asks."""

    name: str = Name
    email: str = Field(min_length=3, max_length=200, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    organisation: str = Field(min_length=1, max_length=200)
    reason: str = Field(min_length=1, max_length=2000)


@router.get("/request-account")
def request_form(request: Request):
    """The public form: ask the hub's admins for an account."""
    return page(request, "request_account.html")


@router.post("/request-account")
async def request_account(
    request: Request,
    name: Annotated[str, Form()],
    email: Annotated[str, Form()],
    organisation: Annotated[str, Form()],
    reason: Annotated[str, Form()],
):
    """Keep the request for the admins. Each valid request counts against its address's
    hourly limit (so asking after names is as slow as guessing passwords); a name or email in
    use is refused with one message for a user, a request waiting or one approved."""
    fields = {"name": name.strip(), "email": email.strip(), "organisation": organisation.strip()}
    try:
        body = AccessRequestIn(**fields, reason=reason.strip())
    except ValidationError as exc:
        return page(request, "request_account.html", 422, error=problems(exc), **fields)
    request.app.state.request_limit.count(client_address(request), "account requests")
    try:
        await request.app.state.writer.run(
            lambda conn: access_requests.submit(conn, body.model_dump())
        )
    except access_requests.Taken as exc:
        return page(request, "request_account.html", 409, error=str(exc), **fields)
    except access_requests.Refused as exc:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, str(exc)) from None
    return page(request, "request_account.html", 202, sent=True)


async def _queue(request: Request, status_code: int = 200, **shown):
    found = await read(request, access_requests.listed)
    return page(request, "admin_requests.html", status_code, roles=ROLES, **found, **shown)


@router.get("/admin/requests")
async def queue(request: Request, who: WebAdmin):
    """The requests waiting for a decision, and the latest decided."""
    return await _queue(request)


async def _pending(request: Request, request_id: int):
    def job(conn):
        try:
            return access_requests.pending(conn, request_id)
        except access_requests.Refused as exc:
            code = (
                status.HTTP_404_NOT_FOUND if "no access" in str(exc) else status.HTTP_409_CONFLICT
            )
            raise HTTPException(code, str(exc)) from None

    return await read(request, job)


@router.post("/admin/requests/{request_id}/approve")
async def approve(
    request: Request,
    request_id: PathId,
    who: WebAdmin,
    role: Annotated[str, Form()],
    admin_password: Annotated[str, Form()],
    site: Annotated[str, Form()] = "",
):
    """Create the user the request asks for, with a one-time password shown once (their
    invitation), and mark the request approved."""
    asked = await _pending(request, request_id)
    made, password = await invite(request, who, asked.name, role, site, admin_password)
    await request.app.state.writer.run(
        lambda conn: access_requests.decide(conn, request_id, "approved", who.label)
    )
    invited = {"name": made, "email": asked.email, "password": password}
    return await _queue(request, 201, invited=invited)


@router.post("/admin/requests/{request_id}/decline")
async def decline(
    request: Request,
    request_id: PathId,
    who: WebAdmin,
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Decline the request, with a note for the record."""
    await _pending(request, request_id)

    def job(conn) -> None:
        try:
            access_requests.decide(conn, request_id, "declined", who.label, note.strip())
        except access_requests.Refused as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None

    await request.app.state.writer.run(job)
    return see_other("/admin/requests")
