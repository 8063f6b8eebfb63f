"""The researcher's pages: projects, the cohort builder and its live answers, runs."""

from __future__ import annotations

from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, BackgroundTasks, Depends, Form, HTTPException, Query, Request, status
from fastapi.responses import Response
from sqlalchemy import select

from flip.hub import audit
from flip.hub.auth import Principal
from flip.hub.db import queries, sites, tasks
from flip.hub.routes import analyses as analyses_api
from flip.hub.routes import projects as api
from flip.hub.schemas import (
    InviteIn,
    MembersIn,
    PathId,
    ProjectIn,
    QueryIn,
    QueryOut,
    RunIn,
    RunStatusIn,
)
from flip.hub.transactions import reading
from flip.hub.web import concept_search, privacy, reads
from flip.hub.web.chart import bars_svg, metric_names, rounds_svg
from flip.hub.web.cohort_form import DOMAINS, ROWS, FormProblem, definition_from_form
from flip.hub.web.concept_search import Find
from flip.hub.web.live import stream
from flip.hub.web.pages import (
    WebReader,
    WebResearcher,
    WebRoute,
    home_for,
    page,
    read,
    templates,
    web_principal,
)
from flip.hub.web.security import check_csrf
from flip.hub.web.site_results import personalised, site_metrics
from flip.webkit.render import see_other

router = APIRouter(route_class=WebRoute, dependencies=[Depends(check_csrf)])


@router.get("/")
async def home(request: Request) -> Response:
    """The signed-in user's home page (`home_for` their role); else the sign-in page."""
    try:
        who = await web_principal(request)
    except HTTPException as exc:
        if exc.status_code == status.HTTP_401_UNAUTHORIZED:
            return see_other("/signin")
        raise
    return see_other(home_for(who.role))


#: Projects the list shows on one page.
PAGE_SIZE = 50


@router.get("/projects")
async def project_list(
    request: Request,
    who: WebReader,
    q: Annotated[str, Query(max_length=200)] = "",
    owner: Literal["", "me"] = "",
    page_number: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
):
    """The projects the user sees, newest first, PAGE_SIZE a page, searchable by name or
    description, and filtered to those they own (`owner=me`)."""
    found = await read(
        request,
        lambda conn: reads.visible_projects(
            conn,
            who,
            q.strip(),
            mine=owner == "me",
            limit=PAGE_SIZE + 1,
            offset=(page_number - 1) * PAGE_SIZE,
        ),
    )
    return page(
        request,
        "projects.html",
        projects=found[:PAGE_SIZE],
        q=q,
        owner=owner,
        page_number=page_number,
        more=len(found) > PAGE_SIZE,
    )


@router.post("/projects")
async def project_create(
    request: Request,
    who: WebResearcher,
    name: Annotated[str, Form()],
    description: Annotated[str, Form()] = "",
) -> Response:
    """Create a project owned by the user (the API's rule and audit entry)."""
    body = ProjectIn(name=name.strip(), description=description.strip())
    out = await api.create_project(body=body, who=who, request=request)
    return see_other(f"/projects/{out.id}")


@router.get("/projects/{project_id}")
async def project_page(request: Request, project_id: PathId, who: WebReader):
    """A project: members, invited sites and their state, tasks with each site's decision,
    queries, runs and the privacy budget they spent."""
    seen = request.app.state.seen

    def job(conn):
        project = api.get_project(project_id=project_id, conn=conn, who=who)
        active = conn.execute(
            select(sites.c.name).where(sites.c.status == "active").order_by(sites.c.name)
        ).scalars()
        return {
            "project": project,
            "sites": reads.project_sites_state(conn, project_id, seen),
            "tasks": reads.project_tasks(conn, project_id),
            "queries": reads.project_queries(conn, project_id),
            "runs": reads.project_runs(conn, project_id),
            "budget": privacy.project_budget(conn, project_id),
            "analyses": analyses_api.project_analyses(conn, project_id),
            # The API lists sites to admins only: others type the name they were given.
            "active_sites": [s for s in active if s not in project.sites]
            if who.role == "admin"
            else [],
        }

    return page(request, "project.html", **await read(request, job))


@router.post("/projects/{project_id}/sites")
async def invite(
    request: Request, project_id: PathId, who: WebResearcher, site: Annotated[str, Form()]
) -> Response:
    """Invite a site (the API's rule: any member who may write)."""
    await api.invite_sites(
        project_id=project_id, body=InviteIn(sites=[site.strip()]), who=who, request=request
    )
    return see_other(f"/projects/{project_id}")


