"""The web apps' protections: security headers, a strict CSP, cookies and CSRF tokens."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets

from fastapi import HTTPException, Request, Response, status
from fastapi.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flip.bounds import json_problems

log = logging.getLogger(__name__)

CSRF_FIELD = "csrf"

#: No inline script or style, nothing from another origin, no framing.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)
HEADERS = {
    b"content-security-policy": CSP.encode(),
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"same-origin",
    b"x-frame-options": b"DENY",
}


#: Pages may show secrets (a TOTP key, recovery codes, a new token, a one-time password):
#: no browser or proxy keeps any page but the static files.
NO_STORE = (b"cache-control", b"no-store")


class SecurityHeaders:
    """Adds the CSP and the other security headers to every response of paths it covers
    (everything but the API, whose JSON clients need none of them), and `no-store` to
    every one but the static files'."""

    def __init__(
        self, app: ASGIApp, skip: tuple[str, ...] = ("/api/",), cached: str = "/static/"
    ) -> None:
        self.app = app
        self.skip = skip
        self.cached = cached

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.skip):
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                have = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in HEADERS.items() if k not in have]
                if not scope["path"].startswith(self.cached) and NO_STORE[0] not in have:
                    extra.append(NO_STORE)
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, sending)


#: The names a server on loopback is reached by.
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})


def host_name(header: str) -> str:
    """The name in a Host header, without its port ("[::1]" stays whole), lower-cased."""
    header = header.strip().lower()
    if header.startswith("["):
        return header.partition("]")[0] + "]"
    return header.partition(":")[0]


class AllowedHosts:
    """Answers 400 to a request whose Host header names none of `names`: a page of another
    site whose name was rebound to this address (DNS rebinding) reaches nothing."""

    def __init__(self, app: ASGIApp, names: frozenset[str]) -> None:
        self.app = app
        self.names = frozenset(n.lower() for n in names)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            if host_name(host) not in self.names:
                refused = PlainTextResponse("this server does not answer to that host name", 400)
                await refused(scope, receive, send)
                return
        await self.app(scope, receive, send)


def server_error(request: Request, exc: Exception) -> Response:
    """An unexpected error's answer: a plain 500 that still carries the security headers; the
    error and its traceback go to the server's log, never to the client."""
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    headers = {k.decode(): v.decode() for k, v in HEADERS.items()}
    return PlainTextResponse(
        "Internal Server Error", status.HTTP_500_INTERNAL_SERVER_ERROR, headers
    )


def secure(request: Request) -> bool:
    """Whether the browser reaches the app over TLS (cookies then carry Secure): it serves
    TLS itself, or the operator said a proxy in front ends it (`--behind-tls`)."""
    return bool(getattr(request.app.state, "behind_tls", False)) or request.url.scheme == "https"


def set_cookie(request: Request, response: Response, name: str, value: str, hours: int) -> None:
    """Set an HttpOnly, SameSite=Strict cookie (Secure under TLS) for `hours`."""
    response.set_cookie(
        name,
        value,
        max_age=hours * 3600,
        httponly=True,
        samesite="strict",
        secure=secure(request),
        path="/",
    )


def refuse_unstorable(fields: dict[str, str]) -> None:
    """422 naming the field if a form or query field holds what no store can keep or send
    back (NUL, lone surrogates): the guard JSON bodies pass, for forms."""
    if problems := json_problems(fields):
        where, why = problems[0]
        name = ".".join(str(p) for p in where) or "form"
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{name}: {why}")


class Csrf:
    """CSRF tokens bound to a session: a random cookie (`cookie`) per browser, and each
    form's token an HMAC of the session cookie's (`session_cookie`) value under it."""

    def __init__(self, cookie: str, session_cookie: str) -> None:
        self.cookie = cookie
        self.session_cookie = session_cookie

    def token(self, request: Request) -> str:
        """The CSRF token this browser's forms carry: its cookie's (or a new one the page
        response will set), bound to the session the page is shown in."""
        kept = request.cookies.get(self.cookie) or getattr(request.state, "new_csrf", None)
        if kept is None:
            kept = request.state.new_csrf = secrets.token_urlsafe(32)
        session = getattr(request.state, "session_token", None)
        return _bound(kept, session or request.cookies.get(self.session_cookie, ""))

    def keep(self, request: Request, response: Response) -> None:
        """Set the CSRF cookie if this request made the token."""
        new = getattr(request.state, "new_csrf", None)
        if new is not None:
            set_cookie(request, response, self.cookie, new, hours=24 * 30)

    async def check(self, request: Request) -> None:
        """A state-changing form must carry its browser's token for this session: else 403;
        a field no store can keep: 422."""
        refuse_unstorable(dict(request.query_params))
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return
        form = await request.form()
        sent = form.get(CSRF_FIELD)
        kept = request.cookies.get(self.cookie)
        if not _same(sent, kept, request.cookies.get(self.session_cookie, "")):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                "the form's security token is missing or stale: reload the page and try again",
            )
        refuse_unstorable({k: v for k, v in form.items() if isinstance(v, str)})


def _bound(kept: str, session: str) -> str:
    """The form token: the browser's CSRF cookie bound to its session (none before sign-in)."""
    return hmac.new(kept.encode(), session.encode(), hashlib.sha256).hexdigest()


def _same(sent: object, kept: str | None, session: str) -> bool:
    return (
        isinstance(sent, str)
        and bool(kept)
        and secrets.compare_digest(sent.encode(), _bound(kept or "", session).encode())
    )
