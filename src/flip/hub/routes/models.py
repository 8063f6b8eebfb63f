"""The model registry: each model the hub's runs registered, to those who see its project."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from sqlalchemy import Connection, or_, select

from flip.hub import audit, models
from flip.hub.auth import Principal, Reader
from flip.hub.db import project_members, projects
from flip.hub.transactions import ReadConn, reading

router = APIRouter(tags=["models"])


def visible_projects(conn: Connection, who: Principal) -> set[int] | None:
    """The ids of the projects the caller sees (the API's rule), or None: an admin sees all."""
    if who.role == "admin":
        return None
    members = select(project_members.c.project_id).where(project_members.c.user_id == who.id)
    query = select(projects.c.id).where(
        or_(projects.c.owner_id == who.id, projects.c.id.in_(members))
    )
    return set(conn.execute(query).scalars())


def seen_by(lineage: dict[str, Any], visible: set[int] | None) -> bool:
    """Whether a caller who sees `visible` projects (None: all) sees this model."""
    return visible is None or lineage.get("project") in visible


def visible_models(request: Request, conn: Connection, who: Principal) -> list[dict[str, Any]]:
    """Summaries of the models of the projects the caller sees, newest first."""
    visible = visible_projects(conn, who)
    found = models.lineages(request.app.state.registry)
    return [models.summary(m) for m in found if seen_by(m, visible)]


def model_of(request: Request, conn: Connection, who: Principal, model_id: str) -> dict[str, Any]:
    """The model's lineage and card if the caller sees its project; else 404, as for a
    model that does not exist."""
    try:
        found = models.one(request.app.state.registry, model_id)
    except models.NoModel as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    if not seen_by(found, visible_projects(conn, who)):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no model {model_id}")
    return found


@router.get("/models")
def list_models(request: Request, conn: ReadConn, who: Reader) -> list[dict[str, Any]]:
    """The registry's models of the projects the caller sees: ids, run, task, metrics by site."""
    return visible_models(request, conn, who)


@router.get("/models/{model_id}")
async def get_model(model_id: str, request: Request, who: Reader) -> dict[str, Any]:
    """A model's lineage (task, sites and their sizes, strategy, privacy, metrics) and its
    model card (`card`, Markdown). Audited."""

    def job(conn: Connection) -> dict[str, Any]:
        found = model_of(request, conn, who, model_id)
        audit.append(conn, who.label, "model.read", f"model:{model_id}")
        return found

    return await request.app.state.writer.run(job, wake=False)


@router.get(
    "/models/{model_id}/download",
    response_class=Response,
    responses={
        200: {
            "content": {"application/octet-stream": {}, "application/zip": {}},
            "description": "The file.",
        }
    },
)
async def download_model(
    model_id: str,
    request: Request,
    who: Reader,
    format: Literal["torch", "onnx", "zip"] = Query(
        "torch",
        description="torch (state dict), onnx, or zip: the model's folder (weights, lineage, card)",
    ),
) -> Response:
    """The model's weights: a torch state dict or an ONNX graph (the kinds that have one), or
    its registry folder zipped (what `flip models pull` unpacks). The one model download;
    audited."""
    return await download(request, who, model_id, format)


async def download(request: Request, who: Principal, model_id: str, fmt: str) -> Response:
    """The model's weights in `fmt` as an attachment, audited once they are made (409 when the
    model has no such export)."""

    def look() -> None:
        with reading(request.app.state.engine) as conn:
            model_of(request, conn, who, model_id)

    await run_in_threadpool(look)
    try:
        body = await run_in_threadpool(
            models.export_bytes, request.app.state.registry, model_id, fmt
        )
    except models.NoExport as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None

    def audited(conn: Connection) -> None:
        audit.append(conn, who.label, "model.download", f"model:{model_id}", {"format": fmt})

    await request.app.state.writer.run(audited, wake=False)
    name = f"{model_id}-{models.FORMATS[fmt]}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    kind = "application/zip" if fmt == "zip" else "application/octet-stream"
    return Response(body, media_type=kind, headers=headers)
