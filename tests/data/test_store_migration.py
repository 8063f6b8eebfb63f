"""Opening a store written at an older FLIP schema version migrates every table it changed,
keeping what the store held, and the store then works as a new one does."""

from pathlib import Path

import duckdb
import pytest
from sqlalchemy import MetaData, Table, func, insert, select, update

from flip.data.cdm import schema
from flip.data.cdm.store import StoreError, open_store
from flip.data.ingest import ingest_path
from flip.data.validate.report import build_report
from tests.data.accounting import assert_accounted

V6 = Path(__file__).parent / "fixtures" / "store_v6"

PERSON = (
    "person_id,gender_concept_id,year_of_birth,month_of_birth,day_of_birth,"
    "race_concept_id,ethnicity_concept_id,person_source_value\n"
    "1,8507,1950,3,4,0,0,A1\n2,8532,1960,,,0,0,A2\n"
)
CONDITIONS = (
    "condition_occurrence_id,person_id,condition_concept_id,condition_start_date,"
    "condition_type_concept_id\n100,1,4329847,2020-01-01,32817\n101,9,4329847,2020-01-01,32817\n"
)


def _v6_store(path: Path) -> Path:
    """The DuckDB store `fixtures/store_v6/make_store.py` wrote with FLIP at schema v6."""
    con = duckdb.connect(str(path))
    con.execute((V6 / "schema.sql").read_text())
    for table in sorted(V6.glob("*.csv")):
        con.execute(f"COPY {table.stem} FROM '{table}' (HEADER)")
    con.close()
    return path


def test_a_v6_store_opens_migrated_and_works(tmp_path):
    store = open_store(_v6_store(tmp_path / "store.duckdb"))
    with pytest.raises(StoreError, match="schema version 6"):
        store.check()
    store.create()
    store.check()
    s = schema.source_record
    with store.connect() as conn:
        held = conn.execute(select(s.c.record_key, s.c.role).order_by(s.c.record_key)).all()
        persons = conn.execute(select(func.count()).select_from(schema.person)).scalar_one()
    assert held == [
        ("condition_occurrence/100", "produced"),
        ("person/1", "produced"),
        ("person/2", "produced"),
    ]
    assert persons == 2

    export = tmp_path / "export"
    export.mkdir()
    (export / "person.csv").write_text(PERSON)
    (export / "condition_occurrence.csv").write_text(CONDITIONS)
    again = ingest_path(store, "omop", export, source_system="omop:v6")
    assert_accounted(store, again)
    assert (again.loaded, again.unchanged, again.quarantined) == (0, 3, 1), "nothing twice"
    assert build_report(store)["tables"]["person"] == 2
    store.close()


def test_a_v6_source_record_gains_its_new_key_on_every_database(store):
    """Written as v6 had it (key: cdm_table, cdm_id), one row per CDM row; after the
    migration a second source record of the same row has a row of its own."""
    s = schema.source_record
    with store.begin() as conn:
        s.drop(conn)
        old = Table(
            "source_record", MetaData(), *(c._copy() for c in s.columns if c.name != "role")
        )
        for column in old.columns:
            column.primary_key = column.name in ("cdm_table", "cdm_id")
        old.create(conn)
        row = {
            "cdm_table": "person",
            "cdm_id": 7,
            "source_system": "a",
            "record_key": "k",
            "location": "a.csv:2",
            "content_hash": "0" * 64,
        }
        conn.execute(insert(old).values(**row))
        conn.execute(update(schema.flip_schema).values(version=6))
    store.create()
    with store.begin() as conn:
        conn.execute(insert(s).values(**{**row, "source_system": "b", "role": schema.CONFIRMS}))
        held = conn.execute(select(s.c.source_system, s.c.role).order_by(s.c.source_system)).all()
    assert held == [("a", "produced"), ("b", "confirms")]


def test_a_store_a_newer_flip_wrote_is_refused_untouched(tmp_path):
    store = open_store(tmp_path / "store.duckdb")
    store.create()
    newer = schema.SCHEMA_VERSION + 1
    with store.begin() as conn:
        conn.execute(update(schema.flip_schema).values(version=newer))
    for step in (store.check, store.create):
        with pytest.raises(StoreError, match=f"schema version {newer}, newer than this FLIP"):
            step()
    with store.connect() as conn:
        assert conn.execute(select(schema.flip_schema.c.version)).scalar_one() == newer
