"""The analyses the hub asks this site for, in the approvals inbox: each one's spec, and the
decision on its hash (kept in the ledger; the agent tells the hub when it releases or refuses)."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import ValidationError

from flip.config import SiteConfig
from flip.data.ledger import Ledger
from flip.problems import first_problem
from flip.site.analyses import load_spec, policy_problem
from flip.site.approvals import decide
from flip.site.console.pages import Admin, ConsoleRoute, csrf, page, site_of
from flip.site.policy import auto_approves_analysis
from flip.site.status import AgentStatus, status_path
from flip.webkit.render import see_other

router = APIRouter(route_class=ConsoleRoute, dependencies=[Depends(csrf.check)])

HASH_PATH = PathParam(pattern=r"^[0-9a-f]{64}$", description="The analysis's SHA-256.")


def waiting_analyses(site: SiteConfig) -> list[dict]:
    """The analyses the hub asks for now that this site has not decided, each with why the
    site's policy forbids it now (`forbidden`, None when it does not)."""
    with AgentStatus(status_path(site.ledger)) as seen, Ledger(site.ledger) as ledger:
        waiting = [
            a
            for a in seen.analyses(open_only=True)
            if ledger.decision(a["project"], a["hash"]) is None
        ]
    return [a | {"forbidden": _forbidden(site, a)} for a in waiting]


def _forbidden(site: SiteConfig, offered: dict) -> str | None:
    """Why the site's policy refuses the offered analysis now (the agent refuses it at its
    next poll), or None; a spec that does not load is `_problem`'s to tell."""
    try:
        spec = load_spec(offered["spec"])
    except ValidationError:
        return None
    return policy_problem(site.policy, int(offered["project"]), spec)


def _offered(site: SiteConfig, project: str, digest: str) -> dict:
    with AgentStatus(status_path(site.ledger)) as seen:
        offered = seen.analysis(project, digest)
    if offered is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"the hub has not asked this site for analysis {digest[:12]}… of project {project}",
        )
    return offered


def _problem(offered: dict) -> str | None:
    """Why the spec shown cannot be approved under its hash, or None."""
    try:
        spec = load_spec(offered["spec"])
    except ValidationError as exc:
        return f"this analysis's spec is not valid here ({first_problem(exc)}): decline it"
    if spec.digest() != offered["hash"] or spec.body() != offered["spec"]:
        return "this analysis's spec does not hash to its hash: decline it"
    return None


def _view(site: SiteConfig, project: str, digest: str) -> dict:
    offered = _offered(site, project, digest)
    with Ledger(site.ledger) as ledger:
        decision = ledger.decision(project, digest)
    kind = str(offered["spec"].get("kind", ""))
    return {
        "analysis": offered,
        "spec_text": json.dumps(offered["spec"], indent=2, sort_keys=True),
        "decision": decision,
        "problem": _problem(offered),
        "forbidden": _forbidden(site, offered),
        "auto_approved": auto_approves_analysis(site.policy, int(project), kind),
    }


@router.get("/approvals/analysis/{project}/{digest}")
async def analysis_page(
    request: Request,
    who: Admin,
    project: int,
    digest: Annotated[str, HASH_PATH],
    done: str | None = None,
):
    """One analysis's spec, with the form to approve or decline its hash."""
    view = await run_in_threadpool(_view, site_of(request), str(project), digest)
    return page(request, "analysis.html", done=done, **view)


@router.post("/approvals/analysis/{project}/{digest}")
async def decide_analysis(
    request: Request,
    who: Admin,
    project: int,
    digest: Annotated[str, HASH_PATH],
    decision: Annotated[Literal["approved", "declined"], Form()],
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Record the decision on the analysis's hash in the ledger; the agent acts on it at its
    next poll (releasing, or refusing with the reason)."""
    site = site_of(request)
    if decision == "declined" and not reason.strip():
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "say why it is declined")
    offered = await run_in_threadpool(_offered, site, str(project), digest)
    if decision == "approved" and (problem := _problem(offered) or _forbidden(site, offered)):
        raise HTTPException(status.HTTP_409_CONFLICT, problem)
    await run_in_threadpool(
        lambda: decide(site, None, project, digest, decision, by=who, reason=reason.strip())
    )
    return see_other(f"/approvals/analysis/{project}/{digest}?done=recorded")
