"""Sign in with a password and a TOTP code (enrolling one at the first sign-in), sign out."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.responses import Response
from sqlalchemy import delete

from flip.hub import audit, mfa
from flip.hub.auth import token_hash
from flip.hub.db import sessions
from flip.hub.routes.sessions import checked_login, open_session
from flip.hub.web.pages import SignedIn, WebRoute, home_for, page, read
from flip.hub.web.security import SESSION_COOKIE, check_csrf, set_cookie
from flip.webkit.render import see_other

router = APIRouter(route_class=WebRoute, dependencies=[Depends(check_csrf)])

#: How long a web session lasts, and how long a password-checked sign-in may take to enrol TOTP.
SESSION_HOURS = 12
ENROL_SECONDS = 600
PENDING_COOKIE = "flip_enrol"


@dataclass(frozen=True)
class Pending:
    """An enrolment under way: whose, the secret offered, their role, what the user was like (their
    password and API token, `mfa.enrolment_state`) and when the offer ends."""

    user_id: int
    name: str
    secret: str
    role: str
    state: str
    ends: float


class Enrolments:
    """Sign-ins whose password was right but whose user has no TOTP yet: the secret offered,
    by a random key the browser holds in a cookie, for `ENROL_SECONDS`, while the user stays
    as they were (a new password, token or a revocation ends it)."""

    def __init__(self) -> None:
        self._pending: dict[str, Pending] = {}

    def start(self, user_id: int, name: str, role: str, state: str) -> str:
        """Offer a new secret to the user as they are now (`state`); the key to find it again."""
        now = time.monotonic()
        self._pending = {k: v for k, v in self._pending.items() if v.ends > now}
        key = secrets.token_urlsafe(32)
        self._pending[key] = Pending(
            user_id, name, mfa.new_secret(), role, state, now + ENROL_SECONDS
        )
        return key

    async def find(self, request: Request, key: str | None) -> Pending:
        """The pending enrolment `key` names, while its user is as they were; else 401."""
        found = self._pending.get(key or "")
        if found is None or found.ends < time.monotonic():
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "sign in again")

        def still(conn) -> bool:
            return mfa.may_enrol(conn, found.user_id, found.state)

        if not await read(request, still):
            self.finish(key or "")
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "sign in again")
        return found

    def finish(self, key: str) -> None:
        """Forget a pending enrolment."""
        self._pending.pop(key, None)


def _local(target: str | None) -> str:
    """Where to go after signing in: a path on this hub only (never another site); "" for
    the user's home page (`home_for`)."""
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return ""


@router.get("/signin")
def signin_form(request: Request, next: str | None = None):
    """The sign-in page."""
    return page(request, "signin.html", next=_local(next))


@router.post("/signin")
async def signin(
    request: Request,
    name: Annotated[str, Form(max_length=100)],
    password: Annotated[str, Form(max_length=256)],
    code: Annotated[str, Form(max_length=64)] = "",
    next: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Check the password and the one-time code; a user without TOTP enrols it first."""
    try:
        user = await checked_login(request, name, password, code or None)
    except HTTPException as exc:
        if exc.status_code == status.HTTP_429_TOO_MANY_REQUESTS:
            raise
        return page(request, "signin.html", 401, error=exc.detail, name=name, next=_local(next))
    if user.totp_enabled_at is None:
        state = mfa.enrolment_state(user.password_hash, user.token_hash)
        key = request.app.state.enrolments.start(user.id, user.name, user.role, state)
        response = see_other("/signin/enrol")
        set_cookie(request, response, PENDING_COOKIE, key, hours=1)
        return response
    token = await open_session(request, user.id, user.name, SESSION_HOURS, web=True)
    response = see_other(_local(next) or home_for(user.role))
    set_cookie(request, response, SESSION_COOKIE, token, SESSION_HOURS)
    return response


@router.get("/signin/enrol")
async def enrol_form(request: Request):
    """Set up an authenticator: the QR code and its secret, and a field for the first code."""
    found = await request.app.state.enrolments.find(request, request.cookies.get(PENDING_COOKIE))
    uri = mfa.provisioning_uri(found.secret, found.name)
    return page(request, "enrol.html", qr=mfa.qr_svg(uri), secret=found.secret, name=found.name)


@router.post("/signin/enrol")
async def enrol(request: Request, code: Annotated[str, Form(max_length=64)]) -> Response:
    """Turn TOTP on with the first code, open the session and show the recovery codes once."""
    key = request.cookies.get(PENDING_COOKIE) or ""
    enrolments = request.app.state.enrolments
    found = await enrolments.find(request, key)
    user_id, name, secret, role = found.user_id, found.name, found.secret, found.role
    try:
        codes = await request.app.state.writer.run(
            lambda conn: mfa.enable(conn, user_id, secret, code, f"user:{name}", found.state)
        )
    except mfa.StaleEnrolment:
        enrolments.finish(key)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "sign in again") from None
    if codes is None:
        uri = mfa.provisioning_uri(secret, name)
        return page(
            request,
            "enrol.html",
            422,
            qr=mfa.qr_svg(uri),
            secret=secret,
            name=name,
            error="that code is not the current one: check the time on your device and try again",
        )
    enrolments.finish(key)
    token = await open_session(request, user_id, name, SESSION_HOURS, web=True)
    request.state.session_token = token  # the page's forms belong to the new session
    response = page(request, "recovery.html", codes=codes, home=home_for(role))
    set_cookie(request, response, SESSION_COOKIE, token, SESSION_HOURS)
    response.delete_cookie(PENDING_COOKIE, path="/")
    return response


@router.post("/signout")
async def signout(request: Request, who: SignedIn) -> Response:
    """End this browser's session."""
    token = request.cookies.get(SESSION_COOKIE, "")

    def job(conn) -> None:
        conn.execute(delete(sessions).where(sessions.c.token_hash == token_hash(token)))
        audit.append(conn, who.label, "user.logout", who.label)

    await request.app.state.writer.run(job)
    response = see_other("/signin")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
