"""Signing in to the console with an admin's name and console password; signing out."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
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

router = APIRouter(route_class=ConsoleRoute, dependencies=[Depends(csrf.check)])

#: Wrong passwords in a row before the console waits `PAUSE_SECONDS` before checking another.
FAILURES_BEFORE_PAUSE = 5
PAUSE_SECONDS = 30.0


class Throttle:
    """Slows guessing: after `FAILURES_BEFORE_PAUSE` wrong passwords in a row, sign-ins are
    refused (429) for `PAUSE_SECONDS`."""

    def __init__(self) -> None:
        self.failures = 0
        self.until = 0.0

    def check(self) -> None:
        """429 while paused."""
        if time.monotonic() < self.until:
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                f"too many wrong passwords: wait {PAUSE_SECONDS:.0f} seconds and try again",
            )

    def failed(self) -> None:
        """Count a wrong password; pause after too many."""
        self.failures += 1
        if self.failures >= FAILURES_BEFORE_PAUSE:
            self.failures, self.until = 0, time.monotonic() + PAUSE_SECONDS

    def passed(self) -> None:
        """A right password: start counting again."""
        self.failures = 0


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
    throttle: Throttle = request.app.state.throttle
    throttle.check()
    path = request.app.state.password_path
    right = await run_in_threadpool(passwords.check, path, name, password)
    site = site_of(request)
    with Ledger(site.ledger) as ledger:
        ledger.record("console.signin" if right else "console.signin.failed", {"by": name})
    if not right:
        throttle.failed()
        error = "that name and password do not match a console admin of this site"
        return page(request, "signin.html", 401, error=error, name=name, next=_local(next))
    throttle.passed()
    token = request.app.state.sessions.open(name)
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
