"""OMOP CSV exports as careless or foreign tools write them: bad birth parts, encodings other
than UTF-8, gzip, NUL bytes, broken quoting and misaligned rows never sink the run."""

import gzip
from pathlib import Path

import pytest
from sqlalchemy import select

from flip.data.cdm import schema
from flip.data.ingest import ingest_path
from tests.data.accounting import assert_accounted

PERSON = (
    "person_id,gender_concept_id,year_of_birth,month_of_birth,day_of_birth,"
    "race_concept_id,ethnicity_concept_id,person_source_value\n"
)


def _export(folder: Path, files: dict[str, str | bytes]) -> Path:
    folder.mkdir()
    for name, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        (folder / name).write_bytes(data)
    return folder


def _persons(store) -> dict[str, dict]:
    with store.connect() as conn:
        rows = conn.execute(select(schema.person)).mappings().all()
    return {r["person_source_value"]: dict(r) for r in rows}


def test_impossible_birth_month_or_day_is_nulled_and_impossible_year_quarantined(store, tmp_path):
    rows = "1,8507,1950,13,4,0,0,A1\n2,8507,1951,2,30,0,0,A2\n3,8507,99999,,,0,0,A3\n"
    folder = _export(tmp_path / "export", {"person.csv": PERSON + rows + "4,8507,0,1,1,0,0,A4\n"})
    report = ingest_path(store, "omop", folder)
    assert_accounted(store, report)
    assert report.warnings["omop.birth_unreadable"] == 2
    assert report.rules == {"omop.type": 2}
    persons = _persons(store)
    assert (persons["A1"]["month_of_birth"], persons["A1"]["day_of_birth"]) == (None, None)
    assert (persons["A2"]["month_of_birth"], persons["A2"]["day_of_birth"]) == (2, None)


def test_latin1_utf16_and_gzipped_files_load(store, tmp_path):
    latin = (PERSON + "1,8507,1950,1,4,0,0,Jos\xe9\n2,8532,1960,1,1,0,0,A2\n").encode("latin-1")
    visits = (
        "visit_occurrence_id\tperson_id\tvisit_concept_id\tvisit_start_date\tvisit_type_concept_id\n"
        "10\t1\t9201\t2020-01-01\t32817\n"
    )
    conditions = (
        "condition_occurrence_id,person_id,condition_concept_id,condition_start_date,"
        "condition_type_concept_id\n100,2,0,2021-1-2,32817\n"
    )
    files = {
        "PERSON.csv": latin,
        "visit_occurrence.txt": visits.encode("utf-16"),
        "condition_occurrence.csv.gz": gzip.compress(conditions.encode()),
    }
    report = ingest_path(store, "omop", _export(tmp_path / "export", files))
    assert_accounted(store, report)
    assert report.warnings["omop.text_not_utf8"] == 1
    assert report.rows == {"person": 2, "visit_occurrence": 1, "condition_occurrence": 1}
    assert "José" in _persons(store)


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_without_a_bom_loads_and_a_bad_code_unit_is_a_warning(store, tmp_path, codec):
    rows = PERSON + "1,8507,1950,1,4,0,0,Jos\xe9\n2,8532,1960,1,1,0,0,A2\n"
    data = rows.encode(codec)  # SQL Server's bcp -w writes UTF-16 LE without a BOM
    lone = "\ud800".encode(codec, errors="surrogatepass")  # a lone surrogate in A2's line
    data = data[: -2 * 3] + lone + data[-2 * 3 :]
    report = ingest_path(store, "omop", _export(tmp_path / "export", {"person.csv": data}))
    assert_accounted(store, report)
    assert report.rows == {"person": 2}
    assert report.warnings["omop.text_not_utf8"] == 1
    assert set(_persons(store)) == {"José", "\ufffdA2"}


def test_a_cut_gzip_file_stops_the_run_naming_the_file_and_line(store, tmp_path):
    rows = "".join(f"{n},8507,1950,1,4,0,0,P{n}\n" for n in range(1, 2000))
    packed = gzip.compress((PERSON + rows).encode())
    folder = _export(tmp_path / "export", {"person.csv.gz": packed[: len(packed) // 2]})
    with pytest.raises(ValueError, match=r"person\.csv\.gz: the gzip stream is cut short"):
        ingest_path(store, "omop", folder)


def test_nul_byte_in_text_is_removed_with_a_warning(store, tmp_path):
    folder = _export(tmp_path / "export", {"person.csv": PERSON + "1,8507,1950,1,4,0,0,A\x001\n"})
    report = ingest_path(store, "omop", folder)
    assert_accounted(store, report)
    assert report.warnings["text.nul_removed"] == 1
    assert set(_persons(store)) == {"A1"}


def test_unclosed_quote_and_extra_cells_quarantine_one_line_each(store, tmp_path):
    rows = (
        '1,8507,1950,1,4,0,0,"A1\n'  # unclosed quote: would swallow the rest of the file
        "2,8507,1960,1,1,0,0,A2\n"
        "3,8507,1960,1,1,0,0,A3,shifted,by a comma\n"
        "4,8507,1960,1,1,0,0,A4,\n"  # a trailing delimiter is no extra cell
        '5,8507,1960,1,1,0,0,"A5, with\nnewline"\n'
    )
    report = ingest_path(store, "omop", _export(tmp_path / "export", {"person.csv": PERSON + rows}))
    assert_accounted(store, report)
    assert report.rules == {"omop.csv_malformed": 1, "omop.extra_cells": 1}
    assert set(_persons(store)) == {"A2", "A4", "A5, with\nnewline"}
    with store.connect() as conn:
        where = conn.execute(select(schema.quarantine.c.location)).scalars().all()
    assert sorted(w.rsplit(":", 1)[1] for w in where) == ["2", "4"]


def test_two_headers_naming_one_column_leave_the_file_unread_naming_it(store, tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "person.csv").write_text(
        "person_id,gender_concept_id,year_of_birth,race_concept_id,ethnicity_concept_id\n"
        "1,8507,1950,0,0\n"
    )
    (folder / "observation.csv").write_text(
        "observation_id,person_id,PERSON_ID,observation_concept_id,observation_date,"
        "observation_type_concept_id\n"
        "7,1,2,4214956,2020-01-01,32817\n"
    )
    report = ingest_path(store, "omop", folder)
    assert_accounted(store, report)
    assert report.loaded == 1
    reason = report.unread[str(folder / "observation.csv")]
    assert reason == "columns 'person_id' and 'PERSON_ID' are both person_id: the file is not read"


def test_null_markers_are_nulls_and_a_trailing_delimiter_is_no_column(store, tmp_path):
    header = PERSON.rstrip("\n") + ",\n"
    rows = "1,8507,1950,NULL,NA,0,0,B1,\n2,8532,1960,\\N,,0,0,B2,\n"
    folder = _export(tmp_path / "export", {"person.csv": header + rows})
    report = ingest_path(store, "omop", folder)
    assert_accounted(store, report)
    assert report.warnings == {}, report.warnings
    assert report.unread == {}, report.unread
    persons = _persons(store)
    assert persons["B1"]["month_of_birth"] is None and persons["B1"]["day_of_birth"] is None
    assert persons["B2"]["month_of_birth"] is None
