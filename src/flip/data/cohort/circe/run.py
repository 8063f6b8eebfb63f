"""Run a Circe cohort expression on a store: OHDSI's own SQL (ohdsi-circepy), rendered for
the store's dialect, over temporary tables that vanish with the transaction."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection

from flip.data import deadline
from flip.data.cdm.store import Store
from flip.data.cohort.circe.supported import UnsupportedCirce

#: OHDSI's SQLite translation keeps dates as Julian day numbers, not the ISO text FLIP stores.
_DIALECTS = {"duckdb": "duckdb", "postgresql": "postgresql"}
_TARGET = "flip_circe_cohort"
#: Temporary tables the generated SQL drops at its end; kept to read each rule's matches.
_KEPT = ("qualified_events", "inclusion_events")


@dataclass(frozen=True)
class CirceRun:
    """Persons in the cohort, and after the primary criteria and each inclusion rule in turn;
    each member's first cohort start date (`starts`)."""

    members: frozenset[int]
    steps: list[frozenset[int]]
    starts: dict[int, date] = field(default_factory=dict)


def _schema(store: Store, dialect: str) -> str:
    if store.schema:
        return store.schema
    return "public" if dialect == "postgresql" else "main"


_EMPTYING = re.compile(
    rf"^\s*(drop\s+table|truncate\s+table|delete\s+from)\s+(temp\.)?({'|'.join(_KEPT)})\s*;?\s*$",
    re.IGNORECASE,
)


def _kept(statement: str) -> bool:
    return _EMPTYING.match(statement) is None


@lru_cache(maxsize=32)
def _statements(expression_json: str, schema: str, dialect: str) -> tuple[str, ...]:
    """The expression as SQL statements for `dialect`, writing to the temporary target table
    (cached). Each statement is translated on its own: OHDSI's translator tokenizes its whole
    input once per pattern it matches, so one script of N inclusion rules took time growing
    with N squared (38 s at 50 rules), statement by statement it grows with N."""
    from circe.api import build_cohort_query, cohort_expression_from_json
    from circe.cohortdefinition import BuildExpressionQueryOptions
    from circe.sqlrender import render, split_sql, translate

    options = BuildExpressionQueryOptions()
    options.cdm_schema = options.vocabulary_schema = schema
    options.target_table = _TARGET
    options.cohort_id = 1
    try:
        parsed = cohort_expression_from_json(expression_json)
        sql = []
        for statement in split_sql(render(build_cohort_query(parsed, options))):
            deadline.check()
            if statement.strip():
                sql.append(translate(f"{statement};", dialect, session_id="flipcirc"))
    except (RuntimeError, ValueError, TypeError, KeyError, AttributeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsupportedCirce(f"OHDSI's Circe cannot translate the expression: {reason}") from None
    return tuple(s for one in sql for s in split_sql(one) if s.strip() and _kept(s))


def _steps(conn: Connection, rules: int) -> list[frozenset[int]]:
    """Persons with a qualified event that meets rules 0 .. k-1, for k = 0 .. rules."""
    met: dict[tuple[int, int], set[int]] = {}
    for person, event in conn.exec_driver_sql("SELECT person_id, event_id FROM qualified_events"):
        met[(person, event)] = set()
    for rule, person, event in conn.exec_driver_sql(
        "SELECT inclusion_rule_id, person_id, event_id FROM inclusion_events"
    ):
        met.setdefault((person, event), set()).add(rule)
    return [
        frozenset(p for (p, _), rules_met in met.items() if set(range(k)) <= rules_met)
        for k in range(rules + 1)
    ]


def run_circe(store: Store, expression: dict[str, Any]) -> CirceRun:
    """Run the expression on the store; nothing is written to it."""
    dialect = _DIALECTS.get(store.engine.dialect.name)
    if dialect is None:
        raise ValueError(
            f"Circe cohorts run on DuckDB or PostgreSQL stores, not {store.engine.dialect.name}"
        )
    text = json.dumps(expression, sort_keys=True)
    statements = _statements(text, _schema(store, dialect), dialect)
    with store.engine.connect() as conn:
        try:
            conn.exec_driver_sql(
                f"CREATE TEMPORARY TABLE {_TARGET} (cohort_definition_id INTEGER, "
                "subject_id BIGINT, cohort_start_date DATE, cohort_end_date DATE)"
            )
            for statement in statements:
                deadline.check()
                conn.exec_driver_sql(statement)
            starts = {
                int(person): _date(start)
                for person, start in conn.exec_driver_sql(
                    f"SELECT subject_id, MIN(cohort_start_date) FROM {_TARGET} GROUP BY subject_id"
                )
            }
            steps = _steps(conn, len(expression.get("InclusionRules") or []))
        finally:
            conn.rollback()
    return CirceRun(frozenset(starts), steps, starts)


def _date(value: date | datetime | str) -> date:
    """A cohort start date as the driver gives it (a date, a timestamp or ISO text)."""
    if isinstance(value, datetime):
        return value.date()
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
