"""The site's data report: rows per table, counts per source, quarantine by rule with samples,
unmapped codes with their code system, unit coverage, value distributions and quality checks."""

from __future__ import annotations

import html
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select

from flip.data.cdm import schema
from flip.data.cdm.store import Store
from flip.data.validate.distributions import unit_coverage, value_distributions
from flip.data.validate.quality import CHECKED_TABLES, run_checks

#: Quarantine samples in all, and at most this many per rule.
SAMPLES = 20
SAMPLES_PER_RULE = 3
#: Ingest runs listed one by one.
RECENT_RUNS = 20


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
        runs = _runs(conn)
        sources = _sources(runs)
        unmapped_codes = _unmapped_codes(sources)
        report = {
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "tables": tables,
            "quarantine": {
                "total": sum(by_rule.values()),
                "by_rule": by_rule,
                "samples": _quarantine_samples(conn),
            },
            "unmapped": _unmapped_rows(conn, unmapped_codes, top_unmapped),
            "unmapped_codes": unmapped_codes[:top_unmapped],
            "unit_coverage": unit_coverage(conn),
            "distributions": value_distributions(conn),
            "sources": sources,
            "ingest_runs": runs[:RECENT_RUNS],
        }
    report["checks"] = [c.as_dict() for c in run_checks(store)]
    return report


def _quarantine_samples(conn: Connection) -> list[dict[str, Any]]:
    """Up to `SAMPLES_PER_RULE` quarantined records per rule, each a different record, every
    rule's first before any rule's second: one query, whatever the quarantine holds."""
    q = schema.quarantine
    record = func.coalesce(q.c.record_key, q.c.location)
    order = (q.c.location, q.c.record_key, q.c.quarantine_id)
    copies = select(
        q.c.rule,
        q.c.record_key,
        q.c.location,
        q.c.message,
        func.row_number().over(partition_by=(q.c.rule, record), order_by=order).label("copy"),
    ).subquery()
    firsts = (
        select(
            copies.c.rule,
            copies.c.record_key,
            copies.c.location,
            copies.c.message,
            func.row_number()
            .over(partition_by=copies.c.rule, order_by=(copies.c.location, copies.c.record_key))
            .label("nth"),
        )
        .where(copies.c.copy == 1)
        .subquery()
    )
    rows = conn.execute(
        select(firsts.c.rule, firsts.c.record_key, firsts.c.location, firsts.c.message)
        .where(firsts.c.nth <= SAMPLES_PER_RULE)
        .order_by(firsts.c.nth, firsts.c.rule)
        .limit(SAMPLES)
    )
    return [
        {"rule": rule, "record_key": key, "location": location, "message": message}
        for rule, key, location, message in rows
    ]


def _runs(conn: Connection) -> list[dict[str, Any]]:
    """Every ingest run, newest first, with its skipped records and warnings per rule."""
    r, t = schema.ingest_run, schema.ingest_tally
    tallies: dict[int, dict[str, dict[str, int]]] = {}
    for run_id, kind, rule, count in conn.execute(
        select(t.c.ingest_run_id, t.c.kind, t.c.rule, t.c.count)
    ):
        tallies.setdefault(run_id, {}).setdefault(kind, {})[rule] = int(count)
    runs = []
    for row in conn.execute(select(r).order_by(r.c.started_at.desc())):
        run = {
            k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row._mapping.items()
        }
        found = tallies.get(row.ingest_run_id, {})
        run["skipped_by_rule"] = found.get("skipped", {})
        run["warnings_by_rule"] = found.get("warning", {})
        run["unmapped_by_code"] = found.get("unmapped", {})
        runs.append(run)
    return runs


