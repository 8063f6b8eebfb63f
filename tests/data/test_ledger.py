import pytest
from sqlalchemy import update

from flip.data.ledger import Ledger, audit


def test_approval_is_for_exact_project_and_hash(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.decide("1", "a" * 64, "approved", by="admin")
    assert ledger.is_approved("1", "a" * 64)
    assert not ledger.is_approved("1", "b" * 64)
    assert not ledger.is_approved("2", "a" * 64)
    ledger.decide("1", "a" * 64, "declined", by="admin", reason="changed my mind")
    assert not ledger.is_approved("1", "a" * 64)
    with pytest.raises(ValueError):
        ledger.decide("1", "a" * 64, "maybe", by="admin")


def test_audit_chain_detects_an_edit_and_a_deletion(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    for i in range(4):
        ledger.record("query.answered", {"query": i})
    assert ledger.verify() is None
    with ledger.engine.begin() as conn:
        conn.execute(update(audit).where(audit.c.seq == 2).values(detail='{"query":99}'))
    assert ledger.verify() == 2
    with ledger.engine.begin() as conn:
        conn.execute(update(audit).where(audit.c.seq == 2).values(detail='{"query":1}'))
        conn.execute(audit.delete().where(audit.c.seq == 3))
    assert ledger.verify() == 4
