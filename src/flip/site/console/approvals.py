"""The approvals inbox: the tasks (and analyses, `analysis_approvals`) the hub asks this site
to decide, each task's review, and the decision (the ledger first, then the hub)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import httpx
import orjson
from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from flip.config import SiteConfig
from flip.data.ledger import DECISIONS, Ledger
from flip.site.approvals import decide
from flip.site.console.analysis_approvals import waiting_analyses
from flip.site.console.pages import Admin, ConsoleRoute, csrf, page, site_of
from flip.site.console.review import review
from flip.site.hub_client import HubClient
from flip.site.status import AgentStatus, status_path
from flip.webkit.render import see_other

router = APIRouter(route_class=ConsoleRoute, dependencies=[Depends(csrf.check)])

#: Decisions listed under the inbox.
RECENT = 20
HASH_PATH = PathParam(pattern=r"^[0-9a-f]{64}$", description="The task's SHA-256.")


def hub_client(site: SiteConfig) -> HubClient | None:
    """The site's client of its hub, or None before it enrolled."""
    credential = Path(site.credential)
    if site.hub is None or not credential.exists():
        return None
    return HubClient(site.hub, credential.read_text(encoding="utf-8").strip(), timeout=10.0)


def _inbox(site: SiteConfig) -> dict:
    with AgentStatus(status_path(site.ledger)) as seen, Ledger(site.ledger) as ledger:
        offered = seen.tasks(open_only=True)
        waiting = [t for t in offered if ledger.decision(t["project"], t["task_hash"]) is None]
        decided = []
        for entry in reversed(ledger.entries()):
            if entry["action"] in DECISIONS:
                detail = orjson.loads(str(entry["detail"]))
                decided.append({"at": entry["at"], "action": entry["action"], **detail})
            if len(decided) == RECENT:
                break
        analyses = {(a["project"], a["hash"]) for a in seen.analyses()}
        for entry in decided:
            entry["analysis"] = (str(entry.get("project")), entry.get("task_hash")) in analyses
        return {
            "waiting": waiting,
            "waiting_analyses": waiting_analyses(site),
            "decided": decided,
            "agent": seen.agent(),
        }


@router.get("/approvals")
async def inbox(request: Request, who: Admin, done: str | None = None):
    """The tasks and analyses waiting for this site's decision, and the latest decisions."""
    view = await run_in_threadpool(_inbox, site_of(request))
    return page(request, "approvals.html", done=done, **view)


def _review(site: SiteConfig, project: str, digest: str) -> dict:
    with AgentStatus(status_path(site.ledger)) as seen, Ledger(site.ledger) as ledger:
        offered = seen.task(project, digest)
        if offered is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                f"the hub has not offered task {digest[:12]}… of project {project} to this site",
            )
        return review(site, ledger, seen, offered, count_rows=True)


@router.get("/approvals/{project}/{digest}")
async def task_page(
    request: Request,
    who: Admin,
    project: int,
    digest: Annotated[str, HASH_PATH],
    done: str | None = None,
):
    """One task's review, with the form to approve or decline it."""
    view = await run_in_threadpool(_review, site_of(request), str(project), digest)
    return page(request, "task.html", done=done, **view)


@router.post("/approvals/{project}/{digest}")
async def decide_task(
    request: Request,
    who: Admin,
    project: int,
    digest: Annotated[str, HASH_PATH],
    decision: Annotated[Literal["approved", "declined"], Form()],
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Record the decision in the ledger, then tell the hub (the agent tells it later if the
    hub cannot be reached now)."""
    site = site_of(request)
    if decision == "declined" and not reason.strip():
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "say why the task is declined")
    offered = await run_in_threadpool(_offered, site, str(project), digest)
    if decision == "approved" and (problem := _unapprovable(site, offered)):
        raise HTTPException(status.HTTP_409_CONFLICT, problem)

    def job() -> str:
        hub = hub_client(site)
        try:
            decide(site, hub, project, digest, decision, by=who, reason=reason.strip())
        except httpx.HTTPError:
            return "recorded-hub-later"
        finally:
            if hub is not None:
                hub.close()
        return "recorded" if hub is not None else "recorded-local"

    done = await run_in_threadpool(job)
    return see_other(f"/approvals/{project}/{digest}?done={done}")


def _offered(site: SiteConfig, project: str, digest: str) -> dict:
    with AgentStatus(status_path(site.ledger)) as seen:
        offered = seen.task(project, digest)
    if offered is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"the hub has not offered task {digest[:12]}… of project {project} to this site",
        )
    return offered


def _unapprovable(site: SiteConfig, offered: dict) -> str | None:
    """Why the offered task cannot be approved, or None: an approval covers the hash, so the
    shown spec must be valid and hash to it, and the site's policy must allow it now (the
    agent declines what it refuses)."""
    from pydantic import ValidationError

    from flip.fl.tasks.base import TaskSpec, task_hash
    from flip.site.policy import task_problem

    try:
        spec = TaskSpec.model_validate(offered["spec"])
    except ValidationError:
        return "this task's spec is not valid here: decline it"
    if task_hash(spec) != offered["task_hash"]:
        return "this task's code and configuration do not hash to its hash: decline it"
    if problem := task_problem(site.policy, offered["project"], spec):
        return f"the site's policy refuses this task ({problem}): decline it or change the policy"
    return None
