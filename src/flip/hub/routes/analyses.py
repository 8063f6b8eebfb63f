"""Federated analyses: a researcher asks a project's sites for one, each site releases its
aggregates (if it approved the analysis's hash), and the hub combines them round by round.

The hub sees only what `flip.stats.federated` says a round releases; it never reads a row.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Connection, Engine, func, insert, select, update

from flip.hub import audit, quotas
from flip.hub.auth import Principal, Reader, Researcher, Site
from flip.hub.db import analyses, analysis_releases, now, project_sites, projects, sites
from flip.hub.routes.projects import _visible
from flip.hub.schemas import AnalysisIn, AnalysisOut, AnalysisReleaseIn, PathId
from flip.hub.transactions import Conn, ReadConn, Writer, reading, writes
from flip.problems import one_line
from flip.stats.federated import combine_round, spec_hash
from flip.stats.releases import problems

router = APIRouter(tags=["analyses"])

#: The project statuses of a site that is asked for an analysis.
MEMBER = ("invited", "approved")

#: Analyses a project may have running at once (each is in its sites' every poll).
MAX_RUNNING = 50

#: How a site that did not answer a round within the analysis's timeout is shown.
SILENT = "silent"

#: How a site whose release could not be combined is shown (it is left out of the round).
MALFORMED = "malformed release"

#: How a site's own refusal is stored and shown (so that it never reads as the hub's labels).
REFUSED = "refused"


#: The labels a stored reason starts with: a refusal the site sent, or the hub's own.
HUB_LABELS = (f"{REFUSED}: ", f"{SILENT}:", MALFORMED)

#: How a site invited once the first round was over is shown: it is asked for nothing.
LATE = "not asked: joined after round 0"

#: How a member site that an admin disabled is shown: it is not asked, and not combined.
DISABLED = "disabled"

#: How a member site is shown that can answer nothing, by its status: not asked, not combined.
CANNOT_ANSWER = {"disabled": DISABLED, "pending": "not enrolled: asked nothing"}


def _members(conn: Connection, project_id: int) -> dict[int, str]:
    """The sites asked for a project's analyses (enrolled and not disabled), id -> name."""
    return {i: name for i, (name, why) in _member_sites(conn, project_id).items() if not why}


def _member_sites(conn: Connection, project_id: int) -> dict[int, tuple[str, str]]:
    """Every member site of a project, id -> (name, why it cannot answer, or "")."""
    rows = conn.execute(
        select(sites.c.id, sites.c.name, sites.c.status)
        .join(project_sites, project_sites.c.site_id == sites.c.id)
        .where(project_sites.c.project_id == project_id, project_sites.c.status.in_(MEMBER))
        .order_by(sites.c.name)
    )
    return {r.id: (r.name, CANNOT_ANSWER.get(r.status, "")) for r in rows}


@router.post("/projects/{project_id}/analyses", status_code=201)
@writes
def submit_analysis(
    project_id: PathId, body: AnalysisIn, conn: Conn, who: Researcher
) -> AnalysisOut:
    """Ask every site of the project for an analysis; each runs it once it approved its hash
    (409 over the project's MAX_RUNNING, 429 over its owner's)."""
    project = _visible(conn, project_id, who)
    running = conn.execute(
        select(func.count()).where(
            analyses.c.project_id == project_id, analyses.c.status == "running"
        )
    ).scalar_one()
    if running >= MAX_RUNNING:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"project {project_id} has {running} analyses running, the most it may: "
            "wait for one to finish",
        )
    owners = conn.execute(
        select(func.count())
        .select_from(analyses)
        .join(projects, projects.c.id == analyses.c.project_id)
        .where(projects.c.owner_id == project.owner_id, analyses.c.status == "running")
    ).scalar_one()
    quotas.refuse_over(
        owners,
        quotas.MAX_RUNNING_ANALYSES_PER_OWNER,
        "the projects of this project's owner have {count} analyses running, the most one "
        "user's projects may ({most}): wait for one to finish",
    )
    digest = spec_hash(body.spec)
    aid = conn.execute(
        insert(analyses).values(
            project_id=project_id,
            hash=digest,
            kind=body.spec["kind"],
            spec=orjson.dumps(body.spec).decode(),
            created_by=who.id,
            status="running",
            round=0,
            state="{}",
            timeout=body.timeout,
        )
    ).inserted_primary_key[0]
    audit.append(
        conn,
        who.label,
        "analysis.submit",
        f"analysis:{aid}",
        {"project": project_id, "hash": digest},
    )
    return _analysis_out(conn, aid)


