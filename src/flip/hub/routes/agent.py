"""The site agent's API: pending work, released counts, decisions and run replies.

Every call is authenticated by the site's credential and touches only that site's rows.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Hashable
from functools import partial
from typing import Annotated

import orjson
from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import (
    BindParameter,
    Connection,
    Engine,
    Insert,
    Select,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from flip.fl.runtime.flower import DeploymentError
from flip.hub import anchors, audit, certificates
from flip.hub.auth import Principal, Site, new_token, principal, token_hash
from flip.hub.db import (
    now,
    project_sites,
    projects,
    queries,
    query_results,
    run_logs,
    run_sites,
    runs,
    sites,
    task_decisions,
    tasks,
    users,
)
from flip.hub.federation import Federation
from flip.hub.routes.analyses import open_analyses_by_site
from flip.hub.schemas import (
    AnchorIn,
    AnchorOut,
    CountersignIn,
    DecisionIn,
    FlowerOut,
    HubHeadsIn,
    HubHeadsOut,
    NodeKeyIn,
    PathId,
    RunLogIn,
    RunReplyIn,
    SiteCountIn,
    TokenOut,
    WorkOut,
)
from flip.hub.transactions import Conn, ReadConn, WriteTurns, reading, writes
from flip.stats.attrition import step_names

router = APIRouter(prefix="/agent", tags=["site agent"])


def _member_projects(site_id: int | BindParameter) -> Select:
    """The projects a site (its id, or a bound parameter) is invited to or has joined."""
    return select(project_sites.c.project_id).where(
        project_sites.c.site_id == site_id, project_sites.c.status.in_(("invited", "approved"))
    )


@router.get("/work")
async def work(
    request: Request,
    site: Site,
    wait: Annotated[
        float,
        Query(
            ge=0, le=60, description="Hold the request up to this many seconds until work comes."
        ),
    ] = 0,
    training: Annotated[
        list[int],
        Query(description="The deployment runs the agent serves now; a change ends a long poll."),
    ] = [],  # noqa: B006 - FastAPI copies defaults per request
) -> WorkOut:
    """What this site has yet to do: queries to answer, tasks to decide, runs to reply to,
    analysis rounds to release, and the running deployment runs it joined, with where its
    SuperNode connects.

    With `wait`, a long poll: the hub answers as soon as there is work, or the runs
    to serve differ from `training`, or with nothing after `wait` seconds.
    """
    turns: WriteTurns = request.app.state.turns
    federation: Federation | None = request.app.state.federation
    request.app.state.seen[site.id] = time.time()
    deadline = time.monotonic() + wait
    while True:
        generation = turns.generation
        engine = request.app.state.engine
        read = partial(_open_work, engine, site)
        key = ("work", site.id)
        every = partial(_every_site_work, engine)
        found = await request.app.state.fresh.get(key, read, key, read_all=every)
        left = deadline - time.monotonic()
        changed = set(found.train) != set(training)
        pending = found.queries or found.tasks or found.runs or found.analyses
        if pending or changed or left <= 0:
            if federation is not None:
                return found.model_copy(update={"flower": FlowerOut(**federation.info())})
            return found
        await turns.wait(generation, left)
        await principal(request)  # a site disabled while it waited gets a 401, not work


def own_work(arguments: dict) -> tuple[str, int]:
    """What a site's own report changes: its own pending work, nobody else's."""
    return ("work", arguments["site"].id)


def _open_work(engine: Engine, site: Principal) -> WorkOut:
    with reading(engine) as conn:
        return _work(conn, site)


@router.post("/node-key", status_code=204)
async def register_node_key(request: Request, body: NodeKeyIn, site: Site) -> None:
    """Register this site's SuperNode public key with the hub's SuperLink (again is a no-op)."""
    federation: Federation | None = request.app.state.federation
    if federation is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            "this hub runs no Flower SuperLink (start it with `flip hub serve --flower`)",
        )
    try:
        await run_in_threadpool(federation.register, site.name, body.public_key.strip())
    except DeploymentError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc


def _work(conn: Connection, site: Principal) -> WorkOut:
    """One site's pending work."""
    return _works(conn, site.id).get(site.id) or _no_work()


def _no_work() -> WorkOut:
    return WorkOut(queries=[], tasks=[], runs=[], analyses=[])


