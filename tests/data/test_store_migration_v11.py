"""A schema-10 store (withdrawal without source_version) migrated to 11: a withdrawal kept
before still withdraws, and compares with no record's version."""

from sqlalchemy import select, text, update

from flip.data.cdm import schema
from flip.data.ingest import ingest_path
from tests.data.accounting import assert_accounted
from tests.data.test_hl7v2_discharge_matching import ADMIT_V1, CANCEL_V1, REGISTER, _visits
from tests.data.test_hl7v2_fidelity import _send


def test_a_schema_10_store_migrates_and_keeps_its_withdrawals(store, tmp_path):
    for i, message in enumerate((REGISTER, CANCEL_V1)):
        assert_accounted(
            store, ingest_path(store, "hl7v2", _send(tmp_path / str(i), "m.hl7", *message))
        )
    with store.begin() as conn:
        table = f'"{store.schema}".withdrawal' if store.schema else "withdrawal"
        conn.execute(text(f"ALTER TABLE {table} DROP COLUMN source_version"))
        conn.execute(update(schema.flip_schema).values(version=10))
    store.create()
    store.check()
    with store.connect() as conn:
        kept = conn.execute(select(schema.withdrawal.c.rule, schema.withdrawal.c.source_version))
        assert kept.all() == [("hl7.visit.cancelled", None)]
    report = ingest_path(store, "hl7v2", _send(tmp_path / "a", "m.hl7", *ADMIT_V1))
    assert_accounted(store, report)  # no version to compare: the admission loads, as before 11
    assert _visits(store) == [("2023-01-01 07:55:00", "None")], report.as_dict()
    again = ingest_path(store, "hl7v2", _send(tmp_path / "c", "m.hl7", *CANCEL_V1))
    assert_accounted(store, again)
    assert _visits(store) == [], again.as_dict()
