"""The models pages: the registry with model cards, lineage and metrics by site; downloads."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import Response

from flip.hub import audit
from flip.hub.models import FORMATS
from flip.hub.routes import models as api
from flip.hub.web.pages import WebReader, WebRoute, page, read
from flip.hub.web.security import check_csrf

router = APIRouter(prefix="/models", route_class=WebRoute, dependencies=[Depends(check_csrf)])


@router.get("")
async def model_list(request: Request, who: WebReader):
    """Every model of the projects the user sees, with its metrics by site."""
    found = await read(request, lambda conn: api.visible_models(request, conn, who))
    kept = request.app.state.registry is not None
    return page(request, "models.html", models=found, registry=kept)


@router.get("/{model_id}")
async def model_page(request: Request, model_id: str, who: WebReader):
    """A model: its card, lineage (task, sites and their sizes, privacy) and downloads."""

    def job(conn):
        found = api.model_of(request, conn, who, model_id)
        audit.append(conn, who.label, "model.read", f"model:{model_id}")
        return found

    model = await request.app.state.writer.run(job, wake=False)
    return page(request, "model.html", model=model, formats=FORMATS)


@router.get("/{model_id}/download")
async def model_download(
    request: Request, model_id: str, who: WebReader, format: str = "torch"
) -> Response:
    """The API's model download (`/api/v1/models/{id}/download?format=`) for a web session:
    the same formats, the same handler, audited as in the API."""
    if format not in FORMATS:
        known = ", ".join(FORMATS)
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no download {format!r}: one of {known}")
    return await api.download(request, who, model_id, format)