def _sources(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per source system (kind and URI for runs of stores older than schema v5), the counts
    of its latest run (a re-run reads it whole)."""
    latest: dict[str, dict[str, Any]] = {}
    count: Counter[str] = Counter()
    for run in runs:
        name = run.get("source_system") or f"{run['source_kind']}:{run['source_uri']}"
        count[name] += 1
        latest.setdefault(name, run)
    return [
        {
            "source": name,
            "source_kind": run["source_kind"],
            "source_uri": run["source_uri"],
            "runs": count[name],
            "latest_run_id": run["ingest_run_id"],
            "status": run["status"],
            "read": run["records_read"] or 0,
            "loaded": run["records_loaded"] or 0,
            "unchanged": run["records_unchanged"] or 0,
            "quarantined": run["records_quarantined"] or 0,
            "skipped": run["records_skipped"] or 0,
            "withdrawn": run["records_withdrawn"] or 0,
            "skipped_by_rule": run["skipped_by_rule"],
            "warnings_by_rule": run["warnings_by_rule"],
            "unmapped_by_code": run["unmapped_by_code"],
        }
        for name, run in sorted(latest.items())
    ]


def _unmapped_codes(sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Unmapped codes with their code system, from each source's latest run, most frequent first."""
    codes = [
        {
            "source": source["source"],
            "code_system": system,
            "code": code,
            "records": n,
        }
        for source in sources
        for key, n in source["unmapped_by_code"].items()
        for system, _, code in [key.rpartition("|")]
    ]
    return sorted(codes, key=lambda c: (-c["records"], c["code_system"], c["code"]))


def _unmapped_rows(conn: Connection, codes: list[dict[str, Any]], top: int) -> list[dict[str, Any]]:
    """Rows with concept_id 0 per table and source value, with the code system(s) that sent it."""
    s = schema
    systems: dict[str, set[str]] = {}
    for c in codes:
        systems.setdefault(c["code"][:50], set()).add(c["code_system"])
    unmapped = []
    for name in CHECKED_TABLES:
        table = s.metadata.tables[name]
        columns = s.EVENT_COLUMNS[name]
        source = table.c[f"{columns.prefix}_source_value"]
        source_concept = table.c.get(f"{columns.prefix}_source_concept_id")
        query = select(source, func.count()).select_from(table)
        if source_concept is not None:
            known = (s.concept.c.concept_id == source_concept) & (source_concept != 0)
            joined = table.outerjoin(s.concept, known)  # 0 is "no matching concept": no system
            query = query.add_columns(s.concept.c.vocabulary_id).select_from(joined)
            query = query.group_by(s.concept.c.vocabulary_id)
        rows = conn.execute(
            query.where(table.c[columns.concept] == 0)
            .group_by(source)
            .order_by(func.count().desc())
            .limit(top)
        )
        for value, n, *vocabulary_id in rows:
            known = vocabulary_id[0] if vocabulary_id else None
            system = known or "; ".join(sorted(systems.get(value or "", ()))) or "unknown"
            unmapped.append(
                {"table": name, "code_system": system, "source_value": value, "rows": int(n)}
            )
    unmapped.sort(key=lambda u: -u["rows"])
    return unmapped[:top]


_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:70rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0}
td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:left;font-size:.9rem}
th{background:#f2f2f2}td.n{text-align:right}
figure{margin:.5rem 0}figcaption{font-size:.8rem;color:#555}svg{max-width:100%;height:auto}
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


def _rules(counts: dict[str, int]) -> str:
    return ", ".join(f"{rule} {n}" for rule, n in sorted(counts.items())) or "-"


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _sources_section(report: dict[str, Any]) -> list[str]:
    from flip.data.validate import charts  # matplotlib: only when a page is drawn

    sources = report["sources"]
    parts = ["<h2>Counts per source (latest run of each)</h2>"]
    if sources:
        parts.append(_figure(charts.source_counts_svg(sources), "records per source"))
    parts.append(
        _table(
            [
                "source",
                "runs",
                "status",
                "read",
                "loaded",
                "unchanged",
                "quarantined",
                "skipped",
                "withdrawn",
                "skipped by rule",
                "warnings by rule",
            ],
            [
                [
                    s["source"],
                    s["runs"],
                    s["status"],
                    s["read"],
                    s["loaded"],
                    s["unchanged"],
                    s["quarantined"],
                    s["skipped"],
                    s["withdrawn"],
                    _rules(s["skipped_by_rule"]),
                    _rules(s["warnings_by_rule"]),
                ]
                for s in sources
            ],
        )
    )
    return parts


def _measurement_section(report: dict[str, Any]) -> list[str]:
    from flip.data.validate import charts  # matplotlib: only when a page is drawn

    units, spread = report["unit_coverage"], report["distributions"]
    share = "-" if units["share"] is None else f"{100 * units['share']:.1f}%"
    parts = [
        "<h2>Unit coverage</h2>",
        f"<p>{units['with_unit']} of {units['numeric']} numeric measurement rows ({share}) "
        "have a unit concept.</p>",
    ]
    if any(c["share"] is not None for c in units["by_concept"]):
        parts.append(_figure(charts.unit_coverage_svg(units["by_concept"]), "unit coverage"))
    parts.append(
        _table(
            ["concept", "concept_id", "rows", "numeric", "with unit", "share"],
            [
                [
                    c["concept_name"],
                    c["concept_id"],
                    c["rows"],
                    c["numeric"],
                    c["with_unit"],
                    "-" if c["share"] is None else c["share"],
                ]
                for c in units["by_concept"]
            ],
        )
    )
    parts.append("<h2>Value distributions per measurement concept</h2>")
    if spread:
        parts.append(_figure(charts.distributions_svg(spread), "values beyond Tukey's fences"))
    parts.append(
        _table(
            [
                "concept",
                "unit",
                "n",
                "min",
                "q1",
                "median",
                "q3",
                "max",
                "fences",
                "outliers",
                "most extreme",
            ],
            [
                [d["concept_name"], d["unit"], d["n"]]
                + [round(d[k], 3) for k in ("min", "q1", "median", "q3", "max")]
                + [f"{d['low_fence']:.3g} .. {d['high_fence']:.3g}", d["outliers"]]
                + [", ".join(f"{v:.4g}" for v in d["outlier_samples"])]
                for d in spread
            ],
        )
    )
    return parts


def render_html(report: dict[str, Any]) -> str:
    """A self-contained HTML page: inline CSS and SVG charts, no scripts, no external files."""
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
        *_sources_section(report),
        f"<h2>Quarantine ({report['quarantine']['total']} records)</h2>",
        _table(
            ["rule", "records"],
            [[k, v] for k, v in sorted(report["quarantine"]["by_rule"].items())],
        ),
        "<p>Samples, each a different record:</p>",
        _table(
            ["rule", "record", "location", "message"],
            [
                [q["rule"], q["record_key"] or "", q["location"], q["message"]]
                for q in report["quarantine"]["samples"]
            ],
        ),
        "<h2>Unmapped codes</h2>",
        _table(
            ["code system", "code", "records", "source"],
            [
                [u["code_system"], u["code"], u["records"], u["source"]]
                for u in report["unmapped_codes"]
            ],
        ),
        _table(
            ["table", "code system", "source value", "rows"],
            [
                [u["table"], u["code_system"], u["source_value"], u["rows"]]
                for u in report["unmapped"]
            ],
        ),
        *_measurement_section(report),
        "<h2>Recent ingest runs</h2>",
        _table(
            [
                "source",
                "kind",
                "status",
                "read",
                "loaded",
                "unchanged",
                "quarantined",
                "skipped",
                "withdrawn",
                "started",
            ],
            [
                [
                    r["source_uri"],
                    r["source_kind"],
                    r["status"],
                    r["records_read"],
                    r["records_loaded"],
                    r["records_unchanged"],
                    r["records_quarantined"],
                    r["records_skipped"],
                    r["records_withdrawn"],
                    r["started_at"],
                ]
                for r in report["ingest_runs"]
            ],
        ),
        "</body></html>",
    ]
    return "\n".join(parts)
