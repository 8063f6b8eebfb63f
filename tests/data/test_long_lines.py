"""A text file with one huge line (a gzip bomb of a single line) is never read into memory
whole: the line is an error naming the file and line, and per-record readers go on."""

import codecs
import gzip
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from flip.data.cdm import schema
from flip.data.ingest import ingest_path
from flip.data.sources import fhir, omop, textfile
from flip.data.sources.textfile import LineTooLong, TextLines
from tests.data.accounting import assert_accounted

LIMIT = 1024 * 1024
HUGE = b"x" * (8 * LIMIT)

PERSON = (
    "person_id,gender_concept_id,year_of_birth,month_of_birth,day_of_birth,"
    "race_concept_id,ethnicity_concept_id,person_source_value\n"
)


@pytest.fixture
def small_limit(monkeypatch):
    monkeypatch.setattr(textfile, "MAX_LINE", LIMIT)


def test_a_huge_line_is_an_error_naming_file_and_line(small_limit, tmp_path):
    path = tmp_path / "t.csv.gz"
    path.write_bytes(gzip.compress(b"a,b\n1,2\n" + HUGE + b"\n3,4\n"))
    with pytest.raises(LineTooLong, match=r"t\.csv\.gz:3: the line is longer than 1,048,576"):
        list(TextLines(path))


@pytest.mark.parametrize("codec", ["utf-8", "utf-16"])
def test_a_skipped_huge_line_reads_as_empty_and_the_rest_goes_on(small_limit, tmp_path, codec):
    path = tmp_path / "t.csv"
    text = "a,b\n1,2\n" + "x" * (2 * LIMIT) + "\n3,4\n"
    path.write_bytes(text.encode(codec))
    lines = TextLines(path, skip_too_long=True)
    got = [line.lstrip(codecs.BOM_UTF8.decode()) for line in lines]
    assert got == ["a,b\n", "1,2\n", "\n", "3,4\n"]
    assert [(e.number, str(e.path)) for e in lines.take_too_long()] == [(3, str(path))]
    assert lines.take_too_long() == []


def test_reading_past_a_huge_line_holds_about_one_limit_in_memory(small_limit, tmp_path):
    path = tmp_path / "t.csv.gz"
    path.write_bytes(gzip.compress(b"a\n" + HUGE + HUGE + b"\n1\n"))
    tracemalloc.start()
    try:
        got = list(TextLines(path, skip_too_long=True))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got == ["a\n", "\n", "1\n"]
    assert peak < 6 * LIMIT, peak  # the line is 16 limits long