@router.get("/projects/{project_id}/analyses")
async def list_analyses(project_id: PathId, request: Request, who: Reader) -> list[AnalysisOut]:
    """The project's analyses, newest first (a round past its timeout is closed first); each
    read is audited."""
    writer: Writer = request.app.state.writer
    await expire_overdue(request.app.state.engine, writer, project_id=project_id)

    def job(conn: Connection) -> list[AnalysisOut]:
        _visible(conn, project_id, who)
        ids = conn.execute(
            select(analyses.c.id)
            .where(analyses.c.project_id == project_id)
            .order_by(analyses.c.id.desc())
        ).scalars()
        found = [_analysis_out(conn, aid) for aid in ids]
        for a in found:
            audit.append(conn, who.label, "analysis.read", f"analysis:{a.id}")
        return found

    return await writer.run(job, wake=False)


@router.get("/analyses/{analysis_id}")
async def get_analysis(analysis_id: PathId, request: Request, who: Reader) -> AnalysisOut:
    """An analysis: each site's part, and the combined result once every site answered (or
    the round's timeout passed)."""
    return await read_analysis(request, analysis_id, who)


async def read_analysis(request: Request, analysis_id: int, who: Principal) -> AnalysisOut:
    """An analysis for one of its project's readers (404 to anyone else), its round closed
    first if past its timeout, and the read audited (`analysis.read`)."""
    writer: Writer = request.app.state.writer
    await expire_overdue(request.app.state.engine, writer, analysis_id=analysis_id)

    def job(conn: Connection) -> AnalysisOut:
        project_id = conn.execute(
            select(analyses.c.project_id).where(analyses.c.id == analysis_id)
        ).scalar()
        _visible(conn, project_id or 0, who, f"no analysis {analysis_id}")
        audit.append(conn, who.label, "analysis.read", f"analysis:{analysis_id}")
        return _analysis_out(conn, analysis_id)

    return await writer.run(job, wake=False)


def _overdue(
    conn: Connection, project_id: int | None = None, analysis_id: int | None = None
) -> list[int]:
    """The running analyses (of a project, or one) whose current round is past its timeout."""
    query = select(analyses.c.id, analyses.c.updated_at, analyses.c.timeout).where(
        analyses.c.status == "running"
    )
    if project_id is not None:
        query = query.where(analyses.c.project_id == project_id)
    if analysis_id is not None:
        query = query.where(analyses.c.id == analysis_id)
    at = now()
    return [r.id for r in conn.execute(query) if r.updated_at + timedelta(seconds=r.timeout) <= at]


async def expire_overdue(engine: Engine, writer: Writer, **where: int) -> None:
    """Close the rounds past their timeout (of the analyses `where` names, or all): the sites
    asked that did not answer are marked silent and the hub goes on with those that did."""

    def overdue() -> list[int]:
        with reading(engine) as conn:
            return _overdue(conn, **where)

    if await run_in_threadpool(overdue):
        await writer.run(lambda conn: _expire(conn, _overdue(conn, **where)))


def _expire(conn: Connection, ids: list[int]) -> None:
    """Mark silent the sites asked that have not answered each analysis's round, then
    combine the round; a model whose Newton round lost a site fails (every site that took
    part must answer each round)."""
    for analysis_id in ids:
        a = conn.execute(select(analyses).where(analyses.c.id == analysis_id)).one()
        members = _members(conn, a.project_id)
        asked = _asked(members, a)
        answered = set(
            conn.execute(
                select(analysis_releases.c.site_id).where(
                    analysis_releases.c.analysis_id == a.id, analysis_releases.c.round == a.round
                )
            ).scalars()
        )
        silent = sorted(asked - {members[s] for s in answered if s in members})
        reason = f"{SILENT}: no answer within {a.timeout} s"
        for site_id, name in members.items():
            if name in silent and site_id not in answered:
                conn.execute(
                    insert(analysis_releases).values(
                        analysis_id=a.id, site_id=site_id, round=a.round, refused=reason
                    )
                )
        detail = {"round": a.round, "silent": silent}
        audit.append(conn, "hub", "analysis.timeout", f"analysis:{a.id}", detail)
        if a.round > 0 and silent:
            _fail_model(
                conn,
                a,
                f"{', '.join(silent)} did not answer Newton round {a.round} within {a.timeout} s",
            )
        else:
            _combine_if_complete(conn, a)


