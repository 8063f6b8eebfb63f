"""What the pages show, read from the hub's tables (the rules of who sees what are the API's)."""

from __future__ import annotations

import time
from typing import Any

import orjson
from sqlalchemy import Connection, func, or_, select

from flip.hub import api_tokens
from flip.hub.auth import Principal
from flip.hub.db import (
    audit,
    now,
    project_members,
    project_sites,
    projects,
    queries,
    query_results,
    runs,
    site_heads,
    sites,
    task_decisions,
    tasks,
    users,
)


def visible_projects(
    conn: Connection,
    who: Principal,
    search: str = "",
    *,
    mine: bool = False,
    limit: int | None = None,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """The projects the caller sees (the API's rule: admins all, else owned or member of),
    newest first, whose name or description holds `search` (with `mine`, only those the
    caller owns); `limit` of them from `offset` (all without a limit)."""
    members = select(project_members.c.project_id).where(project_members.c.user_id == who.id)
    query = (
        select(
            projects.c.id,
            projects.c.name,
            projects.c.description,
            projects.c.created_at,
            users.c.name.label("owner"),
        )
        .join(users, users.c.id == projects.c.owner_id)
        .order_by(projects.c.id.desc())
        .offset(offset)
        .limit(limit)
    )
    if who.role != "admin":
        query = query.where(or_(projects.c.owner_id == who.id, projects.c.id.in_(members)))
    if mine:
        query = query.where(projects.c.owner_id == who.id)
    if search:
        held = search.lower()  # `%` and `_` in it are themselves, not LIKE's wildcards
        described = func.lower(projects.c.description).contains(held, autoescape=True)
        query = query.where(
            or_(func.lower(projects.c.name).contains(held, autoescape=True), described)
        )
    found = [dict(r._mapping) for r in conn.execute(query)]
    counts = dict(
        conn.execute(
            select(project_sites.c.project_id, func.count())
            .where(project_sites.c.project_id.in_([p["id"] for p in found]))
            .group_by(project_sites.c.project_id)
        ).all()
    )
    return [p | {"sites": counts.get(p["id"], 0)} for p in found]


def project_sites_state(conn: Connection, project_id: int, seen: dict[int, float]) -> list[dict]:
    """Each invited site: its state in the project, its own status and when it last polled."""
    rows = conn.execute(
        select(
            sites.c.id,
            sites.c.name,
            sites.c.status,
            project_sites.c.status.label("state"),
            project_sites.c.updated_at,
        )
        .join(sites, sites.c.id == project_sites.c.site_id)
        .where(project_sites.c.project_id == project_id)
        .order_by(sites.c.name)
    )
    return [dict(r._mapping) | {"last_seen": seen.get(r.id)} for r in rows]


def project_tasks(conn: Connection, project_id: int) -> list[dict[str, Any]]:
    """The project's proposed tasks, each with every invited site's decision (or "pending")."""
    invited = [
        name
        for (name,) in conn.execute(
            select(sites.c.name)
            .join(project_sites, project_sites.c.site_id == sites.c.id)
            .where(project_sites.c.project_id == project_id)
            .order_by(sites.c.name)
        )
    ]
    decided: dict[int, dict[str, tuple[str, str]]] = {}
    for task_id, name, decision, reason in conn.execute(
        select(task_decisions.c.task_id, sites.c.name, task_decisions.c.decision)
        .add_columns(task_decisions.c.reason)
        .join(sites, sites.c.id == task_decisions.c.site_id)
        .join(tasks, tasks.c.id == task_decisions.c.task_id)
        .where(tasks.c.project_id == project_id)
    ):
        decided.setdefault(task_id, {})[name] = (decision, reason)
    out = []
    for task in conn.execute(
        select(tasks).where(tasks.c.project_id == project_id).order_by(tasks.c.id)
    ):
        made = decided.get(task.id, {})
        out.append(
            {
                "hash": task.hash,
                "kind": task.kind,
                "spec": orjson.loads(task.spec),
                "decisions": {n: made.get(n, ("pending", "")) for n in invited},
                "approved": sorted(n for n, (d, _) in made.items() if d == "approved"),
            }
        )
    return out


def project_queries(conn: Connection, project_id: int) -> list[dict[str, Any]]:
    """The project's cohort queries, newest first, with how many sites answered."""
    answered = (
        select(query_results.c.query_id, func.count().label("n"))
        .group_by(query_results.c.query_id)
        .subquery()
    )
    rows = conn.execute(
        select(queries.c.id, queries.c.name, queries.c.created_at, answered.c.n)
        .outerjoin(answered, answered.c.query_id == queries.c.id)
        .where(queries.c.project_id == project_id)
        .order_by(queries.c.id.desc())
    )
    return [dict(r._mapping) for r in rows]


def project_runs(conn: Connection, project_id: int) -> list[dict[str, Any]]:
    """The project's runs, newest first."""
    rows = conn.execute(
        select(runs.c.id, runs.c.status, runs.c.rounds, runs.c.runtime, runs.c.created_at)
        .add_columns(tasks.c.hash)
        .join(tasks, tasks.c.id == runs.c.task_id)
        .where(runs.c.project_id == project_id)
        .order_by(runs.c.id.desc())
    )
    return [dict(r._mapping) for r in rows]


def all_users(conn: Connection) -> list[dict[str, Any]]:
    """Every user, for the admin: role, site, whether revoked, whether TOTP is on."""
    rows = conn.execute(
        select(
            users.c.id,
            users.c.name,
            users.c.role,
            users.c.created_at,
            users.c.revoked_at,
            users.c.totp_enabled_at,
            sites.c.name.label("site"),
        )
        .outerjoin(sites, sites.c.id == users.c.site_id)
        .order_by(users.c.name)
    )
    return [dict(r._mapping) for r in rows]


#: Seconds since an agent's last poll under which it counts as connected, then as late.
CONNECTED_SECONDS = 120
LATE_SECONDS = 3600


def health(last_seen: float | None, ledger_problem: bool, at: float) -> str:
    """A site's connection health: `ledger problem` (a signed head that did not extend the
    one before), else by its last poll: `connected`, `late`, `silent` or `never`."""
    if ledger_problem:
        return "ledger problem"
    if last_seen is None:
        return "never"
    if at - last_seen < CONNECTED_SECONDS:
        return "connected"
    return "late" if at - last_seen < LATE_SECONDS else "silent"


def all_sites(conn: Connection, seen: dict[int, float]) -> list[dict[str, Any]]:
    """Every site, for the admin: when its agent last polled this hub, its newest signed
    ledger head, its health, and when a pending site's enrolment token ends."""
    newest = (
        select(site_heads.c.site_id, func.max(site_heads.c.received_at).label("head_at"))
        .group_by(site_heads.c.site_id)
        .subquery()
    )
    broken = select(site_heads.c.site_id).where(site_heads.c.problem.is_not(None))
    rows = conn.execute(
        select(
            sites.c.id,
            sites.c.name,
            sites.c.status,
            sites.c.created_at,
            sites.c.enrolment_expires_at,
            newest.c.head_at,
            sites.c.id.in_(broken).label("ledger_problem"),
        )
        .outerjoin(newest, newest.c.site_id == sites.c.id)
        .order_by(sites.c.name)
    )
    at = time.time()
    out = []
    for r in rows:
        last = seen.get(r.id)
        state = health(last, bool(r.ledger_problem), at)
        ends = r.enrolment_expires_at
        expired = ends is not None and ends <= now()
        out.append(
            dict(r._mapping) | {"last_seen": last, "health": state, "enrolment_expired": expired}
        )
    return out


def audit_page(conn: Connection, before: int | None, size: int = 50) -> list[dict[str, Any]]:
    """`size` audit entries, newest first, before seq `before` (or the newest)."""
    query = select(audit).order_by(audit.c.seq.desc()).limit(size)
    if before is not None:
        query = query.where(audit.c.seq < before)
    return [dict(r._mapping) for r in conn.execute(query)]


def own_account(conn: Connection, user_id: int) -> dict[str, Any]:
    """What the account page shows: when TOTP was turned on, and the user's API tokens
    (`api_tokens.listed`)."""
    totp = conn.execute(select(users.c.totp_enabled_at).where(users.c.id == user_id)).scalar()
    return {"totp_enabled_at": totp, "tokens": api_tokens.listed(conn, user_id)}
