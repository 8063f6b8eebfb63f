"""Day- or month-first dates in OMOP exports and Athena files (`01/02/2020`): read in the
day order the site sets, never guessed without one, and then counted."""

import json
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select

from flip.data.cdm import schema
from flip.data.ingest import ingest_path
from flip.data.terminology.athena import load_athena
from tests.data.accounting import assert_accounted

FIXTURES = Path(__file__).parent / "fixtures"

PERSON = (
    "person_id,gender_concept_id,year_of_birth,month_of_birth,day_of_birth,"
    "race_concept_id,ethnicity_concept_id,person_source_value\n"
    "1,8507,1950,3,4,0,0,A1\n"
)
CONDITIONS = (
    "condition_occurrence_id,person_id,condition_concept_id,condition_start_date,"
    "condition_end_date,condition_type_concept_id\n"
    "100,1,4329847,01/02/2020,03/04/2020,32817\n"  # both ambiguous
    "101,1,4329847,2020-05-06,07/08/2020,32817\n"  # the optional end ambiguous
    "102,1,4329847,2020-05-06,2020-05-09,32817\n"  # year first: needs no order
)


def _export(tmp_path: Path) -> Path:
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "person.csv").write_text(PERSON)
    (folder / "condition_occurrence.csv").write_text(CONDITIONS)
    return folder


def _conditions(store) -> dict[int, tuple[date, date | None]]:
    c = schema.condition_occurrence
    with store.connect() as conn:
        found = conn.execute(
            select(c.c.condition_source_value, c.c.condition_start_date, c.c.condition_end_date)
        ).all()
    return {i: (start, end) for i, (_, start, end) in enumerate(sorted(found, key=repr))}


def test_without_a_day_order_ambiguous_dates_are_counted_never_guessed(store, tmp_path):
    report = ingest_path(store, "omop", _export(tmp_path))
    assert_accounted(store, report)
    assert report.rules == {"omop.date_order_unknown": 1}, "a required date: quarantined"
    assert report.warnings == {"omop.date_order_unknown": 1}, "an optional one: nulled"
    c = schema.condition_occurrence
    with store.connect() as conn:
        stored = conn.execute(select(c.c.condition_start_date, c.c.condition_end_date)).all()
        why = conn.execute(select(schema.quarantine.c.message)).scalar_one()
    assert sorted(stored, key=repr) == [
        (date(2020, 5, 6), None),
        (date(2020, 5, 6), date(2020, 5, 9)),
    ]
    assert "'01/02/2020'" in why and "dmy or mdy" in why


@pytest.mark.parametrize(
    ("order", "start", "end"),
    [("dmy", date(2020, 2, 1), date(2020, 4, 3)), ("mdy", date(2020, 1, 2), date(2020, 3, 4))],
)
def test_a_day_order_reads_them_as_the_site_says(store, tmp_path, order, start, end):
    report = ingest_path(store, "omop", _export(tmp_path), date_order=order)
    assert_accounted(store, report)
    assert report.rules == {} and report.warnings == {} and report.loaded == 4
    c = schema.condition_occurrence
    with store.connect() as conn:
        got = conn.execute(
            select(c.c.condition_start_date, c.c.condition_end_date).where(
                c.c.condition_start_date != date(2020, 5, 6)
            )
        ).one()
    assert tuple(got) == (start, end)


def test_a_re_run_with_another_day_order_maps_the_records_again(store, tmp_path):
    export = _export(tmp_path)
    ingest_path(store, "omop", export)
    ends = lambda: sorted(filter(None, (end for _, end in _conditions(store).values())))  # noqa: E731
    assert ends() == [date(2020, 5, 9)], "the ambiguous end date nulled"
    fixed = ingest_path(store, "omop", export, date_order="dmy")
    assert_accounted(store, fixed)
    assert fixed.loaded == 4 and fixed.rules == {}, "every record read in the new order"
    assert ends() == [date(2020, 4, 3), date(2020, 5, 9), date(2020, 8, 7)]
    other = ingest_path(store, "omop", export, date_order="mdy")
    assert_accounted(store, other)
    assert ends() == [date(2020, 3, 4), date(2020, 5, 9), date(2020, 7, 8)]
    again = ingest_path(store, "omop", export, date_order="mdy")
    assert again.loaded == 0 and again.unchanged == 4


def test_flip_site_ingest_takes_the_day_order_from_its_option_or_site_yaml(tmp_path):
    export = _export(tmp_path)

    def ingest(store: str, *extra: str) -> dict:
        command = [sys.executable, "-m", "flip", "site", "ingest", "omop", str(export)]
        done = subprocess.run(
            [*command, "--json", "--store", store, *extra],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    assert ingest(str(tmp_path / "a.duckdb"))["rules"] == {"omop.date_order_unknown": 1}
    assert ingest(str(tmp_path / "b.duckdb"), "--date-order", "dmy")["rules"] == {}
    (tmp_path / "site.yaml").write_text("date_order: mdy\n")
    assert ingest(str(tmp_path / "c.duckdb"))["rules"] == {}


def test_an_athena_file_with_ambiguous_dates_needs_the_day_order(store, tmp_path):
    folder = tmp_path / "athena"
    shutil.copytree(FIXTURES / "athena", folder)
    concept = folder / "CONCEPT.csv"
    lines = concept.read_text().splitlines()
    lines[2] = lines[2].replace("20020131", "31/01/2002")
    concept.write_text("\n".join(lines) + "\n")
    unordered = r"CONCEPT\.csv:3: valid_start_date: .* say which \(dmy or mdy\)"
    with pytest.raises(ValueError, match=unordered):
        load_athena(store, folder)
    load_athena(store, folder, "dmy")
    c = schema.concept
    code = lines[2].split("\t")[0]
    with store.connect() as conn:
        start = conn.execute(
            select(c.c.valid_start_date).where(c.c.concept_id == int(code))
        ).scalar_one()
    assert start == date(2002, 1, 31)


def test_site_yaml_day_order_reads_in_any_case_and_a_bad_one_names_file_and_key(tmp_path):
    from flip.config import IngestSettings

    path = tmp_path / "site.yaml"
    path.write_text("date_order: DMY\n")
    assert IngestSettings.load(path).date_order == "dmy"
    path.write_text("date_order: ymd\n")
    with pytest.raises(ValueError, match=r"site\.yaml: date_order: Input should be 'dmy' or 'mdy'"):
        IngestSettings.load(path)