@router.post("/projects/{project_id}/members")
async def add_member(
    request: Request, project_id: PathId, who: WebResearcher, user: Annotated[str, Form()]
) -> Response:
    """Add a researcher or viewer (the API's rule: the owner or an admin)."""
    await api.add_members(
        project_id=project_id, body=MembersIn(users=[user.strip()]), who=who, request=request
    )
    return see_other(f"/projects/{project_id}")


@router.get("/projects/{project_id}/cohort")
async def cohort_builder(
    request: Request, project_id: PathId, who: WebResearcher, find: Find = "", domain: str = ""
):
    """The cohort builder: criteria over every domain the sites' engine counts, JSON beside,
    and the concepts `find` names in the hub's vocabulary."""
    project = await read(request, lambda conn: api._visible(conn, project_id, who))
    return page(
        request,
        "cohort.html",
        project=project,
        domains=DOMAINS,
        rows=ROWS,
        definition="{}",
        **await concept_search.found(request, find, domain),
    )


@router.post("/projects/{project_id}/queries")
async def ask(request: Request, project_id: PathId, who: WebResearcher) -> Response:
    """Send the cohort (from the form, or the JSON box when it was edited) to every site."""
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    try:
        if form.get("mode") == "json":
            definition = orjson.loads(form.get("definition", "") or "{}")
            if not isinstance(definition, dict):
                raise FormProblem("definition: a JSON object")
        else:
            definition = definition_from_form(form)
    except (FormProblem, orjson.JSONDecodeError) as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    name = str(definition.get("name") or definition.get("Title") or form.get("name") or "cohort")[
        :200
    ]
    body = QueryIn(name=name, definition=definition)
    out = await api.create_query(project_id=project_id, body=body, who=who, request=request)
    return see_other(f"/queries/{out.id}")


def _audited(request: Request, job, who, action: str, target: str):
    """`job(conn)` and an audit entry of the read (as the API makes), in one write."""

    def run(conn):
        out = job(conn)
        audit.append(conn, who.label, action, target)
        return out

    return request.app.state.writer.run(run, wake=False)


def _query_view(conn, query_id: int, who) -> dict:
    project_id = conn.execute(select(queries.c.project_id).where(queries.c.id == query_id)).scalar()
    project = api._visible(conn, project_id or 0, who, f"no query {query_id}")
    definition = conn.execute(
        select(queries.c.definition).where(queries.c.id == query_id)
    ).scalar_one()
    found = api._query_out(conn, query_id)
    return {
        "query": found,
        "charts": {
            by: bars_svg(f"All sites by {by}", bins)
            for by, bins in sorted(found.histograms.items())
        },
        "project": project,
        "withheld_why": _withheld_why(found),
        "definition": orjson.dumps(orjson.loads(definition), option=orjson.OPT_INDENT_2).decode(),
    }


def _withheld_why(found: QueryOut) -> str:
    """Why a query's total is withheld, in words: the sites that failed, and those that
    suppressed a count below their threshold."""
    failed = sorted(name for name, r in found.results.items() if r.error)
    small = sorted(
        name
        for name, r in found.results.items()
        if not r.error and (r.suppressed or r.count is None)
    )
    why = []
    if failed:
        why.append(f"{', '.join(failed)} could not answer (failed)")
    if small:
        whose = "its" if len(small) == 1 else "their"
        why.append(f"{', '.join(small)} suppressed a count below {whose} threshold")
    return "; ".join(why) or "not every site's count was released"


@router.get("/queries/{query_id}")
async def query_page(request: Request, query_id: PathId, who: WebReader):
    """A query's answers: each site's count as released (`<N` when suppressed), the total
    only when nothing was withheld; live while sites answer."""
    view = await _audited(
        request,
        lambda conn: _query_view(conn, query_id, who),
        who,
        "query.read",
        f"query:{query_id}",
    )
    return page(request, "query.html", **view)


@router.get("/queries/{query_id}/events")
async def query_events(request: Request, query_id: PathId, who: WebReader):
    """The answers table, sent again each time a site answers, until every site has."""
    await _audited(
        request,
        lambda conn: _query_view(conn, query_id, who),
        who,
        "query.read",
        f"query:{query_id}",
    )

    return _live(
        request,
        who,
        lambda conn, now: _query_view(conn, query_id, now),
        "_answers.html",
        lambda view: not view["query"].pending,
    )


