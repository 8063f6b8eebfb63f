"""Projects, their invited sites, tasks, cohort queries and runs (the researcher's API)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, BackgroundTasks, HTTPException, Request, status
from sqlalchemy import Connection, case, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from flip.bounds import loads_finite
from flip.hub import access, audit, certificates, quotas
from flip.hub.auth import Principal, Reader, Researcher
from flip.hub.db import (
    now,
    project_members,
    project_sites,
    projects,
    queries,
    query_results,
    run_logs,
    run_rounds,
    run_sites,
    runs,
    sites,
    task_decisions,
    tasks,
    users,
)
from flip.hub.federation import Federation
from flip.hub.schemas import (
    InviteIn,
    MembersIn,
    PathId,
    ProjectIn,
    ProjectOut,
    QueryIn,
    QueryOut,
    RoundIn,
    RunIn,
    RunOut,
    RunStatusIn,
    SiteCountOut,
    TaskIn,
)
from flip.hub.transactions import Conn, ReadConn, writes
from flip.stats.attrition import combine_attrition, step_names

router = APIRouter(tags=["projects"])

#: Who may be a project's member (a viewer member reads it; the role matrix stops its writes).
MEMBER_ROLES = ("researcher", "viewer")

#: The ends of a deployment run only the hub's Flower federation records (with its results).
HUB_RECORDED = frozenset({"completed", "failed"})

_RECORDED_BY_HUB = (
    "run {run} is a deployment run: its rounds, results and end are recorded by the hub's "
    "Flower federation only (a researcher may start or cancel it)"
)

#: Tasks a project may have waiting for a site's decision at once: each is in that site's
#: every poll until it is decided (a person decides most), so the hub and the site read
#: them all again each time.
MAX_OPEN_TASKS = 50

RUN_TRANSITIONS = {
    "requested": {"running", "cancelled", "failed"},
    "running": {"completed", "failed", "cancelled"},
}


def _visible(conn: Connection, project_id: int, who: Principal, missing: str | None = None):
    """The project, if the caller is an admin, its owner or one of its members.

    To anyone else it does not exist: 404 (`missing`, or "no project N"), so ids
    cannot be walked to learn which projects there are.
    """
    row = conn.execute(select(projects).where(projects.c.id == project_id)).first()
    if row is not None and (
        who.role == "admin" or row.owner_id == who.id or who.id in _member_ids(conn, project_id)
    ):
        return row
    raise HTTPException(status.HTTP_404_NOT_FOUND, missing or f"no project {project_id}")


def _owned(conn: Connection, project_id: int, who: Principal):
    row = _visible(conn, project_id, who)
    if who.role != "admin" and row.owner_id != who.id:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only the project's owner may do this")
    return row


def _member_ids(conn: Connection, project_id: int) -> set[int]:
    query = select(project_members.c.user_id).where(project_members.c.project_id == project_id)
    return set(conn.execute(query).scalars())


def _members(conn: Connection, project_id: int) -> dict[str, int]:
    """The project's members' names and user ids, by name."""
    query = (
        select(users.c.name, users.c.id)
        .join(project_members, project_members.c.user_id == users.c.id)
        .where(project_members.c.project_id == project_id)
        .order_by(users.c.name)
    )
    return {row.name: row.id for row in conn.execute(query)}


def _member_names(conn: Connection, project_id: int) -> list[str]:
    return list(_members(conn, project_id))


def _site_statuses(conn: Connection, project_id: int) -> dict[str, str]:
    rows = conn.execute(
        select(sites.c.name, project_sites.c.status)
        .join(sites, sites.c.id == project_sites.c.site_id)
        .where(project_sites.c.project_id == project_id)
    )
    return dict(rows.all())


@router.post("/projects", status_code=201)
@writes
def create_project(body: ProjectIn, conn: Conn, who: Researcher) -> ProjectOut:
    """Create a project owned by the caller (429 once a researcher owns
    `quotas.MAX_PROJECTS_PER_USER`; admins are not counted)."""
    if who.role != "admin":
        mine = conn.execute(select(func.count()).where(projects.c.owner_id == who.id)).scalar_one()
        quotas.refuse_over(
            mine,
            quotas.MAX_PROJECTS_PER_USER,
            "you own {count} projects, the most one researcher may ({most}): ask an admin",
        )
    pid = conn.execute(
        insert(projects).values(name=body.name, description=body.description, owner_id=who.id)
    ).inserted_primary_key[0]
    audit.append(conn, who.label, "project.create", f"project:{pid}", {"name": body.name})
    return ProjectOut(
        id=pid, name=body.name, description=body.description, owner=who.name, members=[], sites={}
    )


@router.get("/projects/{project_id}")
def get_project(project_id: PathId, conn: ReadConn, who: Reader) -> ProjectOut:
    """A project and the status of each invited site (to its owner, members and admins)."""
    row = _visible(conn, project_id, who)
    owner = conn.execute(select(users.c.name).where(users.c.id == row.owner_id)).scalar_one()
    return ProjectOut(
        id=row.id,
        name=row.name,
        description=row.description,
        owner=owner,
        members=list(members := _members(conn, project_id)),
        member_ids=members,
        sites=_site_statuses(conn, project_id),
    )


@router.post("/projects/{project_id}/members")
@writes
def add_members(project_id: PathId, body: MembersIn, conn: Conn, who: Researcher) -> list[str]:
    """Add researchers or viewers by name (whatever its case): researchers may invite sites,
    propose tasks, query and run; viewers only read the project, its queries and its runs."""
    _owned(conn, project_id, who)
    found, missing = {}, []
    for asked in dict.fromkeys(body.users):
        row = conn.execute(
            access.by_name(select(users.c.id, users.c.name, users.c.role), asked)
        ).first()
        if row is None:
            missing.append(asked)
        else:
            found[row.name] = (row.id, row.role)
    missing.sort()
    if missing:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no such users: {', '.join(missing)}")
    wrong = sorted(name for name, (_, role) in found.items() if role not in MEMBER_ROLES)
    if wrong:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"only researchers and viewers can be project members: {', '.join(wrong)}",
        )
    current = _member_ids(conn, project_id)
    for name, (uid, _) in sorted(found.items()):
        if uid not in current:
            conn.execute(insert(project_members).values(project_id=project_id, user_id=uid))
            audit.append(
                conn, who.label, "project.member.add", f"project:{project_id}", {"user": name}
            )
    return _member_names(conn, project_id)


@router.delete("/projects/{project_id}/members/{member_id}", status_code=204)
@writes
def remove_member(project_id: PathId, member_id: PathId, conn: Conn, who: Researcher) -> None:
    """Take a member (by user id) off the project; what they did in it stays in the audit log."""
    _owned(conn, project_id, who)
    if member_id not in _member_ids(conn, project_id):
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"user {member_id} is not a member of project {project_id}"
        )
    conn.execute(
        delete(project_members).where(
            project_members.c.project_id == project_id, project_members.c.user_id == member_id
        )
    )
    audit.append(
        conn, who.label, "project.member.remove", f"project:{project_id}", {"user": member_id}
    )


@router.post("/projects/{project_id}/sites")
@writes
def invite_sites(project_id: PathId, body: InviteIn, conn: Conn, who: Researcher) -> dict[str, str]:
    """Invite enrolled sites by name; each decides for itself whether to take part."""
    _visible(conn, project_id, who)
    found = dict(
        conn.execute(select(sites.c.name, sites.c.id).where(sites.c.name.in_(body.sites))).all()
    )
    missing = sorted(set(body.sites) - set(found))
    if missing:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no such sites: {', '.join(missing)}")
    current = _site_statuses(conn, project_id)
    for name, sid in found.items():
        if name not in current:
            conn.execute(
                insert(project_sites).values(project_id=project_id, site_id=sid, status="invited")
            )
            audit.append(conn, who.label, "project.invite", f"project:{project_id}", {"site": name})
    return _site_statuses(conn, project_id)


@router.post("/projects/{project_id}/tasks", status_code=201)
@writes
def add_task(project_id: PathId, body: TaskIn, conn: Conn, who: Researcher) -> dict[str, object]:
    """Propose a task by its hash; sites recompute the hash and decide on it (409 while the
    project has MAX_OPEN_TASKS tasks a site has yet to decide, 429 while all its owner's
    projects have `quotas.MAX_OPEN_TASKS_PER_OWNER`)."""
    project = _visible(conn, project_id, who)
    if (waiting := _open_tasks(conn, project_id=project_id)) >= MAX_OPEN_TASKS:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"project {project_id} has {waiting} tasks its sites have yet to decide, the most "
            "it may: wait for their decisions",
        )
    owned = _open_tasks(conn, owner_id=project.owner_id)
    quotas.refuse_over(
        owned,
        quotas.MAX_OPEN_TASKS_PER_OWNER,
        "the projects of this project's owner have {count} tasks their sites have yet to "
        "decide, the most one user's projects may ({most}): wait for their decisions",
    )
    try:
        with conn.begin_nested():
            tid = conn.execute(
                insert(tasks).values(
                    project_id=project_id,
                    hash=body.hash,
                    kind=body.kind,
                    spec=orjson.dumps(body.spec).decode(),
                )
            ).inserted_primary_key[0]
    except IntegrityError:
        raise HTTPException(
            status.HTTP_409_CONFLICT, "this task is already in the project"
        ) from None
    audit.append(conn, who.label, "task.propose", f"project:{project_id}", {"hash": body.hash})
    return {"id": tid, "hash": body.hash}


def _open_tasks(conn: Connection, *, project_id: int | None = None, owner_id: int | None = None):
    """How many tasks of one project, or of every project one user owns, some invited or
    joined site has yet to decide (all of a project's while no site is: inviting one would
    put each in its polls)."""
    member = project_sites.c.status.in_(("invited", "approved"))
    sites_in = (
        select(project_sites.c.project_id, func.count().label("n"))
        .where(member)
        .group_by(project_sites.c.project_id)
        .subquery()
    )
    decided = (
        select(task_decisions.c.task_id, func.count().label("n"))
        .join(tasks, tasks.c.id == task_decisions.c.task_id)
        .join(
            project_sites,
            (project_sites.c.site_id == task_decisions.c.site_id)
            & (project_sites.c.project_id == tasks.c.project_id)
            & member,
        )
        .group_by(task_decisions.c.task_id)
        .subquery()
    )
    asked = func.coalesce(sites_in.c.n, 0)
    waiting = (
        select(func.count())
        .select_from(tasks)
        .join(projects, projects.c.id == tasks.c.project_id)
        .outerjoin(sites_in, sites_in.c.project_id == tasks.c.project_id)
        .outerjoin(decided, decided.c.task_id == tasks.c.id)
        .where(func.coalesce(decided.c.n, 0) < case((asked > 1, asked), else_=1))
    )
    if project_id is not None:
        waiting = waiting.where(tasks.c.project_id == project_id)
    if owner_id is not None:
        waiting = waiting.where(projects.c.owner_id == owner_id)
    return conn.execute(waiting).scalar_one()


@router.post("/projects/{project_id}/queries", status_code=201)
@writes
def create_query(project_id: PathId, body: QueryIn, conn: Conn, who: Researcher) -> QueryOut:
    """Ask every invited site for a cohort count."""
    _visible(conn, project_id, who)
    qid = conn.execute(
        insert(queries).values(
            project_id=project_id,
            name=body.name,
            created_by=who.id,
            definition=orjson.dumps(body.definition).decode(),
        )
    ).inserted_primary_key[0]
    audit.append(conn, who.label, "query.create", f"query:{qid}", {"project": project_id})
    return _query_out(conn, qid)


def _query_out(conn: Connection, query_id: int) -> QueryOut:
    q = conn.execute(select(queries).where(queries.c.id == query_id)).first()
    if q is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no query {query_id}")
    answered = conn.execute(
        select(sites.c.name, query_results)
        .join(sites, sites.c.id == query_results.c.site_id)
        .where(query_results.c.query_id == query_id)
    ).all()
    results = {
        r.name: SiteCountOut(
            count=r.count,
            suppressed=r.suppressed,
            threshold=r.threshold,
            error=r.error,
            histograms=orjson.loads(r.histograms),
            attrition=orjson.loads(r.attrition),
        )
        for r in answered
    }
    pending = sorted(set(_site_statuses(conn, q.project_id)) - set(results))
    steps = step_names(orjson.loads(q.definition))
    attrition = {name: None for name in pending} | {
        name: r.attrition if r.error is None and len(r.attrition) == len(steps) else None
        for name, r in results.items()
    }
    released = [r.count for r in results.values() if r.count is not None]
    complete = (
        bool(results)
        and not pending
        and all(not r.suppressed and r.error is None for r in results.values())
    )
    return QueryOut(
        id=q.id,
        project_id=q.project_id,
        name=q.name,
        results=results,
        pending=pending,
        total=sum(released) if complete else None,
        histograms=_combined(list(results.values())) if complete else {},
        steps=steps,
        attrition=combine_attrition(attrition, len(steps)) if steps else [],
    )


def _combined(results: list[SiteCountOut]) -> dict[str, dict[str, int | None]]:
    """Each breakdown's bins summed over sites; None where any site suppressed (or lacks) it."""
    out: dict[str, dict[str, int | None]] = {}
    for by in sorted({by for r in results for by in r.histograms}):
        names = sorted({name for r in results for name in r.histograms.get(by, {})})
        out[by] = {}
        for name in names:
            counts = [
                r.histograms[by].get(name, 0) if by in r.histograms else None for r in results
            ]
            out[by][name] = None if None in counts else sum(c or 0 for c in counts)
    return out


