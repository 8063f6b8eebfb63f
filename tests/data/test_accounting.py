"""The writer keeps times of day and comparators, and accounts for every record it reads."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import select, text

from flip.data.cdm import schema
from flip.data.cdm.store import Store, open_store
from flip.data.ingest import SUPERSEDED, Ingestor
from flip.data.sources.records import Rejected, Skipped, SourceEvent, SourcePerson, Unread
from flip.data.terminology.vocabulary import Vocabulary
from tests.data.accounting import assert_accounted

LOINC = "http://loinc.org"


def _event(key: str, **kw: object) -> SourceEvent:
    fields: dict[str, object] = {
        "key": key,
        "person_key": "p1",
        "system": LOINC,
        "code": "2160-0",
        "start": datetime(2020, 3, 4, 9, 41, 7),
        "default_table": "measurement",
        "location": f"labs.txt:{key}",
        "raw": key.encode(),
        "value": 0.5,
        "unit": "mg/dL",
    }
    fields.update(kw)
    return SourceEvent(**fields)


def _records() -> list:
    person = SourcePerson("p1", "MRN1", datetime(1950, 6, 1, 4, 30), "female", "adt.txt:1", b"p1")
    return [
        person,
        _event("lab-lt", operator="<"),
        _event("lab-ge", operator=">=", value=6.0, start=date(2020, 3, 5)),
        _event("lab-dup", value=1.0),
        _event("lab-dup", value=1.2),
        _event("lab-warn", warnings=("value.unparsed",), value=None),
        Skipped("msg-9", "feed.txt:9", "hl7.message_type.unhandled", "SIU^S12 is not read"),
        Rejected("bad-1", "feed.txt:10", "conformance.bad", "no patient", b"x"),
        Unread("extra/README.txt", "not a CDM table"),
    ]


def test_times_of_day_comparators_skips_and_warnings_are_kept(store: Store) -> None:
    report = Ingestor(store, Vocabulary.from_store(store), "hl7v2:test").run(
        _records(), kind="hl7v2", uri="test"
    )
    assert_accounted(store, report)
    assert (report.read, report.loaded, report.quarantined, report.skipped) == (8, 5, 1, 2)
    assert report.skipped_rules == {"hl7.message_type.unhandled": 1, SUPERSEDED: 1}
    assert report.warnings == {"value.unparsed": 1}
    assert report.unread == {"extra/README.txt": "not a CDM table"}
    m = schema.measurement
    with store.connect() as conn:
        rows = conn.execute(
            select(
                m.c.measurement_datetime, m.c.measurement_date, m.c.operator_concept_id
            ).order_by(m.c.measurement_date, m.c.value_as_number)
        ).all()
        born = conn.execute(select(schema.person.c.birth_datetime)).scalar_one()
        dup = conn.execute(
            select(m.c.value_as_number).where(m.c.value_as_number > 1, m.c.value_as_number < 2)
        ).scalar_one()
    assert born == datetime(1950, 6, 1, 4, 30)
    assert dup == 1.2
    assert (datetime(2020, 3, 4, 9, 41, 7), date(2020, 3, 4), 4171756) in rows
    assert (None, date(2020, 3, 5), 4171755) in rows
    again = Ingestor(store, Vocabulary.from_store(store), "hl7v2:test").run(
        _records(), kind="hl7v2", uri="test"
    )
    assert_accounted(store, again)
    assert (again.loaded, again.unchanged, again.skipped) == (0, 5, 2)


def test_an_older_store_gains_its_newer_counters_and_columns(
    tmp_path,
) -> None:
    path = tmp_path / "old.duckdb"
    old = open_store(path)
    old.create()
    with old.begin() as conn:
        conn.execute(text("ALTER TABLE ingest_run DROP COLUMN records_skipped"))
        conn.execute(text("ALTER TABLE ingest_run DROP COLUMN source_system"))
        conn.execute(text("ALTER TABLE ingest_run DROP COLUMN records_pruned"))
        conn.execute(text("ALTER TABLE ingest_run DROP COLUMN records_withdrawn"))
        conn.execute(text("ALTER TABLE source_record DROP COLUMN source_version"))
        conn.execute(text("UPDATE flip_schema SET version = 4"))
    old.close()
    store = open_store(path)
    store.create()
    report = Ingestor(store, Vocabulary.from_store(store), "t").run(_records(), kind="t", uri="t")
    assert_accounted(store, report)
    with store.connect() as conn:
        assert conn.execute(select(schema.ingest_run.c.source_system)).scalar_one() == "t"
    store.close()