def _every_site_work(engine: Engine) -> dict[Hashable, WorkOut]:
    """Every site's pending work, read in six statements, keyed as the work cache keys it."""
    with reading(engine) as conn:
        found = _works(conn)
        every = conn.execute(select(sites.c.id)).scalars()
        return {("work", site_id): found.get(site_id) or _no_work() for site_id in every}


#: The oldest unanswered queries a site is sent in one poll (the agent answers or refuses each,
#: so the next poll brings the next): a project's thousands of queries, or a site invited to
#: a project that has them, made one poll carry every definition.
QUERIES_PER_POLL = 100


def _work_statements(one_site: bool) -> tuple[Select, Select, Select, Select]:
    """The four reads of pending work (queries, tasks, runs, training), built once each.

    With `one_site` they read the site bound as `site_id`; otherwise every site's.
    """
    member = project_sites.alias("member")

    def of(statement: Select) -> Select:
        statement = statement.where(member.c.status.in_(("invited", "approved")))
        return statement.where(member.c.site_id == bindparam("site_id")) if one_site else statement

    answered = query_results.alias("answered")
    place = func.row_number().over(partition_by=member.c.site_id, order_by=queries.c.id)
    unanswered = of(
        select(member.c.site_id, queries.c.id, queries.c.project_id, queries.c.name)
        .add_columns(queries.c.definition, place.label("place"))
        .join_from(queries, member, member.c.project_id == queries.c.project_id)
        .outerjoin(
            answered,
            (answered.c.query_id == queries.c.id) & (answered.c.site_id == member.c.site_id),
        )
        .where(answered.c.query_id.is_(None))
    ).subquery()
    open_queries = (
        select(*(unanswered.c[n] for n in ("site_id", "id", "project_id", "name", "definition")))
        .where(unanswered.c.place <= QUERIES_PER_POLL)
        .order_by(unanswered.c.id)
    )
    decided = task_decisions.alias("decided")
    open_tasks = of(
        select(member.c.site_id, tasks.c.project_id, tasks.c.hash, tasks.c.kind, tasks.c.spec)
        .add_columns(projects.c.name.label("project_name"), users.c.name.label("owner"))
        .join_from(tasks, member, member.c.project_id == tasks.c.project_id)
        .join(projects, projects.c.id == tasks.c.project_id)
        .join(users, users.c.id == projects.c.owner_id)
        .outerjoin(
            decided, (decided.c.task_id == tasks.c.id) & (decided.c.site_id == member.c.site_id)
        )
        .where(decided.c.task_id.is_(None))
        .order_by(tasks.c.id)
    )
    replied = run_sites.alias("replied")
    open_runs = of(
        select(member.c.site_id, runs.c.id, runs.c.project_id, runs.c.rounds, tasks.c.hash)
        .join_from(runs, tasks, tasks.c.id == runs.c.task_id)
        .join(member, member.c.project_id == runs.c.project_id)
        .outerjoin(
            replied, (replied.c.run_id == runs.c.id) & (replied.c.site_id == member.c.site_id)
        )
        .where(runs.c.status == "requested", replied.c.run_id.is_(None))
        .order_by(runs.c.id)
    )
    training = (
        select(run_sites.c.site_id, runs.c.id)
        .join(runs, run_sites.c.run_id == runs.c.id)
        .where(
            run_sites.c.status == "joined",
            runs.c.status == "running",
            runs.c.runtime == "deployment",
        )
        .order_by(runs.c.id)
    )
    if one_site:
        training = training.where(run_sites.c.site_id == bindparam("site_id"))
    return open_queries, open_tasks, open_runs, training


_ONE_SITE_WORK = _work_statements(one_site=True)
_EVERY_SITE_WORK = _work_statements(one_site=False)


