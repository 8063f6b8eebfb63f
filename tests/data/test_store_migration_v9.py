"""A schema-8 store (no ingest_run.records_withdrawn, no
pending_discharge) migrated to 9 keeps a discharge read before its admission."""

from sqlalchemy import select, text, update

from flip.data.cdm import schema
from flip.data.ingest import ingest_path
from tests.data.accounting import assert_accounted
from tests.data.test_hl7v2_discharge_matching import JAN_IN, JAN_OUT, _visits
from tests.data.test_hl7v2_fidelity import _send


def test_a_schema_8_store_migrates_and_keeps_a_discharge_for_its_admission(store, tmp_path):
    old = _send(tmp_path / "o", "m.hl7", *JAN_IN)
    before = ingest_path(store, "hl7v2", old, source_system="pas")
    with store.begin() as conn:
        schema.pending_discharge.drop(conn)
        table = f'"{store.schema}".ingest_run' if store.schema else "ingest_run"
        conn.execute(text(f"ALTER TABLE {table} DROP COLUMN records_withdrawn"))
        conn.execute(update(schema.flip_schema).values(version=8))
    store.create()
    store.check()
    with store.connect() as conn:
        run = schema.ingest_run
        found = select(run.c.records_withdrawn).where(run.c.ingest_run_id == before.run_id)
        assert conn.execute(found).scalar_one() == 0
    for name, message in (("1", JAN_OUT), ("2", JAN_IN)):
        feed = _send(tmp_path / name, "m.hl7", *message)
        assert_accounted(store, ingest_path(store, "hl7v2", feed, source_system="pas2"))
    assert ("2023-01-01 07:55:00", "2023-01-05 11:30:00") in _visits(store)
