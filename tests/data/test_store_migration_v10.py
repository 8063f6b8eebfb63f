"""A schema-9 store (pending_discharge without kind) migrated to 10: a discharge kept
before still waits for its admission, and an A13 read before its discharge is kept."""

from sqlalchemy import select, text, update

from flip.data.cdm import schema
from flip.data.ingest import ingest_path
from tests.data.accounting import assert_accounted
from tests.data.test_hl7v2_discharge_matching import (
    CANCEL_JAN,
    FEB_IN,
    FEB_OUT,
    JAN_IN,
    JAN_OUT,
    _visits,
)
from tests.data.test_hl7v2_fidelity import _send


def test_a_schema_9_store_migrates_and_keeps_its_discharges_and_cancels(store, tmp_path):
    kept = _send(tmp_path / "o", "m.hl7", *FEB_OUT)
    assert_accounted(store, ingest_path(store, "hl7v2", kept))
    with store.begin() as conn:
        table = f'"{store.schema}".pending_discharge' if store.schema else "pending_discharge"
        conn.execute(text(f"ALTER TABLE {table} DROP COLUMN kind"))
        conn.execute(update(schema.flip_schema).values(version=9))
    store.create()
    store.check()
    with store.connect() as conn:
        kinds = conn.execute(select(schema.pending_discharge.c.kind)).scalars().all()
    assert kinds == ["discharge"]
    for i, message in enumerate((JAN_IN, CANCEL_JAN, JAN_OUT, FEB_IN)):
        feed = _send(tmp_path / str(i), "m.hl7", *message)
        assert_accounted(store, ingest_path(store, "hl7v2", feed))
    assert _visits(store) == [
        ("2023-01-01 07:55:00", "None"),
        ("2023-02-01 07:55:00", "2023-02-05 11:30:00"),
    ]
