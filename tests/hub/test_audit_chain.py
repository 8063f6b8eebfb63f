"""Appends in one transaction share the chain's head; a rolled-back savepoint forgets it."""

from sqlalchemy import func, select

from flip.hub import audit
from flip.hub.db import audit as audit_table
from flip.hub.db import connect


def test_many_appends_in_one_transaction_with_a_failed_savepoint_keep_the_chain(hub_db_url):
    engine = connect(hub_db_url)
    with engine.begin() as conn:
        audit.append(conn, "site:a", "query.answer", "query:1")
        for n in range(2, 6):
            try:
                with conn.begin_nested():
                    audit.append(conn, "site:a", "query.answer", f"query:{n}")
                    if n == 3:
                        raise RuntimeError("this job fails after its append")
            except RuntimeError:
                pass
    with engine.connect() as conn:
        seqs = conn.execute(select(audit_table.c.seq).order_by(audit_table.c.seq)).scalars().all()
        targets = conn.execute(select(audit_table.c.target).order_by(audit_table.c.seq)).scalars()
        assert list(targets) == ["query:1", "query:2", "query:4", "query:5"]
        assert seqs == [1, 2, 3, 4]
        assert audit.verify(conn) is None
    with engine.begin() as conn:
        audit.append(conn, "site:b", "query.answer", "query:6")
    with engine.connect() as conn:
        assert conn.execute(select(func.max(audit_table.c.seq))).scalar() == 5
        assert audit.verify(conn) is None
    engine.dispose()
