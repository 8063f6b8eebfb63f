"""The site's data-quality aggregates as it releases them to the hub's network view.

Counts per check and per quarantine rule, completeness per field, unmapped-code rates per
table and unit coverage: never a record, a sample or a source value. A count from 1 to the
site's smallest cell minus one is released as "<k", a part whose rest is such a count is
withheld (None), and a share only where neither its part nor the rest is such a count (a
share or a part beside its total would give the count away). Opted-out persons are left out.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from flip.data.cdm import schema
from flip.data.cdm.store import Store
from flip.data.cohort.optout import opted_out
from flip.data.validate.distributions import unit_coverage
from flip.data.validate.quality import CHECKED_TABLES, kept, run_checks
from flip.stats.suppression import hidden, is_small

#: Fields whose completeness the network view compares: (table, column); a concept column
#: counts as filled when it names a concept (not 0).
FIELDS = (
    ("person", "year_of_birth"),
    ("person", "gender_concept_id"),
    ("person", "race_concept_id"),
    ("person", "ethnicity_concept_id"),
    ("visit_occurrence", "visit_end_date"),
    ("condition_occurrence", "condition_end_date"),
    ("drug_exposure", "drug_exposure_end_date"),
    ("measurement", "value_as_number"),
    ("measurement", "unit_concept_id"),
    ("observation_period", "observation_period_end_date"),
)


def _cell(count: int, min_cell: int) -> int | str:
    return hidden(min_cell) if is_small(count, min_cell) else count


def _part(part: int, whole: int, min_cell: int) -> int | str | None:
    """The part as released: "<k" when small, withheld (None) when the rest is small (the
    whole beside it would tell the rest)."""
    if is_small(whole - part, min_cell):
        return None
    return _cell(part, min_cell)


def _share(part: int, whole: int, min_cell: int) -> float | None:
    """part / whole, unless the part or the rest is a suppressed count (or whole is 0)."""
    if not whole or is_small(part, min_cell) or is_small(whole - part, min_cell):
        return None
    return round(part / whole, 4)


def _fraction(part: int, whole: int, min_cell: int) -> dict[str, Any]:
    return {
        "rows": _cell(whole, min_cell),
        "part": _part(part, whole, min_cell),
        "share": _share(part, whole, min_cell),
    }


def quality_release(store: Store, min_cell: int) -> dict[str, Any]:
    """This site's data-quality aggregates, suppressed under its smallest cell, over every
    person but those who opted out (the store's quarantine holds no person, and is counted
    whole)."""
    s = schema
    with store.connect() as conn:
        excluded = opted_out(conn)
        completeness = {}
        for table_name, column_name in FIELDS:
            table = s.metadata.tables[table_name]
            column = table.c[column_name]
            filled = column.is_not(None)
            if column_name.endswith("_concept_id"):
                filled = filled & (column != 0)
            rows, part = conn.execute(
                select(func.count(), func.count().filter(filled))
                .select_from(table)
                .where(kept(table.c.person_id, excluded))
            ).one()
            completeness[f"{table_name}.{column_name}"] = _fraction(int(part), int(rows), min_cell)
        unmapped = {}
        for table_name in CHECKED_TABLES:
            table = s.metadata.tables[table_name]
            concept = table.c[s.EVENT_COLUMNS[table_name].concept]
            rows, part = conn.execute(
                select(func.count(), func.count().filter(concept == 0))
                .select_from(table)
                .where(kept(table.c.person_id, excluded))
            ).one()
            unmapped[table_name] = _fraction(int(part), int(rows), min_cell)
        q = s.quarantine
        by_rule = dict(conn.execute(select(q.c.rule, func.count()).group_by(q.c.rule)).all())
        units = unit_coverage(conn, excluded=excluded)
    return {
        "min_cell": min_cell,
        "checks": [
            {
                "name": c.name,
                "category": c.category,
                "table": c.table,
                "failed": _part(c.failed, c.total, min_cell),
                "checked": _cell(c.total, min_cell),
                "status": c.status,
            }
            for c in run_checks(store, excluded)
        ],
        "quarantine": {rule: _cell(int(n), min_cell) for rule, n in sorted(by_rule.items())},
        "completeness": completeness,
        "unmapped": unmapped,
        "units": {
            **_fraction(units["with_unit"], units["numeric"], min_cell),
            "by_concept": [
                {"concept_id": c["concept_id"], "concept_name": c["concept_name"]}
                | _fraction(c["with_unit"], c["numeric"], min_cell)
                for c in units["by_concept"]
                if c["concept_id"]
            ],
        },
    }