def test_an_omop_export_quarantines_the_huge_line_and_loads_the_rest(small_limit, store, tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    rows = PERSON.encode() + b"1,8507,1950,1,4,0,0,A1\n" + HUGE + b"\n2,8532,1960,2,3,0,0,A2\n"
    (folder / "person.csv.gz").write_bytes(gzip.compress(rows))
    report = ingest_path(store, "omop", folder)
    assert_accounted(store, report)
    assert report.loaded == 2 and report.rules == {"omop.line_too_long": 1}
    with store.connect() as conn:
        where = conn.execute(
            select(schema.quarantine.c.location, schema.quarantine.c.message)
        ).one()
    assert where[0].endswith("person.csv.gz:3") and "longer than" in where[1]


def test_a_mapped_csv_quarantines_the_huge_line_and_loads_the_rest(small_limit, store, tmp_path):
    folder = tmp_path / "extract"
    folder.mkdir()
    body = b"id,dob,sex\np1,1980-01-02,M\n" + HUGE + b"\np2,1990-03-04,F\n"
    (folder / "patients.csv").write_bytes(gzip.compress(body))
    mapping = {
        "source": "big",
        "person": {
            "file": "patients.csv",
            "id": "id",
            "birth_date": {"column": "dob", "format": "%Y-%m-%d"},
            "gender": {"column": "sex", "values": {"M": "male", "F": "female"}},
        },
    }
    (folder / "mapping.yaml").write_text(yaml.safe_dump(mapping))
    report = ingest_path(store, "csv", folder)
    assert_accounted(store, report)
    assert report.loaded == 2 and report.rules == {"tabular.line_too_long": 1}


def test_the_vocabulary_loader_names_file_and_line(small_limit, store, tmp_path):
    from flip.data.terminology.athena import load_athena

    folder = tmp_path / "athena"
    folder.mkdir()
    header = (
        "concept_id\tconcept_name\tdomain_id\tvocabulary_id\tconcept_class_id\t"
        "standard_concept\tconcept_code\tvalid_start_date\tvalid_end_date\tinvalid_reason\n"
    )
    (folder / "CONCEPT.csv").write_bytes(header.encode() + HUGE + b"\n")
    with pytest.raises(ValueError, match=r"CONCEPT\.csv:2: the line is longer"):
        load_athena(store, folder)


def test_the_limit_holds_lines_a_real_export_writes(tmp_path: Path):
    assert textfile.MAX_LINE >= 16 * 1024 * 1024  # a long clinical note fits


def test_a_file_with_classic_mac_line_ends_is_read_line_by_line(small_limit, store, tmp_path):
    # the review's mac/person.csv: CR-only line ends, the whole file longer than a line may be
    folder = tmp_path / "export"
    folder.mkdir()
    people = [f"{i},8507,1950,1,4,0,0,A{i}" for i in range(1, 60001)]
    body = "\r".join([PERSON.rstrip("\n"), *people]) + "\r"
    assert len(body) > LIMIT
    (folder / "person.csv.gz").write_bytes(gzip.compress(body.encode()))
    report = ingest_path(store, "omop", folder)
    assert_accounted(store, report)
    assert report.loaded == 60000 and report.rules == {}


def test_a_record_with_a_huge_line_inside_a_quoted_field_is_quarantined_whole(
    small_limit, store, tmp_path
):
    folder = tmp_path / "export"
    folder.mkdir()
    rows = (
        PERSON.encode() + b'1,8507,1950,1,4,0,0,"A1\n' + HUGE + b'\nend"\n2,8532,1960,2,3,0,0,A2\n'
    )
    (folder / "person.csv").write_bytes(rows)
    report = ingest_path(store, "omop", folder)
    assert_accounted(store, report)
    assert report.loaded == 1 and report.rules == {"omop.line_too_long": 1}
    with store.connect() as conn:
        kept = conn.execute(select(schema.person.c.person_source_value)).scalars().all()
    assert kept == ["A2"], "the record with the cut line is not stored cut"


def test_an_unclosed_quote_does_not_swallow_the_file(small_limit, store, tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    people = [f"{i},8507,1950,1,4,0,0,A{i}" for i in range(2, 40002)]
    body = PERSON + '1,8507,1950,1,4,0,0,"A1\n' + "\n".join(people) + "\n"
    assert len(body) > LIMIT
    (folder / "person.csv").write_text(body)
    report = ingest_path(store, "omop", folder)
    assert_accounted(store, report)
    assert report.rules == {"omop.csv_malformed": 1} and report.loaded == 40000


def test_an_unclosed_quote_holds_about_one_limit_in_memory(small_limit, tmp_path):
    pad = "p" * 200
    people = [f"{i},8507,1950,1,4,0,0,{pad}" for i in range(2, 40002)]
    path = tmp_path / "person.csv"
    path.write_text(PERSON + '1,8507,1950,1,4,0,0,"A1\n' + "\n".join(people) + "\n")
    assert path.stat().st_size > 8 * LIMIT
    tracemalloc.start()
    try:
        rules = Counter(getattr(r, "rule", None) for r in omop.read_file(path, schema.person))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rules["omop.csv_malformed"] == 1
    assert peak < 6 * LIMIT, peak


def test_a_fhir_bulk_file_with_a_huge_line_quarantines_it_and_reads_on(
    small_limit, store, tmp_path
):
    patient = b'{"resourceType":"Patient","id":"p1","gender":"male","birthDate":"1950-01-01"}\n'
    other = patient.replace(b"p1", b"p2")
    bomb = b'{"resourceType":"Patient","id":"p3","text":"' + HUGE + b'"}\n'
    path = tmp_path / "Patient.ndjson.gz"
    path.write_bytes(gzip.compress(patient + bomb + other))
    report = ingest_path(store, "fhir", path)
    assert_accounted(store, report)
    assert report.loaded == 2 and report.rules == {"json.line_too_long": 1}
    tracemalloc.start()
    try:
        read = [type(r).__name__ for r in fhir.read_ndjson(path)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert read == ["SourcePerson", "Rejected", "SourcePerson"]
    assert peak < 6 * LIMIT, peak
