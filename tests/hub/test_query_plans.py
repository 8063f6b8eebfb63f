"""A site's poll finds its own pending work through indexes, not by reading every site's rows."""

from sqlalchemy import event, text

from flip.hub.auth import Principal, _callers
from flip.hub.db import connect
from flip.hub.routes.agent import _work

#: Tables with one row per (thing, site): a scan of one reads every site's rows.
PER_SITE = ("project_sites", "task_decisions", "query_results", "run_sites")


def test_a_sites_work_is_found_without_scanning_other_sites_rows(tmp_path):
    engine = connect(f"sqlite:///{tmp_path / 'hub.sqlite'}")
    statements: list[tuple[str, object]] = []

    def keep(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    site = Principal(kind="site", id=7, name="site-a", role="site")
    with engine.connect() as conn:
        event.listen(engine, "before_cursor_execute", keep)
        _work(conn, site)
        event.remove(engine, "before_cursor_execute", keep)
        plans = [
            " / ".join(row[3] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {s}", p))
            for s, p in statements
        ]
    assert len(plans) >= 3
    for plan in plans:
        for table in PER_SITE:
            assert f"SCAN {table}" not in plan, plan
    assert any("ix_project_sites_site" in plan for plan in plans)
    with engine.connect() as conn:
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    assert version >= "0008"  # migrated past 0008, which adds the per-site indexes
    engine.dispose()


def test_a_callers_token_is_found_in_one_statement_through_indexes(tmp_path):
    """Sessions, named API tokens and site credentials: one statement, no table scanned."""
    engine = connect(f"sqlite:///{tmp_path / 'hub.sqlite'}")
    query = _callers("ab" * 32).compile(engine, compile_kwargs={"literal_binds": True})
    with engine.connect() as conn:
        plan = [row[3] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}")]
    engine.dispose()
    assert not [step for step in plan if step.startswith("SCAN")], plan
    assert any("api_tokens USING INDEX" in step for step in plan), plan
