"""The site's data report: rows per table, quarantine by rule, unmapped codes, quality checks."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from flip.data.cdm import schema
from flip.data.cdm.store import Store
from flip.data.validate.quality import CHECKED_TABLES, run_checks

SAMPLES = 20


def build_report(store: Store, top_unmapped: int = 50) -> dict[str, Any]:
    """Everything `flip site report` shows, as one JSON-ready dict."""
    s = schema
    with store.connect() as conn:
        tables = {
            name: int(
                conn.execute(select(func.count()).select_from(s.metadata.tables[name])).scalar_one()
            )
            for name in s.CLINICAL_TABLES
        }
        q = s.quarantine
        by_rule = dict(conn.execute(select(q.c.rule, func.count()).group_by(q.c.rule)).all())
        samples = [
            dict(r._mapping)
            for r in conn.execute(
                select(q.c.rule, q.c.location, q.c.message).order_by(q.c.rule).limit(SAMPLES)
            )
        ]
        unmapped = []
        for name in CHECKED_TABLES:
            table = s.metadata.tables[name]
            columns = s.EVENT_COLUMNS[name]
            source = table.c[f"{columns.prefix}_source_value"]
            rows = conn.execute(
                select(source, func.count())
                .where(table.c[columns.concept] == 0)
                .group_by(source)
                .order_by(func.count().desc())
                .limit(top_unmapped)
            )
            unmapped.extend({"table": name, "source_value": v, "rows": int(n)} for v, n in rows)
        r = s.ingest_run
        runs = [
            {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row._mapping.items()}
            for row in conn.execute(select(r).order_by(r.c.started_at.desc()).limit(10))
        ]
    unmapped.sort(key=lambda u: -u["rows"])
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "tables": tables,
        "quarantine": {"total": sum(by_rule.values()), "by_rule": by_rule, "samples": samples},
        "unmapped": unmapped[:top_unmapped],
        "checks": [c.as_dict() for c in run_checks(store)],
        "ingest_runs": runs,
    }


_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:70rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0}
td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:left;font-size:.9rem}
th{background:#f2f2f2}td.n{text-align:right}
.PASS{color:#1a7f37;font-weight:600}.FAIL{color:#cf222e;font-weight:600}
"""


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for value in row:
            css = ' class="n"' if isinstance(value, int | float) else ""
            if value in ("PASS", "FAIL"):
                css = f' class="{value}"'
            cells.append(f"<td{css}>{html.escape(str(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def render_html(report: dict[str, Any]) -> str:
    """A self-contained HTML page (inline CSS, no scripts, no external files)."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>FLIP site data report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>FLIP site data report</h1>",
        f"<p>Generated {html.escape(report['generated_at'])}.</p>",
        "<h2>Rows per table</h2>",
        _table(["table", "rows"], [[t, n] for t, n in report["tables"].items()]),
        "<h2>Quality checks</h2>",
        _table(
            ["check", "category", "table", "failed", "checked", "status", "what"],
            [
                [
                    c["name"],
                    c["category"],
                    c["table"],
                    c["failed"],
                    c["total"],
                    c["status"],
                    c["description"],
                ]
                for c in report["checks"]
            ],
        ),
        f"<h2>Quarantine ({report['quarantine']['total']} records)</h2>",
        _table(
            ["rule", "records"],
            [[k, v] for k, v in sorted(report["quarantine"]["by_rule"].items())],
        ),
        _table(
            ["rule", "location", "message"],
            [[q["rule"], q["location"], q["message"]] for q in report["quarantine"]["samples"]],
        ),
        "<h2>Unmapped codes</h2>",
        _table(
            ["table", "source value", "rows"],
            [[u["table"], u["source_value"], u["rows"]] for u in report["unmapped"]],
        ),
        "<h2>Recent ingest runs</h2>",
        _table(
            ["source", "kind", "status", "read", "loaded", "unchanged", "quarantined", "started"],
            [
                [
                    r["source_uri"],
                    r["source_kind"],
                    r["status"],
                    r["records_read"],
                    r["records_loaded"],
                    r["records_unchanged"],
                    r["records_quarantined"],
                    r["started_at"],
                ]
                for r in report["ingest_runs"]
            ],
        ),
        "</body></html>",
    ]
    return "\n".join(parts)
