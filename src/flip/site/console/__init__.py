"""The site admin's console: a small web app the site runs on 127.0.0.1 against its own ledger
and store (`flip site console`). Approvals are decided here, where the data are: the ledger
first, then the hub; a hub admin can never approve for a site.

It shares the hub web app's look and protections (`flip.webkit`) and imports nothing of the
hub: the approvals inbox, the policy (every change audited), the data report, the audit log
with its chain checked, and the agent's status.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from flip.config import SiteConfig
from flip.site.console import (
    analysis_approvals,
    approvals,
    passwords,
    policy,
    records,
    signin,
)
from flip.site.console.pages import Sessions, error_page
from flip.site.console.review import code_css
from flip.webkit.limits import BodySizeLimit
from flip.webkit.render import static_files
from flip.webkit.routes import unrouted_pages
from flip.webkit.security import AllowedHosts, SecurityHeaders, server_error

#: The largest form the console takes: a decision's reason, a policy, a rule.
MAX_BODY = 64 * 1024


def create_app(
    config_path: Path, *, behind_tls: bool = False, hosts: frozenset[str] | None = None
) -> FastAPI:
    """The console of the site whose site.yaml is `config_path`; with `hosts`, only requests
    naming one of them as their Host are answered (`flip site console` passes its own)."""
    site = SiteConfig.load(config_path)
    app = FastAPI(title=f"FLIP site console: {site.name}", docs_url=None, redoc_url=None)
    app.openapi_url = None
    app.state.config_path = config_path
    app.state.site_name = site.name
    app.state.password_path = passwords.password_path(site.ledger)
    app.state.sessions = Sessions()
    app.state.throttle = signin.new_throttle()
    app.state.behind_tls = behind_tls
    for module in (signin, approvals, analysis_approvals, policy, records):
        app.include_router(module.router, include_in_schema=False)
    css = code_css()

    @app.get("/code.css", include_in_schema=False)
    def code_stylesheet() -> PlainTextResponse:
        """The colours of highlighted code."""
        return PlainTextResponse(css, media_type="text/css")

    app.mount("/static", static_files(), name="static")
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY, error_page=error_page)
    if hosts is not None:
        app.add_middleware(AllowedHosts, names=hosts)
    # Added last, so outermost: its headers reach every answer, a refused host's too.
    app.add_middleware(SecurityHeaders, cached="/static/")
    app.add_exception_handler(Exception, server_error)
    unrouted_pages(app, error_page)
    return app