@router.post("/projects/{project_id}/runs")
async def run_start(
    request: Request,
    project_id: PathId,
    who: WebResearcher,
    task_hash: Annotated[str, Form()],
    rounds: Annotated[int, Form()],
    runtime: Annotated[str, Form()] = "simulation",
) -> Response:
    """Request a run of a task; the sites that approved it join."""
    body = RunIn(task_hash=task_hash.strip(), rounds=rounds, runtime=runtime)
    out = await api.create_run(project_id=project_id, body=body, who=who, request=request)
    return see_other(f"/runs/{out.id}")


def _run_view(conn, run_id: int, who) -> dict:
    row = api._run_visible(conn, run_id, who)
    run = api._run_out(conn, run_id)
    results = run.results if isinstance(run.results, dict) else {}
    model_id = results.get("model") if isinstance(results.get("model"), str) else None
    rows = site_metrics(results)
    return {
        "model_id": model_id,
        "model_onnx": model_id is not None and _task_kind(conn, row.task_id) != "custom",
        "run": run,
        "project_id": row.project_id,
        "chart": rounds_svg(run.round_metrics),
        "metric_names": metric_names(run.round_metrics),
        "site_metrics": rows,
        "personalised": personalised(rows),
    }


def _task_kind(conn, task_id: int) -> str:
    return str(conn.execute(select(tasks.c.kind).where(tasks.c.id == task_id)).scalar())


@router.get("/runs/{run_id}")
async def run_page(request: Request, run_id: PathId, who: WebReader):
    """A run: per-round chart, each site's status and shared log, results and downloads."""
    view = await _audited(
        request, lambda conn: _run_view(conn, run_id, who), who, "run.read", f"run:{run_id}"
    )
    return page(request, "run.html", **view)


@router.get("/runs/{run_id}/events")
async def run_events(request: Request, run_id: PathId, who: WebReader):
    """The run's live part (chart, sites), sent again on each change until it ends."""
    await _audited(
        request, lambda conn: _run_view(conn, run_id, who), who, "run.read", f"run:{run_id}"
    )

    return _live(
        request,
        who,
        lambda conn, now: _run_view(conn, run_id, now),
        "_run_live.html",
        lambda view: view["run"].status in ("completed", "failed", "cancelled"),
    )


def _live(request: Request, who: Principal, view_of, template: str, finished):
    """A stream of `template` rendered from a fresh `view_of(conn, user)` on each tick, for
    the user as they are then (role, membership), ending once `finished(view)` holds."""

    def render(now: Principal) -> tuple[str, bool]:
        with reading(request.app.state.engine) as conn:
            view = view_of(conn, now)
        return templates.get_template(template).render(**view), finished(view)

    return stream(request, who, render)


@router.post("/runs/{run_id}/status")
async def run_status(
    request: Request, run_id: PathId, who: WebResearcher, status_to: Annotated[str, Form()]
) -> Response:
    """Begin training (running) or stop (cancelled), by the API's state machine."""
    if status_to not in ("running", "cancelled"):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "status: running or cancelled")
    after = BackgroundTasks()
    body = RunStatusIn(status=status_to)
    await api.set_run_status(run_id=run_id, body=body, who=who, request=request, background=after)
    response = see_other(f"/runs/{run_id}")
    response.background = after
    return response


@router.get("/runs/{run_id}/results.json")
async def run_results(request: Request, run_id: PathId, who: WebReader) -> Response:
    """Download the run's state, round metrics and results as JSON."""
    view = await _audited(
        request, lambda conn: _run_view(conn, run_id, who), who, "run.read", f"run:{run_id}"
    )
    body = orjson.dumps(view["run"].model_dump(), option=orjson.OPT_INDENT_2)
    disposition = f'attachment; filename="flip-run-{run_id}.json"'
    headers = {"Content-Disposition": disposition}
    return Response(body, media_type="application/json", headers=headers)


@router.get("/runs/{run_id}/certificate.json")
async def run_certificate(request: Request, run_id: PathId, who: WebReader) -> Response:
    """Download the run's signed certificate (for `flip verify`)."""
    found = await api.get_certificate(run_id=run_id, who=who, request=request)
    disposition = f'attachment; filename="flip-run-{run_id}-certificate.json"'
    return Response(
        orjson.dumps(found, option=orjson.OPT_INDENT_2),
        media_type="application/json",
        headers={"Content-Disposition": disposition},
    )
