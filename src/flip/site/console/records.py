"""Read-only pages: the data (ingest runs, quarantine by rule with samples, quality checks,
unmapped codes), the ledger with its chain checked, and the agent's status."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from flip.config import SiteConfig
from flip.data.ledger import Ledger
from flip.site.console.pages import Admin, ConsoleRoute, csrf, page, site_of
from flip.site.status import AgentStatus, status_path

router = APIRouter(route_class=ConsoleRoute, dependencies=[Depends(csrf.check)])

#: Ledger entries the audit page shows, newest first.
AUDIT_ENTRIES = 200


def _report(site: SiteConfig) -> dict:
    from flip.data.cdm.store import open_store
    from flip.data.validate.report import build_report

    try:
        store = open_store(site.store, read_only=True)
        try:
            store.check()
            return {"report": build_report(store)}
        finally:
            store.close()
    except Exception as exc:  # a busy, missing or old store is shown, not raised
        return {"problem": f"the store cannot be read now ({type(exc).__name__}: {exc})"}


@router.get("/data")
async def data_page(request: Request, who: Admin):
    """The site's data report."""
    site = site_of(request)
    view = await run_in_threadpool(_report, site)
    return page(request, "data.html", store=site.store, **view)


def _audit(site: SiteConfig) -> dict:
    with Ledger(site.ledger) as ledger:
        entries = ledger.entries()
        broken = ledger.verify()
        problems = ledger.approval_problems()
    return {
        "entries": list(reversed(entries))[:AUDIT_ENTRIES],
        "total": len(entries),
        "broken": broken,
        "problems": problems,
    }


@router.get("/audit")
async def audit_page(request: Request, who: Admin):
    """The ledger, newest first, with its chain and approvals checked."""
    view = await run_in_threadpool(_audit, site_of(request))
    return page(request, "audit.html", **view)


@router.get("/agent")
def agent_page(request: Request, who: Admin):
    """Whether the agent reaches the hub, when it last polled, its last error."""
    site = site_of(request)
    with AgentStatus(status_path(site.ledger)) as status:
        agent = status.agent()
    return page(request, "agent.html", agent=agent, hub=site.hub)