def project_analyses(conn: Connection, project_id: int) -> list[dict[str, Any]]:
    """A project's analyses for its page: id, kind, hash, status, when; newest first."""
    rows = conn.execute(
        select(analyses.c.id, analyses.c.kind, analyses.c.hash, analyses.c.status)
        .add_columns(analyses.c.created_at)
        .where(analyses.c.project_id == project_id)
        .order_by(analyses.c.id.desc())
    )
    return [dict(r._mapping) for r in rows]


def _parts(conn: Connection, a: Any) -> dict[str, str]:
    """Each member site's part in an analysis, from its latest answer: waiting, released
    round N, refused with its reason, silent or malformed; or unable to answer (disabled,
    or not yet enrolled) while it runs, or if it never answered."""
    rows = conn.execute(
        select(analysis_releases.c.site_id, analysis_releases.c.round, analysis_releases.c.refused)
        .where(analysis_releases.c.analysis_id == a.id)
        .order_by(analysis_releases.c.round)
    ).all()
    latest = {r.site_id: r for r in rows}
    parts = {}
    for site_id, (name, unable) in _member_sites(conn, a.project_id).items():
        row = latest.get(site_id)
        if unable and (a.status == "running" or row is None):
            parts[name] = unable
        elif row is None and (a.status != "running" or a.round > 0):
            parts[name] = LATE  # every site asked answered round 0, or was marked silent
        elif row is None:
            parts[name] = "waiting"
        elif row.refused is not None and row.refused.startswith(HUB_LABELS):
            parts[name] = row.refused
        elif row.refused is not None:  # stored bare before refusals were stored labelled
            parts[name] = f"{REFUSED}: {row.refused}"
        else:
            parts[name] = f"released round {row.round}"
    return dict(sorted(parts.items()))


def _provenance(conn: Connection, a: Any, result: dict[str, Any]) -> dict[str, Any]:
    """What a completed result says of its sites: those combined, and each member left out
    (refused, silent, malformed, disabled, or one that released but withheld its part) with
    its reason, so a result never passes for everyone's."""
    parts = _parts(conn, a)
    left = {name: part for name, part in parts.items() if not part.startswith("released")}
    for name in _withheld(a.kind, result):
        if name in parts and name not in left:
            left[name] = WITHHELD[a.kind]
    combined = sorted(name for name in parts if name not in left)
    return {"combined_from": combined, "not_combined": dict(sorted(left.items()))}


#: Why a site that answered is still left out of a result: it released nothing to combine.
WITHHELD = {
    "regression": "withheld: too few complete rows or a small cell, so no part in the model",
    "survival": "withheld: too few events or censorings for one time bin",
    "table1": "withheld: too few values to release any column",
}


def _withheld(kind: str, result: dict[str, Any]) -> list[str]:
    """The sites a result names as having withheld their whole part: a regression's, a
    survival curve's (a site withheld from its group curves only, `NAME by group`, or whose
    curve is withheld but which takes part in the Cox model, is combined), or every column
    of a Table 1 (a site that released some column is combined)."""
    if kind not in WITHHELD:
        return []
    if kind == "table1":
        by_column = list((result.get("withheld") or {}).values())
        return sorted(set.intersection(*map(set, by_column))) if by_column else []
    in_cox = (result.get("cox") or {}).get("sites") or {} if kind == "survival" else {}
    named = result.get("withheld") or []
    return [name for name in named if isinstance(name, str) and name not in in_cox]


def _analysis_out(conn: Connection, analysis_id: int) -> AnalysisOut:
    a = conn.execute(select(analyses).where(analyses.c.id == analysis_id)).one()
    parts = _parts(conn, a)
    return AnalysisOut(
        id=a.id,
        project_id=a.project_id,
        kind=a.kind,
        hash=a.hash,
        status=a.status,
        round=a.round,
        timeout=a.timeout,
        sites=parts,
        result=None if a.result is None else orjson.loads(a.result),
        error=a.error,
        spec=orjson.loads(a.spec),
    )


@router.get("/agent/analyses", tags=["site agent"])
def open_analyses(conn: ReadConn, site: Site) -> list[dict[str, Any]]:
    """The analyses this site has yet to release the current round of (they also come with
    `GET /agent/work`; this is for agents that predate that)."""
    return open_analyses_by_site(conn, site.id).get(site.id, [])


