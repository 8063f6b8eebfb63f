"""Tables through a mapping: one row feeding several tables, identities, dates, nulls, counts."""

from datetime import date, datetime
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select

from flip.data.cdm import schema
from flip.data.ingest import ingest_path
from flip.data.sources import tabular
from flip.data.sources.records import SourceEvent
from tests.data.accounting import assert_accounted
from tests.data.warehouse_extract import write_extract


def _count(store, table, *where) -> int:
    with store.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def _edit(mapping: Path, change) -> None:
    doc = yaml.safe_load(mapping.read_text())
    change(doc)
    mapping.write_text(yaml.safe_dump(doc, sort_keys=False))


def test_a_wide_file_mapped_to_four_tables_stores_all_of_them(store, tmp_path):
    patients, mapping = write_extract(tmp_path / "extract")
    report = ingest_path(store, "csv", mapping.parent)
    assert_accounted(store, report)
    has = {k: sum(k in p.measurements for p in patients) for k in ("sbp", "dbp", "total_chol")}
    smokers = sum(p.smoker for p in patients)
    assert report.unchanged == 0 and report.quarantined == 0, report.as_dict()
    assert report.loaded == len(patients) + sum(has.values()) + smokers
    assert report.skipped_rules == {
        "tabular.value.empty": 3 * len(patients) - sum(has.values()),
        "tabular.code.empty": len(patients) - smokers,
    }
    m = schema.measurement
    for concept, name in ((3004249, "sbp"), (3012888, "dbp"), (3027114, "total_chol")):
        assert _count(store, m, m.c.measurement_concept_id == concept) == has[name] > 0, name
    assert _count(store, schema.observation) == smokers
    with store.connect() as conn:
        keys = set(conn.execute(select(schema.source_record.c.record_key)).scalars())
    assert "vitals.csv:8480-6/V0" in keys and "vitals.csv:8462-4/V0" in keys
    again = ingest_path(store, "csv", mapping.parent)
    assert_accounted(store, again)
    assert again.loaded == 0 and again.unchanged == report.loaded


def test_datetimes_keep_their_time_of_day_whatever_their_shape(store, tmp_path):
    patients, mapping = write_extract(tmp_path / "extract", n=9)
    ingest_path(store, "csv", mapping.parent)
    m = schema.measurement
    with store.connect() as conn:
        stamps = conn.execute(
            select(m.c.measurement_date, m.c.measurement_datetime).where(
                m.c.measurement_concept_id == 3004249
            )
        ).all()
    expected = {
        (p.index_date, datetime(*p.index_date.timetuple()[:3], 9, 5))
        for p in patients
        if "sbp" in p.measurements
    }
    assert {(d, t.replace(tzinfo=None)) for d, t in stamps} == expected


def test_headers_with_stray_spaces_and_case_and_null_strings(store, tmp_path):
    patients, mapping = write_extract(tmp_path / "extract", n=12)
    report = ingest_path(store, "csv", mapping.parent)
    assert report.quarantined == 0
    p = schema.person
    with store.connect() as conn:
        genders = dict(conn.execute(select(p.c.person_source_value, p.c.gender_source_value)).all())
        births = {
            row[0]: date(*row[1:])
            for row in conn.execute(
                select(
                    p.c.person_source_value, p.c.year_of_birth, p.c.month_of_birth, p.c.day_of_birth
                )
            )
        }
    assert births == {q.source_id: q.birth_date for q in patients}
    nulled = [q.source_id for q in patients if q.source_id.endswith("3")]
    assert nulled and all(genders[k] is None for k in nulled)


def test_a_record_key_is_its_entry_and_its_row(tmp_path):
    _, mapping = write_extract(tmp_path / "extract", n=3)
    spec = tabular.TableMapping.load(mapping)
    assert [e.entry for e in spec.events] == [
        "vitals.csv:8480-6",
        "vitals.csv:8462-4",
        "vitals.csv:2093-3",
        "vitals.csv:smoking",
    ]

    def same_name(doc):
        doc["events"][0]["name"] = doc["events"][1]["name"] = "bp"

    _edit(mapping, same_name)
    with pytest.raises(tabular.MappingError, match=r"events\[1\] \(bp\): 'name': .*events\[0\]"):
        tabular.TableMapping.load(mapping)


