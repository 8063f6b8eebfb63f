"""What a researcher lists and downloads: their projects, a project's tasks, queries and runs,
and the model a deployment run registered at the hub (the `flip` researcher CLI reads these)."""

from __future__ import annotations

import io
import re
import zipfile
from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Request, Response, status
from sqlalchemy import select

from flip.hub import audit
from flip.hub.auth import Reader
from flip.hub.db import runs
from flip.hub.routes.projects import _run_visible, _visible
from flip.hub.schemas import PathId
from flip.hub.transactions import Conn, ReadConn, writes
from flip.hub.web.reads import project_queries, project_runs, project_tasks, visible_projects

router = APIRouter(tags=["projects"])

#: A registered model's id: the registry's own folder names (no separators, no leading dot).
MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,200}")

#: The files of a registered model that a download carries.
MODEL_FILES = ("model.pt", "lineage.json", "MODEL_CARD.md")

ZIP = {200: {"content": {"application/zip": {}}, "description": "The model's folder, zipped."}}


@router.get("/projects")
def list_projects(conn: ReadConn, who: Reader, search: str = "") -> list[dict[str, Any]]:
    """The projects the caller sees (admins all, else those they own or are a member of),
    newest first; `search` keeps those whose name or description holds it."""
    return visible_projects(conn, who, search[:200])


@router.get("/projects/{project_id}/tasks")
def list_tasks(project_id: PathId, conn: ReadConn, who: Reader) -> list[dict[str, Any]]:
    """The project's proposed tasks, each with every invited site's decision."""
    _visible(conn, project_id, who)
    return project_tasks(conn, project_id)


@router.get("/projects/{project_id}/queries")
def list_queries(project_id: PathId, conn: ReadConn, who: Reader) -> list[dict[str, Any]]:
    """The project's cohort queries, newest first, with how many sites answered."""
    _visible(conn, project_id, who)
    return project_queries(conn, project_id)


@router.get("/projects/{project_id}/runs")
def list_runs(project_id: PathId, conn: ReadConn, who: Reader) -> list[dict[str, Any]]:
    """The project's runs, newest first."""
    _visible(conn, project_id, who)
    return project_runs(conn, project_id)


@router.get("/runs/{run_id}/model", response_class=Response, responses=ZIP)
@writes(wake=False)
def download_model(
    run_id: PathId, request: Request, conn: Conn, who: Reader, best: bool = False
) -> Response:
    """The model a completed deployment run registered at the hub (`best`: its best round's),
    as a zip of its weights (model.pt), lineage and model card."""
    _run_visible(conn, run_id, who)
    row = conn.execute(select(runs.c.runtime, runs.c.results).where(runs.c.id == run_id)).one()
    federation = request.app.state.federation
    key = "best_model" if best else "model"
    model_id = (orjson.loads(row.results) if row.results else {}).get(key)
    if row.runtime != "deployment" or federation is None or not isinstance(model_id, str):
        which = "best-round model" if best else "model"
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"run {run_id} has no {which} at this hub "
            "(only completed deployment runs register one)",
        )
    folder = federation.work / "models" / model_id
    if not MODEL_ID.fullmatch(model_id) or not (folder / "model.pt").is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"model {model_id} is not in the registry")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in MODEL_FILES:
            if (folder / name).is_file():
                archive.write(folder / name, f"{model_id}/{name}")
    audit.append(conn, who.label, "run.model.download", f"run:{run_id}", {"model": model_id})
    headers = {"Content-Disposition": f'attachment; filename="{model_id}.zip"'}
    return Response(buffer.getvalue(), media_type="application/zip", headers=headers)