def open_analyses_by_site(
    conn: Connection, site_id: int | None = None
) -> dict[int, list[dict[str, Any]]]:
    """Per site (the site `site_id`, or every site with some): the running analyses whose
    current round it is asked for and has yet to release or refuse."""
    member = select(project_sites.c.site_id, project_sites.c.project_id).where(
        project_sites.c.status.in_(MEMBER)
    )
    if site_id is not None:
        member = member.where(project_sites.c.site_id == site_id)
    member = member.subquery()
    running = conn.execute(
        select(member.c.site_id, sites.c.name.label("site_name"), analyses)
        .join_from(analyses, member, member.c.project_id == analyses.c.project_id)
        .join(sites, sites.c.id == member.c.site_id)
        .where(analyses.c.status == "running")
        .order_by(analyses.c.id)
    ).all()
    if not running:
        return {}
    answered = set(
        conn.execute(
            select(
                analysis_releases.c.site_id,
                analysis_releases.c.analysis_id,
                analysis_releases.c.round,
            ).where(analysis_releases.c.analysis_id.in_({a.id for a in running}))
        ).all()
    )
    out: dict[int, list[dict[str, Any]]] = {}
    for a in running:
        state = orjson.loads(a.state)
        asked = a.round == 0 or a.site_name in state.get("sites", [])
        if asked and (a.site_id, a.id, a.round) not in answered:
            out.setdefault(a.site_id, []).append(
                {
                    "id": a.id,
                    "project_id": a.project_id,
                    "hash": a.hash,
                    "spec": orjson.loads(a.spec),
                    "round": a.round,
                    "proposal": state.get("newton", {}).get("proposal"),
                }
            )
    return out


@router.post("/agent/analyses/{analysis_id}", status_code=204, tags=["site agent"])
async def release_analysis(
    analysis_id: PathId, body: AnalysisReleaseIn, request: Request, site: Site
) -> None:
    """Release this site's aggregates for the analysis's current round, or refuse it; once
    every site asked has answered the round, the hub combines it. A round past its timeout
    is closed first, so an answer that comes later is refused (409), never combined."""
    writer: Writer = request.app.state.writer
    await expire_overdue(request.app.state.engine, writer, analysis_id=analysis_id)
    await writer.run(lambda conn: _release(conn, analysis_id, body, site))


def _release(conn: Connection, analysis_id: int, body: AnalysisReleaseIn, site: Principal) -> None:
    a = conn.execute(select(analyses).where(analyses.c.id == analysis_id)).first()
    if a is None or site.id not in _members(conn, a.project_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no analysis {analysis_id} for this site")
    if a.status == "running" and a.round == body.round and _overdue(conn, analysis_id=a.id):
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"round {a.round} of analysis {analysis_id} is past its timeout: it is being closed",
        )
    if a.status != "running" or body.round != a.round:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"analysis {analysis_id} is {a.status} at round {a.round}, "
            f"not taking round {body.round}",
        )
    members = _members(conn, a.project_id)
    if members[site.id] not in _asked(members, a):
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"this site is not asked for round {a.round} of analysis {analysis_id} "
            "(it takes no part in the model)",
        )
    exists = conn.execute(
        select(analysis_releases.c.round).where(
            analysis_releases.c.analysis_id == analysis_id,
            analysis_releases.c.site_id == site.id,
            analysis_releases.c.round == a.round,
        )
    ).first()
    if exists is not None:
        return
    conn.execute(
        insert(analysis_releases).values(
            analysis_id=analysis_id,
            site_id=site.id,
            round=a.round,
            body=None if body.release is None else orjson.dumps(body.release).decode(),
            refused=None if body.refused is None else f"{REFUSED}: {body.refused}",
        )
    )
    action = "analysis.refuse" if body.refused is not None else "analysis.release"
    audit.append(conn, site.label, action, f"analysis:{analysis_id}", {"round": a.round})
    _combine_if_complete(conn, a)


