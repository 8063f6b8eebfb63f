"""`flip bench hub`'s page walk covers every page of the web app a user opens."""

from __future__ import annotations

import re

from flip.bench import hub_pages
from flip.hub.web import PAGE_MODULES
from flip.hub.web.pages import WebRoute

#: GET routes the walk leaves out, and why: none is a page a user reads.
NOT_PAGES = {
    "/": "a redirect to the user's first page",
    "/signin/enrol": "only within a sign-in that enrols its TOTP",
    "/queries/{}/events": "a live stream, not a page",
    "/runs/{}/events": "a live stream, not a page",
    "/runs/{}/results.json": "a download",
    "/runs/{}/certificate.json": "a download",
    "/models/{}/download": "a download",
}


def _shape(path: str) -> str:
    """A path with its query string dropped and each {placeholder} written {}."""
    return re.sub(r"\{[^}]*\}", "{}", path.split("?")[0])


def test_the_walk_opens_every_page_of_the_web_app():
    pages = {
        _shape(route.path)
        for module in PAGE_MODULES
        for route in module.router.routes
        if isinstance(route, WebRoute) and "GET" in route.methods
    }
    walked = {_shape(p) for p in hub_pages.RESEARCHER_PAGES + hub_pages.ADMIN_PAGES}
    assert pages - set(NOT_PAGES) - walked == set(), "pages the bench never times"
    assert walked <= pages, "the walk names a page the app does not serve"