@router.get("/queries/{query_id}")
@writes(wake=False)
def get_query(query_id: PathId, conn: Conn, who: Reader) -> QueryOut:
    """A query's per-site counts as the sites released them (to those who see its project)."""
    project_id = conn.execute(select(queries.c.project_id).where(queries.c.id == query_id)).scalar()
    _visible(conn, project_id or 0, who, f"no query {query_id}")
    out = _query_out(conn, query_id)
    audit.append(conn, who.label, "query.read", f"query:{query_id}")
    return out


@router.post("/projects/{project_id}/runs", status_code=201)
@writes
def create_run(project_id: PathId, body: RunIn, conn: Conn, who: Researcher) -> RunOut:
    """Request a training run of a proposed task; each site joins only if it approved it."""
    _visible(conn, project_id, who)
    task = conn.execute(
        select(tasks.c.id, tasks.c.spec).where(
            tasks.c.project_id == project_id, tasks.c.hash == body.task_hash
        )
    ).first()
    if task is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such task in this project")
    strategy = _task_strategy(task.spec)
    if body.strategy is not None and body.strategy != strategy:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"strategy {body.strategy!r}: the task approved by the sites names {strategy!r}",
        )
    approved = _task_rounds(task.spec)
    if approved is not None and body.rounds > approved:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"rounds {body.rounds}: the task approved by the sites has {approved} rounds, "
            "and each site refuses any more",
        )
    rid = conn.execute(
        insert(runs).values(
            project_id=project_id,
            task_id=task.id,
            rounds=body.rounds,
            strategy=strategy,
            runtime=body.runtime,
            status="requested",
        )
    ).inserted_primary_key[0]
    audit.append(
        conn, who.label, "run.request", f"run:{rid}", {**body.model_dump(), "strategy": strategy}
    )
    return _run_out(conn, rid)


