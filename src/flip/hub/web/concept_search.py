"""The cohort builder's concept search, over the vocabulary the hub's operator loaded
(`flip.hub.concepts`); without one, the page says to type concept ids."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool

from flip.hub.routes import projects as api
from flip.hub.schemas import PathId
from flip.hub.web.pages import WebResearcher, WebRoute, page, read
from flip.hub.web.security import check_csrf

router = APIRouter(route_class=WebRoute, dependencies=[Depends(check_csrf)])

#: The OMOP domains a search may keep to: those of the cohort builder's concept criteria.
DOMAINS = ("Condition", "Drug", "Procedure", "Measurement", "Observation", "Visit")

Find = Annotated[str, Query(max_length=200)]


async def found(request: Request, find: str, domain: str) -> dict[str, Any]:
    """What the search part of a page shows: the text, the domain, the concepts found and
    whether the hub has a vocabulary at all."""
    index = request.app.state.concepts
    domain = domain if domain in DOMAINS else ""
    concepts = []
    if index is not None and find.strip():
        concepts = await run_in_threadpool(index.search, find, domain or None)
    return {
        "find": find,
        "find_domain": domain,
        "concepts": concepts,
        "vocabulary": index is not None,
        "concept_domains": DOMAINS,
    }


@router.get("/projects/{project_id}/concepts")
async def search(
    request: Request, project_id: PathId, who: WebResearcher, find: Find = "", domain: str = ""
):
    """The concepts matching `find` (an id, a code or words of a name), as the cohort
    builder's results fragment."""
    await read(request, lambda conn: api._visible(conn, project_id, who))
    return page(request, "_concepts.html", **await found(request, find, domain))
