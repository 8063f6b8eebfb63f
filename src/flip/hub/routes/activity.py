"""What a site was asked and what it released, for the site's own admin (and hub admins)."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, HTTPException, status
from sqlalchemy import or_, select

from flip.hub.auth import Caller
from flip.hub.db import (
    audit,
    project_sites,
    queries,
    query_results,
    run_sites,
    runs,
    sites,
    task_decisions,
    tasks,
)
from flip.hub.schemas import PathId, SiteActivityOut
from flip.hub.transactions import ReadConn

router = APIRouter(tags=["sites"])


def _naming(site: str) -> str:
    """How an audit entry's detail names a site: its "site" key (details are compact JSON)."""
    return '"site":' + orjson.dumps(site).decode()


@router.get("/sites/{site_id}/activity")
def site_activity(site_id: PathId, conn: ReadConn, who: Caller) -> SiteActivityOut:
    """Everything the hub asked of a site and everything it released (its admin, or an admin)."""
    if who.role != "admin" and not (who.role == "site_admin" and who.site_id == site_id):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "only a hub admin or this site's own admin may see this"
        )
    site = conn.execute(select(sites).where(sites.c.id == site_id)).first()
    if site is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no site {site_id}")
    memberships = conn.execute(
        select(project_sites.c.project_id, project_sites.c.status).where(
            project_sites.c.site_id == site_id
        )
    ).all()
    projects = [p for p, _ in memberships]
    asked = conn.execute(
        select(queries.c.id, queries.c.project_id, queries.c.name, query_results)
        .outerjoin(
            query_results,
            (query_results.c.query_id == queries.c.id) & (query_results.c.site_id == site_id),
        )
        .where(queries.c.project_id.in_(projects))
        .order_by(queries.c.id)
    ).all()
    decisions = conn.execute(
        select(tasks.c.project_id, tasks.c.hash, task_decisions.c.decision, task_decisions.c.reason)
        .join(task_decisions, task_decisions.c.task_id == tasks.c.id)
        .where(task_decisions.c.site_id == site_id)
        .order_by(tasks.c.id)
    ).all()
    replies = conn.execute(
        select(runs.c.id, runs.c.project_id, runs.c.status, run_sites.c.status, run_sites.c.reason)
        .outerjoin(run_sites, (run_sites.c.run_id == runs.c.id) & (run_sites.c.site_id == site_id))
        .where(runs.c.project_id.in_(projects))
        .order_by(runs.c.id)
    ).all()
    label = f"site:{site.name}"
    entries = conn.execute(
        select(audit)
        .where(
            or_(
                audit.c.actor == label,
                audit.c.target == label,
                audit.c.detail.contains(_naming(site.name), autoescape=True),
            )
        )
        .order_by(audit.c.seq)
    ).all()
    return SiteActivityOut(
        site=site.name,
        status=site.status,
        projects=dict(memberships),
        queries=[
            {
                "id": q.id,
                "project_id": q.project_id,
                "name": q.name,
                "released": None
                if q.suppressed is None
                else {"count": q.count, "suppressed": q.suppressed, "error": q.error},
            }
            for q in asked
        ],
        decisions=[
            {"project_id": d[0], "task_hash": d[1], "decision": d[2], "reason": d[3]}
            for d in decisions
        ],
        runs=[
            {"id": r[0], "project_id": r[1], "run_status": r[2], "reply": r[3], "reason": r[4]}
            for r in replies
        ],
        audit=[
            {"seq": e.seq, "at": e.at, "actor": e.actor, "action": e.action, "target": e.target}
            for e in entries
        ],
    )
