"""Rendering: templates, the signed-in user, and errors as pages in words."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from sqlalchemy import Connection

from flip.hub.auth import ADMINS, READERS, RESEARCHERS, Principal, caller_of, require
from flip.hub.transactions import reading
from flip.hub.web.security import CSRF_FIELD, SESSION_COOKIE, csrf_token, keep_csrf
from flip.webkit.render import templates_in
from flip.webkit.routes import page_route

HERE = Path(__file__).parent
templates = templates_in(HERE / "templates")


#: The pages a user who signed in with a one-time password may open: to choose their own.
ONE_TIME_PAGES = ("/account", "/account/password", "/signout")


def home_for(role: str) -> str:
    """The first page a user of `role` may see: the projects, or for a site admin (whose
    work is in their site's console) their account."""
    return "/projects" if role in READERS else "/account"


async def web_principal(request: Request) -> Principal:
    """The user whose web session the cookie names, or 401 (the page then asks to sign in).

    Only sessions opened by the web app's sign-in (password and TOTP, 12 hours) count: an
    API token or an API login's session in the cookie is refused.
    """
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "sign in first")
    who = await caller_of(request, token)
    if who.kind != "user" or who.session is None or not who.web:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "sign in first")
    if who.one_time and request.url.path not in ONE_TIME_PAGES:
        raise HTTPException(
            status.HTTP_303_SEE_OTHER,
            "choose your own password first",
            headers={"Location": "/account?done=one-time"},
        )
    request.state.who = who
    return who


def read(request: Request, job: Callable[[Connection], Any]) -> Awaitable[Any]:
    """`job(conn)` on a read connection in a worker thread."""

    def run() -> Any:
        with reading(request.app.state.engine) as conn:
            return job(conn)

    return run_in_threadpool(run)


SignedIn = Annotated[Principal, Depends(web_principal)]
WebAdmin = Annotated[Principal, Depends(require(*ADMINS, source=web_principal))]
WebResearcher = Annotated[Principal, Depends(require(*RESEARCHERS, source=web_principal))]
WebReader = Annotated[Principal, Depends(require(*READERS, source=web_principal))]


def page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render `template` with the signed-in user (if any) and the CSRF field's token."""
    context |= {
        "who": getattr(request.state, "who", None),
        "csrf_field": CSRF_FIELD,
        "csrf": csrf_token(request),
        "path": request.url.path,
        "banner": request.app.state.banner.current(),
    }
    response = templates.TemplateResponse(request, template, context, status_code=status_code)
    keep_csrf(request, response)
    return response


def error_page(request: Request, code: int, message: str) -> Response:
    """The error page: the status and what went wrong, in words."""
    return page(request, "error.html", status_code=code, code=code, message=message)


WebRoute = page_route(error_page)