def _works(conn: Connection, site_id: int | None = None) -> dict[int, WorkOut]:
    """Pending work of the site `site_id`, or of every site with some, by site id."""
    statements = _EVERY_SITE_WORK if site_id is None else _ONE_SITE_WORK
    bound = {} if site_id is None else {"site_id": site_id}
    open_queries, open_tasks, open_runs, training = (
        conn.execute(statement, bound).all() for statement in statements
    )
    works: defaultdict[int, WorkOut] = defaultdict(_no_work)
    for site, run_id in training:
        works[site].train.append(run_id)
    for q in open_queries:
        works[q.site_id].queries.append(
            {
                "id": q.id,
                "project_id": q.project_id,
                "name": q.name,
                "definition": orjson.loads(q.definition),
            }
        )
    for t in open_tasks:
        works[t.site_id].tasks.append(
            {
                "project_id": t.project_id,
                "hash": t.hash,
                "kind": t.kind,
                "spec": orjson.loads(t.spec),
                "project_name": t.project_name,
                "researcher": t.owner,
            }
        )
    for r in open_runs:
        works[r.site_id].runs.append(
            {"id": r.id, "project_id": r.project_id, "rounds": r.rounds, "task_hash": r.hash}
        )
    for site, items in open_analyses_by_site(conn, site_id).items():
        works[site].analyses.extend(items)
    return dict(works)


#: The query `query_id`, if the site `site_id` is in its project.
_QUERY_FOR_SITE = select(queries.c.id).where(
    queries.c.id == bindparam("query_id"),
    queries.c.project_id.in_(_member_projects(bindparam("site_id"))),
)


def _insert_answer(dialect: str) -> Insert:
    """Insert the site's answer to `query_id` if the site is in its project and has not
    answered it yet; returns the query id when it inserted."""
    insert_into = postgresql.insert if dialect == "postgresql" else sqlite.insert
    site_id = bindparam("site_id")
    names = ("count", "suppressed", "threshold", "error", "histograms", "attrition")
    answer = select(
        queries.c.id, site_id, *(bindparam(n, type_=query_results.c[n].type) for n in names)
    ).where(
        queries.c.id == bindparam("query_id"),
        queries.c.project_id.in_(_member_projects(site_id)),
    )
    return (
        insert_into(query_results)
        .from_select(["query_id", "site_id", *names], answer)
        .on_conflict_do_nothing()
        .returning(query_results.c.query_id)
    )


_INSERT_ANSWER = {dialect: _insert_answer(dialect) for dialect in ("postgresql", "sqlite")}


@router.post("/queries/{query_id}", status_code=204)
@writes(scope=own_work)
def answer_query(query_id: PathId, body: SiteCountIn, conn: Conn, site: Site) -> None:
    """Release this site's (already suppressed) count for a query, with a Circe cohort's
    attrition (none, or one value per step); answering twice is a no-op."""
    if body.attrition:
        definition = conn.execute(
            select(queries.c.definition).where(queries.c.id == query_id)
        ).scalar()
        steps = step_names(orjson.loads(definition)) if definition is not None else []
        if len(body.attrition) != len(steps):
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"the attrition has {len(body.attrition)} steps; query {query_id} has {len(steps)}",
            )
    values = body.model_dump() | {
        "histograms": orjson.dumps(body.histograms).decode(),
        "attrition": orjson.dumps(body.attrition).decode(),
    }
    params = {"query_id": query_id, "site_id": site.id, **values}
    if conn.execute(_INSERT_ANSWER[conn.dialect.name], params).first() is None:
        if conn.execute(_QUERY_FOR_SITE, params).first() is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no query {query_id} for this site")
        return
    audit.append(
        conn, site.label, "query.answer", f"query:{query_id}", {"suppressed": body.suppressed}
    )


@router.post("/decisions", status_code=204)
@writes(scope=own_work)
def decide(body: DecisionIn, conn: Conn, site: Site) -> None:
    """Report a task decision (recorded at the site first); approving one joins the project."""
    task = conn.execute(
        select(tasks.c.id).where(
            tasks.c.project_id == body.project_id,
            tasks.c.hash == body.task_hash,
            tasks.c.project_id.in_(_member_projects(site.id)),
        )
    ).first()
    if task is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such task in a project this site is in")
    conn.execute(
        delete(task_decisions).where(
            task_decisions.c.task_id == task.id, task_decisions.c.site_id == site.id
        )
    )
    conn.execute(
        insert(task_decisions).values(
            task_id=task.id, site_id=site.id, decision=body.decision, reason=body.reason
        )
    )
    if body.decision == "approved":
        conn.execute(
            update(project_sites)
            .where(
                project_sites.c.project_id == body.project_id,
                project_sites.c.site_id == site.id,
                project_sites.c.status == "invited",
            )
            .values(status="approved", updated_at=now())
        )
    audit.append(
        conn,
        site.label,
        f"task.{body.decision}",
        f"project:{body.project_id}",
        {"hash": body.task_hash, "reason": body.reason},
    )


