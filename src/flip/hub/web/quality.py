"""The network data-quality page: each site's released aggregates side by side."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError

from flip.hub.routes.quality import network_quality
from flip.hub.schemas import QualityReport
from flip.hub.web.pages import WebReader, WebRoute, page, read
from flip.hub.web.security import check_csrf

router = APIRouter(prefix="/quality", route_class=WebRoute, dependencies=[Depends(check_csrf)])


def _fraction(found: dict[str, Any] | None) -> str:
    """A released share as a percentage with its rows, or why there is none."""
    if found is None:
        return "-"
    if found["share"] is None:
        if not found["rows"]:
            return "no rows"
        part = "withheld" if found["part"] is None else found["part"]
        return f"withheld ({part} of {found['rows']})"
    return f"{100 * found['share']:.1f}% of {found['rows']}"


def _check(found: dict[str, Any] | None) -> str:
    if found is None:
        return "-"
    failed = "withheld" if found["failed"] is None else found["failed"]
    return f"{found['status']}: {failed} of {found['checked']}"


def sections(network: dict[str, Any]) -> list[dict[str, Any]]:
    """The page's tables: a row per check, rule, field or table, a column per site."""
    reports = {name: found["report"] for name, found in network.items()}

    def rows(pick, cell) -> list[list[str]]:
        keys = sorted({k for r in reports.values() for k in pick(r)})
        return [[k, *(cell(pick(r).get(k)) for r in reports.values())] for k in keys]

    checks = {name: {c["name"]: c for c in r["checks"]} for name, r in reports.items()}
    return (
        [
            {
                "title": "Quality checks (failed of checked)",
                "rows": rows(lambda r: {c["name"]: c for c in r["checks"]}, _check),
            },
            {
                "title": "Completeness per field",
                "rows": rows(lambda r: r["completeness"], _fraction),
            },
            {"title": "Unmapped codes per table", "rows": rows(lambda r: r["unmapped"], _fraction)},
            {
                "title": "Numeric measurements with a unit",
                "rows": [["all measurements", *(_fraction(r["units"]) for r in reports.values())]],
            },
            {
                "title": "Quarantined records per rule",
                "rows": rows(lambda r: r["quarantine"], lambda n: "0" if n is None else str(n)),
            },
        ]
        if checks
        else []
    )


def readable(network: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The sites whose kept report has the shape the page reads, and the names of those whose
    report does not (kept by an earlier hub that did not check it): one cannot break the page."""
    good, bad = {}, []
    for name, found in network.items():
        try:
            QualityReport.model_validate(found["report"])
        except ValidationError:
            bad.append(name)
        else:
            good[name] = found
    return good, bad


@router.get("")
async def quality_page(request: Request, who: WebReader):
    """Every site's released data-quality aggregates, side by side."""
    network, unreadable = readable(await read(request, network_quality))
    return page(
        request,
        "quality.html",
        sites=list(network),
        released={name: found["released_at"] for name, found in network.items()},
        sections=sections(network),
        unreadable=unreadable,
    )