def site_disabled(conn: Connection, site_id: int) -> None:
    """A site was disabled: the running analyses of its projects stop waiting for it. A first
    round goes on without it (combined once the others answered); a model it takes part in
    fails naming it (its rounds need every site that took part)."""
    name = conn.execute(select(sites.c.name).where(sites.c.id == site_id)).scalar_one()
    projects = select(project_sites.c.project_id).where(
        project_sites.c.site_id == site_id, project_sites.c.status.in_(MEMBER)
    )
    running = conn.execute(
        select(analyses).where(analyses.c.status == "running", analyses.c.project_id.in_(projects))
    ).all()
    for a in running:
        if a.round == 0:
            _combine_if_complete(conn, a)
        elif name in orjson.loads(a.state)["sites"]:
            _fail_model(conn, a, f"{name} was disabled in Newton round {a.round}")


def _asked(members: dict[int, str], a: Any) -> set[str]:
    """The names of the sites asked for the analysis's current round: every member for the
    first, then the sites that took part in the model."""
    return set(members.values()) if a.round == 0 else set(orjson.loads(a.state)["sites"])


def _fail_model(conn: Connection, a: Any, why: str) -> None:
    """Fail model analysis `a` mid-way, saying `why` (its rounds need every site)."""
    error = f"{why}: a model's rounds need every site that took part"
    conn.execute(
        update(analyses)
        .where(analyses.c.id == a.id)
        .values(status="failed", error=error, updated_at=now())
    )
    audit.append(conn, "hub", "analysis.failed", f"analysis:{a.id}")


def _combine_if_complete(conn: Connection, a: Any) -> None:
    """Combine the round once every site asked has answered it; a site whose release cannot
    be combined is left out with the reason (in a Newton round, that fails the model)."""
    members = _members(conn, a.project_id)
    state = orjson.loads(a.state)
    asked = _asked(members, a)
    rows = conn.execute(
        select(analysis_releases.c.site_id, analysis_releases.c.body).where(
            analysis_releases.c.analysis_id == a.id, analysis_releases.c.round == a.round
        )
    ).all()
    answered = {members[r.site_id]: r.body for r in rows if r.site_id in members}
    if not asked <= set(answered):
        return
    releases = {name: orjson.loads(b) for name, b in sorted(answered.items()) if b is not None}
    spec = orjson.loads(a.spec)
    bad = problems(spec, a.round, releases)
    values: dict[str, Any] = {"updated_at": now()}
    try:
        if bad and a.round > 0:
            named = "; ".join(f"{name}: {one_line(why)}" for name, why in sorted(bad.items()))
            raise ValueError(
                f"{MALFORMED} in Newton round {a.round} ({named}): "
                "a model's rounds need every site that took part"
            )
        _leave_out(conn, a, {v: k for k, v in members.items()}, bad)
        releases = {name: r for name, r in releases.items() if name not in bad}
        if not releases:
            raise ValueError("no site released its part (each refused, was silent or malformed)")
        state = combine_round(spec, {**state, "round": a.round}, releases)
    except (ValueError, ArithmeticError, LookupError, TypeError, AttributeError) as exc:
        values |= {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:2000]}
    else:
        values |= {"state": orjson.dumps(state).decode(), "round": state["round"]}
        if "result" in state:
            result = {**state["result"], **_provenance(conn, a, state["result"])}
            if result["combined_from"]:
                values |= {"status": "completed", "result": orjson.dumps(result).decode()}
            else:  # every site that answered withheld its part: nothing was combined
                left = "; ".join(f"{n}: {why}" for n, why in result["not_combined"].items())
                error = f"no site's part could be combined ({left})"[:2000]
                values |= {"status": "failed", "error": error}
    conn.execute(update(analyses).where(analyses.c.id == a.id).values(**values))
    if values.get("status"):
        audit.append(conn, "hub", f"analysis.{values['status']}", f"analysis:{a.id}")


def _leave_out(conn: Connection, a: Any, ids: dict[str, int], bad: dict[str, str]) -> None:
    """Record each malformed release as left out of the round, with its reason (its body is
    dropped: it is never combined), and audit it."""
    for name, why in sorted(bad.items()):
        reason = f"{MALFORMED}: {one_line(why)}"[:2000]
        conn.execute(
            update(analysis_releases)
            .where(
                analysis_releases.c.analysis_id == a.id,
                analysis_releases.c.site_id == ids[name],
                analysis_releases.c.round == a.round,
            )
            .values(body=None, refused=reason)
        )
        detail = {"round": a.round, "site": name, "reason": reason}
        audit.append(conn, "hub", "analysis.malformed", f"analysis:{a.id}", detail)
