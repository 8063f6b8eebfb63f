"""Run a Circe cohort expression on a store: OHDSI's own SQL (ohdsi-circepy), rendered for
the store's dialect, over temporary tables that vanish with the connection."""

from __future__ import annotations

import copy
from typing import Any

from sqlalchemy import Connection, text

from flip.data.cdm.store import Store

_DIALECTS = {"duckdb": "duckdb", "postgresql": "postgresql", "sqlite": "sqlite"}
_TARGET = "flip_circe_cohort"


def _schema(store: Store, dialect: str) -> str:
    if store.schema:
        return store.schema
    return "public" if dialect == "postgresql" else "main"


def _statements(expression: dict[str, Any], schema: str, dialect: str) -> list[str]:
    """The expression as SQL statements for `dialect`, writing to the temporary target table."""
    from circe.api import cohort_expression_from_json, build_cohort_query
    from circe.cohortdefinition import BuildExpressionQueryOptions
    from circe.sqlrender import render, split_sql, translate

    import json

    options = BuildExpressionQueryOptions()
    options.cdm_schema = options.vocabulary_schema = schema
    options.target_table = _TARGET
    options.cohort_id = 1
    parsed = cohort_expression_from_json(json.dumps(expression))
    sql = translate(render(build_cohort_query(parsed, options)), dialect, session_id="flipcirc")
    return [s for s in split_sql(sql) if s.strip()]


def _members(conn: Connection, statements: list[str]) -> frozenset[int]:
    conn.execute(text(f"DELETE FROM {_TARGET}"))
    for statement in statements:
        conn.exec_driver_sql(statement)
    return frozenset(r[0] for r in conn.execute(text(f"SELECT DISTINCT subject_id FROM {_TARGET}")))


def circe_steps(store: Store, expression: dict[str, Any]) -> list[frozenset[int]]:
    """The persons in the cohort with its first k inclusion rules, for k = 0 .. all rules.

    Step 0 is everyone the primary criteria (and any additional criteria) qualify; the
    last step is the cohort itself.
    """
    dialect = _DIALECTS.get(store.engine.dialect.name)
    if dialect is None:
        raise ValueError(f"Circe cohorts run on DuckDB, PostgreSQL or SQLite, not {store.engine.dialect.name}")
    schema = _schema(store, dialect)
    rules = expression.get("InclusionRules") or []
    steps = []
    with store.engine.connect() as conn:
        conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE {_TARGET} (cohort_definition_id INTEGER, subject_id BIGINT, "
            "cohort_start_date DATE, cohort_end_date DATE)"
        )
        try:
            for k in range(len(rules) + 1):
                partial = copy.deepcopy(expression)
                partial["InclusionRules"] = rules[:k]
                steps.append(_members(conn, _statements(partial, schema, dialect)))
        finally:
            conn.rollback()
    return steps