def test_fixed_dates_and_ages_at_the_event(store, tmp_path):
    folder = tmp_path / "registry"
    folder.mkdir()
    (folder / "people.csv").write_text("id,born\nA,1950-3-1\nB,31/12/1960\nC,1970-13-01\n")
    (folder / "history.csv").write_text(
        "row,id,age_at_dx,code\n1,A,50,I10\n2,B,40.5,E11.9\n3,C,30,I10\n4,A,,I10\n5,A,-2,I10\n"
    )
    (folder / "mapping.yaml").write_text(
        yaml.safe_dump(
            {
                "person": {
                    "file": "people.csv",
                    "id": "id",
                    "birth_date": {"column": "born", "format": "%d/%m/%Y"},
                },
                "events": [
                    {
                        "name": "dx",
                        "file": "history.csv",
                        "id": "row",
                        "person": "id",
                        "code": {"column": "code", "system": "http://hl7.org/fhir/sid/icd-10"},
                        "date": {"age": "age_at_dx"},
                        "default_table": "condition_occurrence",
                    },
                    {
                        "name": "enrolled",
                        "file": "people.csv",
                        "id": "id",
                        "person": "id",
                        "code": {"value": "ENROLLED", "system": "urn:registry"},
                        "date": {"value": "2020-1-15"},
                    },
                ],
            }
        )
    )
    report = ingest_path(store, "csv", folder)
    assert_accounted(store, report)
    assert report.rules == {
        "tabular.date.invalid": 3,  # C's birth date; row 4's empty age; row 5's negative age
        "tabular.date.no_birth_date": 1,  # row 3: C was quarantined, so no age can be placed
        "reference.dangling": 1,  # C's enrolment
    }
    c = schema.condition_occurrence
    with store.connect() as conn:
        starts = sorted(conn.execute(select(c.c.condition_start_date)).scalars())
        enrolled = set(conn.execute(select(schema.observation.c.observation_date)).scalars())
    assert starts == [date(2000, 3, 1), date(2001, 6, 30)]  # 40.5 years: 486 months
    assert enrolled == {date(2020, 1, 15)}


def test_a_row_feeding_person_and_events_with_a_bad_date_is_quarantined_consistently(
    store, tmp_path
):
    folder = tmp_path / "one-file"
    folder.mkdir()
    (folder / "patients.csv").write_text(
        "mrn,dob,seen,sbp,dbp\n"
        "1,1950-01-01,2020-02-03 10:00,120,80\n"
        "2,not a date,2020-02-03,130,85\n"
        "3,1960-05-05,2020-02-30,125,82\n"
    )

    def vital(code, column):
        return {
            "file": "patients.csv",
            "id": "mrn",
            "person": "mrn",
            "code": {"value": code, "system": "http://loinc.org"},
            "date": {"column": "seen"},
            "value": column,
            "unit": {"value": "mm[Hg]"},
            "default_table": "measurement",
        }

    (folder / "mapping.yaml").write_text(
        yaml.safe_dump(
            {
                "person": {"file": "patients.csv", "id": "mrn", "birth_date": {"column": "dob"}},
                "events": [vital("8480-6", "sbp"), vital("8462-4", "dbp")],
            }
        )
    )
    for _ in range(2):
        report = ingest_path(store, "csv", folder)
        assert_accounted(store, report)
        assert report.read == 9 and report.quarantined == 5
        assert report.rules == {"tabular.date.invalid": 3, "reference.dangling": 2}
        assert _count(store, schema.quarantine) == 5
        assert _count(store, schema.measurement) == 2
    with store.connect() as conn:
        keys = set(conn.execute(select(schema.quarantine.c.record_key)).scalars())
    assert keys == {
        "person/2",
        "patients.csv:8480-6/2",
        "patients.csv:8462-4/2",
        "patients.csv:8480-6/3",
        "patients.csv:8462-4/3",
    }


def test_values_with_comparators_keep_them_and_unparseable_values_are_nulled(store, tmp_path):
    folder = tmp_path / "labs"
    folder.mkdir()
    (folder / "patients.csv").write_text("id,dob\nA,1950-01-01\n")
    (folder / "labs.csv").write_text(
        "lab,id,code,result,taken\n1,A,14647-2,<0.5,2020-01-01\n2,A,14647-2,see note,2020-01-01\n"
        "3,A,14647-2,NULL,2020-01-01\n4,A,14647-2,5.1,2020-01-01\n"
    )
    (folder / "mapping.yaml").write_text(
        yaml.safe_dump(
            {
                "person": {"file": "patients.csv", "id": "id", "birth_date": {"column": "dob"}},
                "events": [
                    {
                        "file": "labs.csv",
                        "id": "lab",
                        "person": "id",
                        "code": {"column": "code", "system": "http://loinc.org"},
                        "date": {"column": "taken"},
                        "value": "result",
                        "unit": {"value": "mmol/L"},
                        "default_table": "measurement",
                    }
                ],
            }
        )
    )
    records = list(tabular.read_tables(tabular.TableMapping.load(folder / "mapping.yaml"), folder))
    singles = {r.key: r for r in records if isinstance(r, SourceEvent)}
    assert singles["labs.csv/1"].operator == "<" and singles["labs.csv/1"].value == 0.5
    assert singles["labs.csv/2"].value is None
    assert singles["labs.csv/2"].warnings == ("tabular.value.not_numeric",)
    report = ingest_path(store, "csv", folder)
    assert_accounted(store, report)
    assert report.loaded == 5 and report.warnings == {"tabular.value.not_numeric": 1}
    m = schema.measurement
    with store.connect() as conn:
        rows = conn.execute(select(m.c.value_as_number, m.c.operator_concept_id)).all()
    assert sorted(rows, key=repr) == sorted(
        [(0.5, 4171756), (None, None), (None, None), (5.1, None)], key=repr
    )


