"""The task pages: pick from the catalog or upload a task package, review its hash, code,
privacy settings and rounds, then propose it to the project's sites."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Form, HTTPException, Request, UploadFile, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from flip.hub import task_review
from flip.hub.routes import projects as api
from flip.hub.schemas import PathId, TaskIn
from flip.hub.web.pages import WebResearcher, WebRoute, page, read
from flip.hub.web.security import check_csrf
from flip.webkit.render import see_other

router = APIRouter(
    prefix="/projects/{project_id}/tasks", route_class=WebRoute, dependencies=[Depends(check_csrf)]
)


async def _project(request: Request, project_id: int, who):
    return await read(request, lambda conn: api._visible(conn, project_id, who))


async def _reviewed(job, *args):
    try:
        return await run_in_threadpool(job, *args)
    except task_review.BadTask as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None


@router.get("/new")
async def catalog(request: Request, project_id: PathId, who: WebResearcher):
    """The built-in tasks, and a form to upload a task package (`task.json`)."""
    project = await _project(request, project_id, who)
    found = await _reviewed(task_review.catalog)
    return page(request, "task_catalog.html", project=project, tasks=found)


@router.get("/review")
async def review_built_in(request: Request, project_id: PathId, who: WebResearcher, builtin: str):
    """Review a built-in task before proposing it."""
    project = await _project(request, project_id, who)
    task = await _reviewed(task_review.built_in, builtin)
    return page(request, "task_review.html", project=project, task=task)


@router.post("/review")
async def review_upload(
    request: Request, project_id: PathId, who: WebResearcher, package: UploadFile | None = None
):
    """Review an uploaded task package (the `task.json` `flip fl pack-task` writes)."""
    project = await _project(request, project_id, who)
    if package is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "package: choose a task.json")
    data = await package.read(task_review.MAX_PACKAGE + 1)
    task = await _reviewed(task_review.review, data)
    return page(request, "task_review.html", project=project, task=task)


@router.post("")
async def propose(
    request: Request,
    project_id: PathId,
    who: WebResearcher,
    spec: Annotated[str, Form(max_length=task_review.MAX_PACKAGE)],
    task_hash: Annotated[str, Form(max_length=64)],
) -> Response:
    """Propose the reviewed task: its hash is computed again and must be the one shown."""
    await _project(request, project_id, who)
    task = await _reviewed(task_review.review, spec.encode())
    if task["hash"] != task_hash:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            "the task changed since it was reviewed (its hash differs): review it again",
        )
    body = TaskIn(hash=task["hash"], kind=task["kind"], spec=orjson.loads(task["spec"]))
    await api.add_task(project_id=project_id, body=body, who=who, request=request)
    return see_other(f"/projects/{project_id}")
