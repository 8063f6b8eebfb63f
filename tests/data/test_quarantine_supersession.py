"""Quarantine rows of versioned records and the counters of the runs that wrote them: a
run's counters are its history; the quarantine table holds the open problems."""

from sqlalchemy import func, select

from flip.data.cdm import schema
from flip.data.ingest import ingest_path
from tests.data.accounting import assert_accounted
from tests.data.stored import rows
from tests.data.test_hl7v2_fidelity import _oru


def test_a_correction_releases_an_earlier_runs_quarantine_row_and_keeps_its_count(store, tmp_path):
    """Run 1 quarantines a bad result; run 2 loads its correction and removes the row: run
    1's records_quarantined stays 1 (what it did), and no quarantine row is left open."""
    (tmp_path / "1.hl7").write_text(_oru("20230101090000", "R1", "high", "F"))
    (tmp_path / "2.hl7").write_text(_oru("20230101100000", "R2", "6.6", "C"))
    first = ingest_path(store, "hl7v2", tmp_path / "1.hl7")
    assert_accounted(store, first)
    assert first.quarantined == 1
    assert_accounted(store, ingest_path(store, "hl7v2", tmp_path / "2.hl7"))
    run, quarantine = schema.ingest_run, schema.quarantine
    with store.connect() as conn:
        counted = select(run.c.records_quarantined).where(run.c.ingest_run_id == first.run_id)
        assert conn.execute(counted).scalar_one() == 1
        assert conn.execute(select(func.count()).select_from(quarantine)).scalar_one() == 0
    assert [r["value_source_value"] for r in rows(store, "measurement")] == ["6.6"]