def _drop(*keys):
    def change(doc):
        spec = doc
        for key in keys[:-1]:
            spec = spec[key]
        del spec[keys[-1]]

    return change


def _set(value, *keys):
    def change(doc):
        spec = doc
        for key in keys[:-1]:
            spec = spec[key]
        spec[keys[-1]] = value

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_drop("events", 0, "id"), r"events\[0\] \(vitals.csv\): 'id': is missing"),
        (_set("sbpp", "events", 0, "value"), r"'value': column 'sbpp' is not in vitals.csv"),
        (_set(["M", "F"], "person", "gender", "values"), r"person: 'gender.values': must be"),
        (
            _set("measurements", "events", 1, "default_table"),
            r"events\[1\] \(vitals.csv\): 'default_table': 'measurements' is not one of",
        ),
        (_set("%Y-%Q", "events", 2, "date", "format"), r"events\[2\].*'date.format': "),
        (
            _set(
                {
                    "value": "mmol/L",
                    "convert": [{"from": "mmol/L", "to": "mg/furlong", "factor": 38.67}],
                },
                "events",
                2,
                "unit",
            ),
            r"events\[2\].*'unit.convert\[0\].to': 'mg/furlong' is not a UCUM unit",
        ),
        (_set(1, "events", 0, "valeu"), r"events\[0\].*'valeu': unknown key"),
        (_set("vitalz.csv", "events", 3, "file"), r"events\[3\].*'file': .*vitalz.csv does not"),
    ],
)
def test_a_mapping_error_is_one_line_exit_1_and_writes_nothing(tmp_path, change, message):
    import re
    import subprocess
    import sys

    from flip.data.cdm.store import open_store

    _, mapping = write_extract(tmp_path / "extract", n=5)
    _edit(mapping, change)
    store_path = tmp_path / "store.duckdb"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "flip",
            "site",
            "ingest",
            "csv",
            str(mapping.parent),
            "--store",
            str(store_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    assert str(mapping) in lines[0] and re.search(message, lines[0]), lines[0]
    store = open_store(store_path)
    try:
        assert _count(store, schema.ingest_run) == 0 and _count(store, schema.person) == 0
    finally:
        store.close()


GBSG = Path(__file__).parent / "fixtures" / "tabular" / "gbsg"


def test_a_registry_extract_we_did_not_write_loads_every_row_of_every_entry(store, tmp_path):
    folder = tmp_path / "gbsg"
    folder.mkdir()
    (folder / "lymph_node.csv").write_bytes((GBSG / "lymph_node.csv").read_bytes())
    on_diagnosis = {"column": "diagdateb", "format": "%d-%m-%Y"}

    def measured(column: str) -> dict:
        return {
            "file": "lymph_node.csv",
            "id": "id",
            "person": "id",
            "code": {"value": column, "system": "urn:gbsg"},
            "date": on_diagnosis,
            "value": column,
            "default_table": "measurement",
        }

    mapping = {
        "source": "gbsg",
        "person": {
            "file": "lymph_node.csv",
            "id": "id",
            "birth_date": {"age": "age", "at": "diagdateb", "format": "%d-%m-%Y"},
        },
        "events": [
            {
                "name": "diagnosis",
                "file": "lymph_node.csv",
                "id": "id",
                "person": "id",
                "code": {"value": "C50.9", "system": "http://hl7.org/fhir/sid/icd-10"},
                "date": on_diagnosis,
                "default_table": "condition_occurrence",
            },
            *(measured(c) for c in ("size", "nodes", "grade", "prog_recp", "estrg_recp")),
        ],
    }
    (folder / "mapping.yaml").write_text(yaml.safe_dump(mapping, sort_keys=False))
    rows = (GBSG / "lymph_node.csv").read_text().count("\n") - 1
    report = ingest_path(store, "csv", folder)
    assert_accounted(store, report)
    assert rows == 686 and report.read == rows * 7
    assert report.loaded == report.read and report.unchanged == report.quarantined == 0
    assert report.rows["person"] == rows and report.rows["measurement"] == rows * 5
    p, m = schema.person, schema.measurement
    with store.connect() as conn:
        born = conn.execute(
            select(p.c.year_of_birth, p.c.month_of_birth, p.c.day_of_birth).where(
                p.c.person_source_value == "1"
            )
        ).one()
        sizes = conn.execute(
            select(m.c.value_as_number, m.c.measurement_date)
            .join(schema.source_record, schema.source_record.c.cdm_id == m.c.measurement_id)
            .where(schema.source_record.c.record_key == "lymph_node.csv:size/1")
        ).all()
    assert tuple(born) == (1946, 8, 17)  # 38 at diagnosis on 17-08-1984
    assert sizes == [(18.0, date(1984, 8, 17))]


def test_a_quoted_multiline_record_is_kept_whole_as_its_raw_bytes(store, exported):
    _, _, folder = exported("csv", n=5)
    letters = folder / "letters.csv"
    before = letters.read_text().count("\n")
    letters.write_text(
        letters.read_text() + 'late-1,NOBODY,2017-01-01,"Seen today.\nPlan: review in 3 months."\n'
    )
    report = ingest_path(store, "csv", folder)
    assert_accounted(store, report)
    assert report.rules == {"reference.dangling": 1}
    with store.connect() as conn:
        location, raw = conn.execute(
            select(schema.quarantine.c.location, schema.quarantine.c.raw)
        ).one()
    assert location == f"{letters}:{before + 1}"
    assert raw == b'late-1,NOBODY,2017-01-01,"Seen today.\nPlan: review in 3 months."\n'


def test_a_row_id_seen_again_in_a_later_block_supersedes_it_never_unchanged(
    store, exported, monkeypatch
):
    monkeypatch.setattr(tabular, "BLOCK_SIZE", 4)
    _, patients, folder = exported("csv", n=10)
    labs = folder / "labs.csv"
    lines = labs.read_text().splitlines(keepends=True)
    first, second = lines[1], lines[2]
    # 99.25: a value no synthetic result has (they carry one decimal)
    changed = second.replace(second.split(",")[3], "99.25", 1)
    labs.write_text("".join([*lines, first, changed]))  # an exact duplicate, a changed one
    report = ingest_path(store, "csv", folder)
    assert_accounted(store, report)
    assert report.unchanged == 0 and report.quarantined == 0, report.as_dict()
    assert report.skipped_rules == {"identity.superseded_in_run": 2}
    assert _count(store, schema.measurement) == sum(
        len(p.measurements) + len(p.review) for p in patients
    )
    assert _count(store, schema.measurement, schema.measurement.c.value_as_number == 99.25) == 1
    again = ingest_path(store, "csv", folder)
    assert_accounted(store, again)
    assert _count(store, schema.measurement) == sum(
        len(p.measurements) + len(p.review) for p in patients
    )
    assert _count(store, schema.measurement, schema.measurement.c.value_as_number == 99.25) == 1


def test_a_death_date_that_does_not_parse_is_nulled_with_a_warning_and_the_person_kept(
    store, tmp_path
):
    folder = tmp_path / "deaths"
    folder.mkdir()
    (folder / "people.csv").write_text(
        "id,born,died\nA,1950-01-01,2019-3-4\nB,1950-01-01,soon\nC,1950-01-01,NULL\n"
    )
    (folder / "mapping.yaml").write_text(
        yaml.safe_dump(
            {
                "person": {
                    "file": "people.csv",
                    "id": "id",
                    "birth_date": "born",
                    "death_date": {"column": "died"},
                }
            }
        )
    )
    report = ingest_path(store, "csv", folder)
    assert_accounted(store, report)
    assert report.loaded == 3 and report.warnings == {"tabular.death_date.invalid": 1}
    with store.connect() as conn:
        deaths = conn.execute(select(schema.death.c.death_date)).scalars().all()
    assert deaths == [date(2019, 3, 4)]


def test_an_impossible_birth_date_keeps_its_year_and_month_when_the_format_gives_them(
    store, tmp_path
):
    folder = tmp_path / "births"
    folder.mkdir()
    (folder / "people.csv").write_text("id,born\nA,31/02/1970\nB,31/13/1971\nC,not a date\n")
    (folder / "mapping.yaml").write_text(
        yaml.safe_dump(
            {
                "person": {
                    "file": "people.csv",
                    "id": "id",
                    "birth_date": {"column": "born", "format": "%d/%m/%Y"},
                },
                "events": [],
            }
        )
    )
    report = ingest_path(store, "csv", folder)
    assert_accounted(store, report)
    assert report.rules == {"tabular.date.invalid": 1}  # C: no year to keep
    assert report.warnings["tabular.birth_date.truncated"] == 2
    p = schema.person
    with store.connect() as conn:
        born = conn.execute(
            select(p.c.person_source_value, p.c.year_of_birth, p.c.month_of_birth, p.c.day_of_birth)
        ).all()
    assert sorted(born) == [("A", 1970, 2, None), ("B", 1971, None, None)]