def _task_strategy(spec: str) -> str:
    """The strategy a task's spec names (FedAvg when it names none)."""
    named = orjson.loads(spec).get("strategy")
    return str(named.get("name", "fedavg")) if isinstance(named, dict) else "fedavg"


def _task_rounds(spec: str) -> int | None:
    """The rounds a task's spec approves, or None when it names none (no limit)."""
    rounds = orjson.loads(spec).get("rounds")
    return rounds if isinstance(rounds, int) and not isinstance(rounds, bool) else None


def _run_out(conn: Connection, run_id: int) -> RunOut:
    row = conn.execute(
        select(runs, tasks.c.hash)
        .join(tasks, tasks.c.id == runs.c.task_id)
        .where(runs.c.id == run_id)
    ).first()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no run {run_id}")
    site_rows = conn.execute(
        select(sites.c.name, run_sites.c.status, run_sites.c.reason)
        .join(sites, sites.c.id == run_sites.c.site_id)
        .where(run_sites.c.run_id == run_id)
    )
    rounds = conn.execute(
        select(run_rounds.c.metrics)
        .where(run_rounds.c.run_id == run_id)
        .order_by(run_rounds.c.round)
    )
    logs: dict[str, list[dict[str, Any]]] = {}
    shared = conn.execute(
        select(sites.c.name, run_logs.c.seq, run_logs.c.at, run_logs.c.action, run_logs.c.detail)
        .join(sites, sites.c.id == run_logs.c.site_id)
        .where(run_logs.c.run_id == run_id)
        .order_by(sites.c.name, run_logs.c.seq)
    )
    for name, seq, at, action, detail in shared:
        entry = {"seq": seq, "at": at, "action": action, "detail": orjson.loads(detail)}
        logs.setdefault(name, []).append(entry)
    return RunOut(
        id=row.id,
        project_id=row.project_id,
        task_hash=row.hash,
        rounds=row.rounds,
        strategy=row.strategy,
        runtime=row.runtime,
        status=row.status,
        sites={n: {"status": s, "reason": r} for n, s, r in site_rows},
        round_metrics=[loads_finite(m) for (m,) in rounds],
        results=orjson.loads(row.results) if row.results else None,
        logs=logs,
    )