@router.post("/runs/{run_id}", status_code=204)
@writes(scope=own_work)
def reply_run(run_id: PathId, body: RunReplyIn, conn: Conn, site: Site) -> None:
    """Join or refuse a requested run; the first reply stands."""
    run = conn.execute(
        select(runs.c.id, runs.c.status).where(
            runs.c.id == run_id, runs.c.project_id.in_(_member_projects(site.id))
        )
    ).first()
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no run {run_id} for this site")
    done = conn.execute(
        select(run_sites.c.status).where(
            run_sites.c.run_id == run_id, run_sites.c.site_id == site.id
        )
    ).first()
    if done is not None:
        return
    if run.status != "requested":
        raise HTTPException(status.HTTP_409_CONFLICT, f"run {run_id} is {run.status}")
    conn.execute(
        insert(run_sites).values(
            run_id=run_id, site_id=site.id, status=body.status, reason=body.reason
        )
    )
    audit.append(conn, site.label, f"run.{body.status}", f"run:{run_id}", {"reason": body.reason})


@router.post("/runs/{run_id}/log", status_code=204)
@writes(scope=own_work)
def share_run_log(run_id: PathId, body: RunLogIn, conn: Conn, site: Site) -> None:
    """Entries of the site's own log of a run it joined (a site that refused it, or has not
    replied, shares none: 404); an entry sent again is kept once."""
    joined = conn.execute(
        select(run_sites.c.status).where(
            run_sites.c.run_id == run_id, run_sites.c.site_id == site.id
        )
    ).scalar()
    if joined != "joined":
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"this site has not joined run {run_id}")
    seen = set(
        conn.execute(
            select(run_logs.c.seq).where(run_logs.c.run_id == run_id, run_logs.c.site_id == site.id)
        ).scalars()
    )
    fresh = {e.seq: e for e in body.entries if e.seq not in seen}
    if fresh:
        rows = [
            {
                "run_id": run_id,
                "site_id": site.id,
                "seq": e.seq,
                "at": e.at,
                "action": e.action,
                "detail": orjson.dumps(e.detail, option=orjson.OPT_SORT_KEYS).decode(),
            }
            for e in fresh.values()
        ]
        conn.execute(insert(run_logs), rows)
        audit.append(conn, site.label, "run.log", f"run:{run_id}", {"entries": len(fresh)})


@router.post("/credential")
@writes
def rotate_credential(conn: Conn, site: Site) -> TokenOut:
    """A new credential for the calling site; the old one stops working."""
    credential = new_token("flip_s")
    conn.execute(
        update(sites).where(sites.c.id == site.id).values(credential_hash=token_hash(credential))
    )
    audit.append(conn, site.label, "site.credential.rotate", f"site:{site.name}")
    return TokenOut(id=site.id, name=site.name, token=credential)


@router.post("/anchor")
@writes(wake=False)
def anchor(body: AnchorIn, conn: Conn, site: Site, request: Request) -> AnchorOut:
    """Keep this site's signed ledger head if it extends the last one kept (a break is
    audited and reported back); the reply carries the hub's own signed head to keep."""
    try:
        return anchors.record_site_head(conn, site, body, request.app.state.signing_key)
    except anchors.AnchorError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc


@router.post("/hub-heads/check")
def check_hub_heads(body: HubHeadsIn, conn: ReadConn, site: Site, request: Request) -> HubHeadsOut:
    """Whether the hub's audit chain still holds each signed head a site kept."""
    state = request.app.state
    problems = anchors.check_hub_heads(conn, body.heads, state.signing_key, state.retired_keys)
    return HubHeadsOut(ok=not problems, problems=problems)


@router.post("/certificates/{run_id}", status_code=204)
@writes(wake=False)
def countersign(run_id: PathId, body: CountersignIn, conn: Conn, site: Site) -> None:
    """Countersign run `run_id`'s certificate, once this site has checked its own part."""
    problem = certificates.countersign(conn, site.id, site.name, run_id, body.signature)
    if problem is not None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, problem)
    audit.append(conn, site.label, "run.certificate.countersign", f"run:{run_id}")
