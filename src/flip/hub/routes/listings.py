"""What a researcher lists: their projects, a project's tasks, queries and runs (the `flip`
researcher CLI reads these). A run's model downloads from the registry's route
(`GET /api/v1/models/{id}/download`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from flip.hub.auth import Reader
from flip.hub.routes.projects import _visible
from flip.hub.schemas import PathId
from flip.hub.transactions import ReadConn
from flip.hub.web.reads import project_queries, project_runs, project_tasks, visible_projects

router = APIRouter(tags=["projects"])


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
