"""The hub's web app for researchers and hub admins: server-rendered pages over the API's rules.

Served by `flip hub serve` at `/` in the same process as the API (under /api/v1): the
same database, the same credential check (`flip.hub.auth.caller_of`) and the same role
sets and project visibility as the API's routes. No Node.js, no CDN: Jinja2 templates,
one small script served from this package and the stylesheet and layout the site
console shares (`flip.webkit`).
"""

from __future__ import annotations

from fastapi import FastAPI

from flip.hub.web import (
    account,
    admin,
    analyses,
    concept_search,
    joining,
    models,
    projects,
    quality,
    signin,
    tasks,
)
from flip.hub.web.banner import Banner
from flip.hub.web.pages import HERE, error_page
from flip.hub.web.security import SecurityHeaders, server_error
from flip.webkit.render import static_files
from flip.webkit.routes import unrouted_pages
from flip.webkit.throttle import AddressLimit

#: The modules whose routers make the web app, in the order they are served.
PAGE_MODULES = (
    signin,
    account,
    projects,
    concept_search,
    tasks,
    models,
    quality,
    analyses,
    admin,
    joining,
)

#: The window, in seconds, of the limit on account requests per client address.
REQUEST_WINDOW = 3600.0


def add_web(app: FastAPI) -> None:
    """Serve the web app on `app` at `/` (pages, /static) beside the API."""
    app.state.enrolments = signin.Enrolments()
    app.state.banner = Banner(app.state.engine)
    app.state.request_limit = AddressLimit(app.state.policy.account_requests, REQUEST_WINDOW)
    for module in PAGE_MODULES:
        app.include_router(module.router, include_in_schema=False)
    app.mount("/static", static_files(HERE / "static"), name="static")
    app.add_middleware(SecurityHeaders)
    app.add_exception_handler(Exception, server_error)
    unrouted_pages(app, error_page, api="/api/")
