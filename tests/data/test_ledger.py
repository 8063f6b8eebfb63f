import pytest
from sqlalchemy import update

from flip.data.ledger import Ledger, LedgerTampered, audit


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


def test_counts_and_charges_are_read_from_the_chain_and_refused_when_it_breaks(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    assert ledger.count_round("r1", "p", "a" * 64, 2) == 1
    assert ledger.count_round("r1", "p", "a" * 64, 2) == 2
    assert ledger.count_round("r1", "p", "a" * 64, 2) is None
    assert ledger.count_round("r2", "p", "a" * 64, 2, kind="evaluate") == 1
    assert ledger.rounds_counted("p", "a" * 64) == 2
    assert ledger.spend("r1", "p", "d", "a" * 64, 1.0, 1e-5, 3.0) == 1.0
    assert ledger.spend("r1", "p", "d", "a" * 64, 1.5, 1e-5, 3.0) == 1.5  # the run's total
    assert ledger.spend("r1", "p", "d", "b" * 64, 1.0, 1e-5, 3.0) == 2.5  # another task adds
    assert ledger.spend("r2", "p", "d", "b" * 64, 1.0, 1e-5, 3.0) is None
    assert ledger.spend("r3", "p", "e", "b" * 64, 0.4, 1e-5, 3.0) == 2.9  # other persons too
    assert ledger.spent() == 2.9
    with ledger.engine.begin() as conn:
        conn.execute(update(audit).where(audit.c.seq == 2).values(detail='{"rounds": 0}'))
    for read in (
        lambda: ledger.count_round("r1", "p", "a" * 64, 2),
        lambda: ledger.rounds_counted("p", "a" * 64),
        lambda: ledger.spend("r3", "p", "d", "a" * 64, 0.1, 1e-5, None),
        lambda: ledger.spent(),
        lambda: ledger.is_approved("p", "a" * 64),
    ):
        with pytest.raises(LedgerTampered, match="broken at entry 2"):
            read()


def test_a_runs_charge_never_goes_down(tmp_path):
    """A round's epsilon is the run's total so far; one computed lower (more training rows
    since the last round) must not give back epsilon already spent."""
    ledger = Ledger(tmp_path / "ledger.sqlite")
    assert ledger.spend("r1", "p", "d", "a" * 64, 2.0, 1e-5, 3.0) == 2.0
    assert ledger.spend("r1", "p", "d", "a" * 64, 0.5, 1e-5, 3.0) == 2.0
    assert ledger.spent() == 2.0
    assert ledger.spend("r2", "p", "d", "a" * 64, 1.5, 1e-5, 3.0) is None
