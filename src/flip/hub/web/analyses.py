"""An analysis's page: each site's part and the combined result (Table 1, survival,
regression or a harmonisation report), under the API's rules."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from flip.hub.routes import analyses as api
from flip.hub.schemas import PathId
from flip.hub.web.pages import WebReader, WebRoute, page
from flip.hub.web.security import check_csrf
from flip.stats.tables import cox_title, not_combined_line, table1_rows

router = APIRouter(prefix="/analyses", route_class=WebRoute, dependencies=[Depends(check_csrf)])


def _num(value: Any) -> str:
    if value is None:
        return "-"
    return value if isinstance(value, str) else f"{value:.4g}"


def result_tables(kind: str, result: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The result as titled tables of text (header, rows)."""
    if result is None:
        return []
    if kind == "table1":
        header, rows = table1_rows(result)
        return [{"title": "Table 1", "header": header, "rows": rows}]
    if kind == "harmonisation":
        return _harmonisation(result)
    tables = []
    model = result if kind == "regression" else result.get("cox")
    if model and "coef" in model:
        rows = [
            [t, _num(c), _num(model["se"][t]), _num(model["p"][t])]
            for t, c in model["coef"].items()
        ]
        title = cox_title(model) if kind == "survival" else "Coefficients"
        tables.append({"title": title, "header": ["term", "coef", "se", "p"], "rows": rows})
    if kind == "survival":
        curves = {"combined": result["km"]["combined"], **result["km"]["sites"]}
        rows = [
            [name, _num(km["median"]), _num(km["survival"][-1] if km["survival"] else None)]
            for name, km in curves.items()
        ]
        rows.append(["log-rank p (between sites)", _num(result["logrank"]["p"]), ""])
        header = ["curve", "median", "S at last time"]
        tables.append({"title": "Kaplan-Meier", "header": header, "rows": rows})
    return tables


def _harmonisation(result: dict[str, Any]) -> list[dict[str, Any]]:
    sites = list(result["sites"])
    tables = [
        {
            "title": "Rows mapped to each concept",
            "header": ["concept", "name", *sites],
            "rows": [
                [cid, _concept_name(result, cid), *(str(by.get(s, 0)) for s in sites)]
                for cid, by in result["concepts"].items()
            ],
        }
    ]
    for site, found in result["sites"].items():
        rows = [
            [cid, code, str(n)]
            for cid, concept in found["concepts"].items()
            for code, n in concept["sources"].items()
        ]
        rows += [
            [f"unmapped in {table}", code, str(n)]
            for table, counts in found["tables"].items()
            for code, n in counts["unmapped"].items()
        ]
        header = ["concept", "source code (system|code)", "rows"]
        tables.append({"title": f"{site}: source codes", "header": header, "rows": rows})
    return tables


def _concept_name(result: dict[str, Any], cid: str) -> str:
    for found in result["sites"].values():
        name = found["concepts"].get(cid, {}).get("name")
        if name:
            return name
    return ""


@router.get("/{analysis_id}")
async def analysis_page(request: Request, analysis_id: PathId, who: WebReader):
    """An analysis: its hash, each site's part, and the combined result once complete."""
    found = await api.read_analysis(request, analysis_id, who)
    return page(
        request,
        "analysis.html",
        analysis=found,
        tables=result_tables(found.kind, found.result),
        not_combined=found.result and not_combined_line(found.result),
    )