@router.get("/runs/{run_id}")
@writes(wake=False)
def get_run(run_id: PathId, conn: Conn, who: Reader) -> RunOut:
    """A run: its state, which sites joined or refused, round metrics and results."""
    _run_visible(conn, run_id, who)
    out = _run_out(conn, run_id)
    audit.append(conn, who.label, "run.read", f"run:{run_id}")
    return out


@router.get("/runs/{run_id}/certificate")
@writes(wake=False)
def get_certificate(run_id: PathId, conn: Conn, who: Reader) -> dict[str, Any]:
    """A completed run's certificate, signed by the hub, with the sites' countersignatures so
    far: `flip verify` checks it offline."""
    _run_visible(conn, run_id, who)
    found = certificates.document(conn, run_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"run {run_id} has no certificate (yet)")
    audit.append(conn, who.label, "run.certificate.read", f"run:{run_id}")
    return found


def _run_visible(conn: Connection, run_id: int, who: Principal):
    """The run, if the caller sees its project; else 404."""
    row = conn.execute(select(runs).where(runs.c.id == run_id)).first()
    _visible(conn, row.project_id if row else 0, who, f"no run {run_id}")
    return row


@router.post("/runs/{run_id}/rounds", status_code=204)
@writes
def add_round(run_id: PathId, body: RoundIn, conn: Conn, who: Researcher) -> None:
    """Record one round's aggregated metrics, as the federated server reports them (a
    deployment run's come from the hub's own Flower federation only: 409)."""
    row = _run_visible(conn, run_id, who)
    if row.runtime == "deployment":
        raise HTTPException(status.HTTP_409_CONFLICT, _RECORDED_BY_HUB.format(run=run_id))
    if row.status != "running":
        raise HTTPException(status.HTTP_409_CONFLICT, f"run {run_id} is {row.status}, not running")
    values = {"run_id": run_id, "round": body.round, "metrics": orjson.dumps(body.metrics).decode()}
    try:
        with conn.begin_nested():
            conn.execute(insert(run_rounds).values(**values))
    except IntegrityError:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"round {body.round} is already recorded"
        ) from None


