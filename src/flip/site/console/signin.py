"""Signing in to the console with an admin's name and console password; signing out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from flip.data.ledger import Ledger
from flip.site.console import passwords
from flip.site.console.pages import (
    SESSION_COOKIE,
    SESSION_HOURS,
    Admin,
    ConsoleRoute,
    csrf,
    page,
    site_of,
)
from flip.webkit.render import see_other
from flip.webkit.security import set_cookie
from flip.webkit.throttle import LoginThrottle, client_address

router = APIRouter(route_class=ConsoleRoute, dependencies=[Depends(csrf.check)])

#: Wrong passwords for one admin (and from one address) within `WINDOW_SECONDS` before 429.
ACCOUNT_FAILURES = 5
ADDRESS_FAILURES = 20
WINDOW_SECONDS = 300.0


def new_throttle() -> LoginThrottle:
    """The console's password-guessing throttle: the hub's, with the console's limits."""
    return LoginThrottle(ACCOUNT_FAILURES, ADDRESS_FAILURES, WINDOW_SECONDS)


def _local(target: str | None) -> str:
    """Where to go after signing in: a path of this console only."""
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return "/approvals"


@router.get("/")
def home() -> Response:
    """The console opens on the approvals inbox."""
    return see_other("/approvals")


@router.get("/signin")
def signin_form(request: Request, next: str | None = None):
    """The sign-in page (it says how to set a password when none is set)."""
    none_set = not passwords.read(request.app.state.password_path)
    return page(request, "signin.html", next=_local(next), none_set=none_set)


@router.post("/signin")
async def signin(
    request: Request,
    name: Annotated[str, Form(max_length=100)],
    password: Annotated[str, Form(max_length=passwords.MAX_LENGTH)],
    next: Annotated[str, Form(max_length=500)] = "/approvals",
) -> Response:
    """Check the admin's console password; open a session; audit the sign-in."""
    throttle: LoginThrottle = request.app.state.throttle
    address = client_address(request)
    stamp = throttle.attempt(name, address)
    path = request.app.state.password_path
    stored = await run_in_threadpool(passwords.check, path, name, password)
    site = site_of(request)
    with Ledger(site.ledger) as ledger:
        ledger.record("console.signin.failed" if stored is None else "console.signin", {"by": name})
    if stored is None:
        error = "that name and password do not match a console admin of this site"
        return page(request, "signin.html", 401, error=error, name=name, next=_local(next))
    throttle.succeeded(name, address, stamp)
    token = request.app.state.sessions.open(name, stored)
    response = see_other(_local(next))
    set_cookie(request, response, SESSION_COOKIE, token, SESSION_HOURS)
    return response


@router.post("/signout")
def signout(request: Request, who: Admin) -> Response:
    """End this browser's session."""
    request.app.state.sessions.close(request.cookies.get(SESSION_COOKIE))
    response = see_other("/signin")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
