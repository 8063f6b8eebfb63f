"""The network data-quality view: each site's released data-quality aggregates side by side."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter
from sqlalchemy import Connection, delete, insert, select

from flip.hub import audit
from flip.hub.auth import Reader, Site
from flip.hub.db import site_quality, sites
from flip.hub.schemas import QualityIn
from flip.hub.transactions import Conn, ReadConn, writes

router = APIRouter(tags=["data quality"])


@router.post("/agent/quality", status_code=204, tags=["site agent"])
@writes
def release_quality(body: QualityIn, conn: Conn, site: Site) -> None:
    """Keep this site's latest data-quality aggregates (suppressed at the site)."""
    conn.execute(delete(site_quality).where(site_quality.c.site_id == site.id))
    conn.execute(
        insert(site_quality).values(
            site_id=site.id, report=orjson.dumps(body.report.model_dump()).decode()
        )
    )
    audit.append(conn, site.label, "quality.release", f"site:{site.id}")


def network_quality(conn: Connection) -> dict[str, Any]:
    """Every site's latest released aggregates, by site name."""
    rows = conn.execute(
        select(sites.c.name, site_quality.c.report, site_quality.c.released_at)
        .join(sites, sites.c.id == site_quality.c.site_id)
        .order_by(sites.c.name)
    )
    return {
        name: {"released_at": at.isoformat(timespec="seconds"), "report": orjson.loads(report)}
        for name, report, at in rows
    }


@router.get("/quality")
def get_quality(conn: ReadConn, who: Reader) -> dict[str, Any]:
    """Each site's data-quality aggregates as it released them, side by side."""
    return {"sites": network_quality(conn)}