@router.post("/runs/{run_id}/status")
@writes
def set_run_status(
    run_id: PathId,
    body: RunStatusIn,
    conn: Conn,
    who: Researcher,
    request: Request,
    background: BackgroundTasks,
) -> RunOut:
    """Move a run along its state machine: requested -> running -> completed/failed/cancelled.

    A deployment run that becomes running trains on the hub's Flower SuperLink: the
    hub submits it once this answer is sent and records its rounds and its end (a caller
    who completes or fails it, or sends results, gets 409). One
    cancelled while running is stopped there, and its sites' SuperNodes stop.
    """
    row = _run_visible(conn, run_id, who)
    if row.runtime == "deployment" and (body.status in HUB_RECORDED or body.results is not None):
        raise HTTPException(status.HTTP_409_CONFLICT, _RECORDED_BY_HUB.format(run=run_id))
    federation: Federation | None = request.app.state.federation
    deployed = body.status == "running" and row.runtime == "deployment"
    if deployed and federation is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            "this hub runs no Flower SuperLink for deployment runs "
            "(start it with `flip hub serve --flower`)",
        )
    if body.status not in RUN_TRANSITIONS.get(row.status, set()):
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"a {row.status} run cannot become {body.status}"
        )
    if body.status == "running":
        joined = conn.execute(
            select(run_sites.c.site_id).where(
                run_sites.c.run_id == run_id, run_sites.c.status == "joined"
            )
        ).first()
        if joined is None:
            raise HTTPException(status.HTTP_409_CONFLICT, "no site has joined this run")
    values: dict[str, object] = {"status": body.status, "updated_at": now()}
    if body.results is not None:
        values["results"] = orjson.dumps(body.results).decode()
    conn.execute(update(runs).where(runs.c.id == run_id).values(**values))
    audit.append(conn, who.label, f"run.{body.status}", f"run:{run_id}")
    if federation is not None and row.runtime == "deployment":
        if deployed:
            background.add_task(federation.submit, run_id)
        elif body.status == "cancelled" and row.status == "running":
            background.add_task(federation.cancel, run_id)
    return _run_out(conn, run_id)
