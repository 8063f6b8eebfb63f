"""The console's rendering, sessions and the signed-in admin; refusals as pages in words."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Response, status
from fastapi.responses import HTMLResponse

from flip.config import SiteConfig
from flip.site.console import passwords
from flip.webkit.render import templates_in
from flip.webkit.routes import page_route
from flip.webkit.security import CSRF_FIELD, Csrf

HERE = Path(__file__).parent
templates = templates_in(HERE / "templates")

#: Cookie names of their own: a hub's web app on the same host (another port) shares cookies.
SESSION_COOKIE = "flip_console_session"
CSRF_COOKIE = "flip_console_csrf"
SESSION_HOURS = 8

csrf = Csrf(CSRF_COOKIE, SESSION_COOKIE)


class Sessions:
    """Signed-in admins by session token, in memory (a restart signs everyone out). Each
    session holds the admin's password hash it was opened with: a new password (or the
    admin taken out of the password file) ends it."""

    def __init__(self) -> None:
        self._open: dict[str, tuple[str, str, float]] = {}

    def open(self, name: str, password_hash: str) -> str:
        """A new session for admin `name`, who signed in against `password_hash`; its token."""
        token = secrets.token_urlsafe(32)
        self._open[token] = (name, password_hash, time.monotonic() + SESSION_HOURS * 3600)
        return token

    def who(self, token: str | None, hashes: Mapping[str, str]) -> str | None:
        """The admin a live session token names, while `hashes` (the password file now)
        still holds the password it was opened with; else None (and the session ends)."""
        found = self._open.get(token or "")
        if found is None or found[2] < time.monotonic() or hashes.get(found[0]) != found[1]:
            self._open.pop(token or "", None)
            return None
        return found[0]

    def close(self, token: str | None) -> None:
        """End a session."""
        self._open.pop(token or "", None)


def site_of(request: Request) -> SiteConfig:
    """The site as its site.yaml says now (the policy page may have changed it)."""
    return SiteConfig.load(request.app.state.config_path)


def signed_in(request: Request) -> str:
    """The admin whose session the cookie names, or 401 (the page then asks to sign in)."""
    hashes = passwords.read(request.app.state.password_path)
    name = request.app.state.sessions.who(request.cookies.get(SESSION_COOKIE), hashes)
    if name is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "sign in first")
    request.state.who = name
    return name


Admin = Annotated[str, Depends(signed_in)]


def page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render `template` with the signed-in admin (if any), the site and the CSRF token."""
    context |= {
        "who": getattr(request.state, "who", None),
        "site_name": request.app.state.site_name,
        "csrf_field": CSRF_FIELD,
        "csrf": csrf.token(request),
        "path": request.url.path,
    }
    response = templates.TemplateResponse(request, template, context, status_code=status_code)
    csrf.keep(request, response)
    return response


def error_page(request: Request, code: int, message: str) -> Response:
    """The error page: the status and what went wrong, in words."""
    return page(request, "error.html", status_code=code, code=code, message=message)


ConsoleRoute = page_route(error_page)
