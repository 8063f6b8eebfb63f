"""OMOP CDM sources: a v5.3 CSV export folder, and an existing v5.4 database attached by URL."""

import uuid

from sqlalchemy import create_engine, func, select, text

from flip.data.cdm import schema
from flip.data.cdm.store import open_store
from flip.data.ingest import ingest_path

PERSON = (
    "person_id,gender_concept_id,year_of_birth,month_of_birth,day_of_birth,"
    "race_concept_id,ethnicity_concept_id,person_source_value\n"
)
VISIT53 = (
    "visit_occurrence_id,person_id,visit_concept_id,visit_start_date,visit_end_date,visit_type_concept_id,"
    "admitting_source_concept_id,discharge_to_concept_id,discharge_to_source_value\n"
)
COND = (
    "condition_occurrence_id,person_id,condition_concept_id,condition_start_date,"
    "condition_type_concept_id,visit_occurrence_id,condition_source_value\n"
)


def _export(folder):
    folder.mkdir()
    (folder / "PERSON.csv").write_text(
        PERSON + "1,8507,1950,3,4,0,0,A1\n2,8532,1960,,,0,0,A2\n3,8532,,,,0,0,A3\n"
    )
    (folder / "VISIT_OCCURRENCE.csv").write_text(
        VISIT53
        + "10,1,9201,2020-01-01,2020-01-05,32817,8870,8536,home\n"
        + "11,2,9202,2021-02-02,2021-02-02,32817,,,\n"
    )
    (folder / "condition_occurrence.csv").write_text(
        COND + "100,1,4329847,2020-01-01,32817,10,I21.9\n101,9,4329847,2020-01-01,32817,,I21.9\n"
        "102,2,201826,1901-01-01,32817,,E11.9\n103,2,201826,not-a-date,32817,,E11.9\n"
    )
    (folder / "observation_period.csv").write_text(
        "observation_period_id,person_id,observation_period_start_date,observation_period_end_date,period_type_concept_id\n"
        "1000,1,2019-01-01,2022-12-31,32817\n"
    )
    return folder


def _rows(store, table):
    with store.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(schema.metadata.tables[table]))]


def test_v53_export_is_upgraded_checked_and_traceable(store, tmp_path):
    report = ingest_path(store, "omop", _export(tmp_path / "export"))
    assert report.rules == {
        "conformance.required": 1,
        "reference.dangling": 1,
        "plausibility.before_birth": 1,
        "omop.type": 1,
    }
    persons = {r["person_source_value"]: r for r in _rows(store, "person")}
    assert set(persons) == {"A1", "A2"}
    (visit,) = [v for v in _rows(store, "visit_occurrence") if v["visit_concept_id"] == 9201]
    assert (
        visit["admitted_from_concept_id"] == 8870 and visit["discharged_to_source_value"] == "home"
    )
    assert visit["person_id"] == persons["A1"]["person_id"]
    (mi,) = _rows(store, "condition_occurrence")
    assert mi["visit_occurrence_id"] == visit["visit_occurrence_id"]
    (period,) = _rows(store, "observation_period")
    assert period["observation_period_end_date"].isoformat() == "2022-12-31"
    with store.connect() as conn:
        keys = (
            conn.execute(
                select(schema.source_record.c.record_key).where(
                    schema.source_record.c.cdm_id == mi["condition_occurrence_id"]
                )
            )
            .scalars()
            .all()
        )
    assert keys == ["condition_occurrence/100"]
    again = ingest_path(store, "omop", tmp_path / "export")
    assert again.loaded == 0


def test_existing_omop_database_attached_by_url(store, postgres_database, tmp_path):
    source_schema = f"cdm_{uuid.uuid4().hex[:8]}"
    engine = create_engine(postgres_database)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{source_schema}"'))
    source = open_store(postgres_database, schema=source_schema)
    source.create()
    local = open_store(tmp_path / "site.duckdb")
    local.create()
    ingest_path(local, "omop", _export(tmp_path / "export"))
    with local.connect() as conn, source.begin() as target:
        for name in ("person", "visit_occurrence", "condition_occurrence"):
            rows = [dict(r._mapping) for r in conn.execute(select(schema.metadata.tables[name]))]
            target.execute(schema.metadata.tables[name].insert(), rows)
    report = ingest_path(store, "omop", None, url=postgres_database, schema_name=source_schema)
    assert report.quarantined == 0 and report.loaded == 2 + 2 + 1
    with store.connect() as conn:
        assert (
            conn.execute(select(func.count()).select_from(schema.condition_occurrence)).scalar()
            == 1
        )
    local.close()
    source.close()
    engine.dispose()
