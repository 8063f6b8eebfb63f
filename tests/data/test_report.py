"""`flip site report`: tables, quarantine, unmapped codes and quality checks, as JSON and HTML."""

import json
import re
import subprocess
import sys
from datetime import date

import orjson
import pydicom
from pydicom.uid import generate_uid
from sqlalchemy import event, func, insert, select

from flip.data.cdm import schema
from flip.data.cdm.store import StoreError, bulk_insert, open_store
from flip.data.ingest import ingest_path
from flip.data.validate import charts
from flip.data.validate.distributions import value_distributions
from flip.data.validate.quality import run_checks
from flip.data.validate.report import build_report, render_html


def test_report_counts_rules_unmapped_and_failing_checks(store, exported):
    _, patients, folder = exported("fhir-ndjson", n=20)
    conditions = folder / "Condition.ndjson"
    lines = conditions.read_bytes().splitlines()
    odd = orjson.loads(lines[0])
    odd["id"] = "odd"
    odd["code"]["coding"][0]["code"] = "999999999"
    conditions.write_bytes(b"\n".join([*lines, orjson.dumps(odd), b"{broken"]) + b"\n")
    ingest_path(store, "fhir", folder)
    with store.begin() as conn:
        person_id = conn.execute(schema.person.select().limit(1)).first().person_id
        conn.execute(
            insert(schema.death).values(
                person_id=person_id, death_date=date(1900, 1, 1), death_type_concept_id=32817
            )
        )
    data = build_report(store)
    assert data["tables"]["person"] == len(patients)
    assert data["quarantine"]["by_rule"] == {"json.malformed": 1}
    assert {
        "table": "condition_occurrence",
        "code_system": "http://snomed.info/sct",
        "source_value": "999999999",
        "rows": 1,
    } in data["unmapped"]
    assert {
        "source": f"fhir:{folder.name}",
        "code_system": "http://snomed.info/sct",
        "code": "999999999",
        "records": 1,
    } in data["unmapped_codes"]
    checks = {c["name"]: c for c in data["checks"]}
    assert checks["plausibility.death_before_birth"]["status"] == "FAIL"
    assert checks["plausibility.after_death.measurement"]["failed"] > 0
    assert checks["conformance.observation_period"]["status"] == "PASS"
    page = render_html(data)
    assert (
        page.startswith("<!doctype html>")
        and "<script" not in page
        and "http" not in page.split("<body>")[1][:200]
    )
    assert "plausibility.death_before_birth" in page and 'class="FAIL"' in page


def test_checks_pass_on_clean_data(store, exported):
    _, _, folder = exported("csv", n=30)
    ingest_path(store, "csv", folder)
    failing = [c.name for c in run_checks(store) if c.status == "FAIL"]
    assert failing == []


def test_old_or_missing_store_gives_a_clear_error(tmp_path):
    path = tmp_path / "empty.duckdb"
    s = open_store(path)
    with s.begin() as conn:
        schema.person.create(conn)
    try:
        s.check()
    except StoreError as exc:
        assert "flip site init" in str(exc)
    else:
        raise AssertionError("an unmigrated store must be refused")
    s.create()
    s.check()
    s.close()
    result = subprocess.run(
        [sys.executable, "-m", "flip", "site", "report", "--store", str(tmp_path / "none.duckdb")],
        capture_output=True,
        text=True,
    )
    assert (
        result.returncode == 1
        and result.stderr.count("\n") == 1
        and "flip site init" in result.stderr
    )


def test_report_cli_writes_json_and_html(tmp_path, exported):
    _, _, folder = exported("csv", n=10)
    store = str(tmp_path / "s.duckdb")
    flip = [sys.executable, "-m", "flip", "site"]
    subprocess.run(
        [*flip, "ingest", "csv", str(folder), "--store", store, "--json"],
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        [*flip, "report", "--store", store, "--json", "--html", str(tmp_path / "r.html")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout)["tables"]["person"] == 10
    assert (tmp_path / "r.html").read_text().count("<table>") >= 4


def _measurements(store, rows: list[tuple[int, float | None, int]]) -> None:
    """Measurement rows (concept id, value, unit concept id) of one person."""
    with store.begin() as conn:
        conn.execute(
            insert(schema.person).values(
                person_id=1,
                gender_concept_id=0,
                year_of_birth=1950,
                race_concept_id=0,
                ethnicity_concept_id=0,
            )
        )
        conn.execute(
            insert(schema.measurement),
            [
                {
                    "measurement_id": n,
                    "person_id": 1,
                    "measurement_concept_id": concept,
                    "measurement_date": date(2020, 1, 1),
                    "measurement_type_concept_id": 32817,
                    "value_as_number": value,
                    "unit_concept_id": unit,
                    "measurement_source_value": str(concept),
                }
                for n, (concept, value, unit) in enumerate(rows, start=1)
            ],
        )


def test_unit_coverage_and_value_distributions_with_tukey_outliers(store):
    values = [float(v) for v in range(1, 21)] + [1000.0]
    rows = [(3004410, v, 8554) for v in values] + [(3004410, 5.0, 0), (3004410, None, 0)]
    _measurements(store, rows)
    data = build_report(store)
    units = data["unit_coverage"]
    assert (units["rows"], units["numeric"], units["with_unit"]) == (23, 22, 21)
    [concept] = units["by_concept"]
    assert concept["share"] == round(21 / 22, 4)
    spread = {(d["concept_id"], d["unit_concept_id"]): d for d in data["distributions"]}
    hba1c = spread[(3004410, 8554)]
    assert (hba1c["n"], hba1c["q1"], hba1c["median"], hba1c["q3"]) == (21, 6.0, 11.0, 16.0)
    assert (hba1c["low_fence"], hba1c["high_fence"]) == (-9.0, 31.0)
    assert hba1c["outliers"] == 1 and hba1c["outlier_samples"] == [1000.0]
    assert spread[(3004410, 0)]["n"] == 1, "values without a unit are a distribution of their own"


def test_quarantine_samples_cover_different_records(store):
    rows = [("one", f"bad field {n}", "hl7.field") for n in range(10)]
    rows += [(f"other{n}", "bad", "hl7.field") for n in range(4)]
    rows += [("third", "no date", "date.missing")]
    with store.begin() as conn:
        conn.execute(
            insert(schema.quarantine),
            [
                {
                    "quarantine_id": n,
                    "source_system": "hl7v2:feed",
                    "location": "feed.hl7",
                    "record_key": key,
                    "rule": rule,
                    "message": message,
                }
                for n, (key, message, rule) in enumerate(rows, start=1)
            ],
        )
    samples = build_report(store)["quarantine"]["samples"]
    by_rule: dict[str, list[str]] = {}
    for sample in samples:
        by_rule.setdefault(sample["rule"], []).append(sample["record_key"])
    assert by_rule["date.missing"] == ["third"]
    assert len(by_rule["hl7.field"]) == 3 and len(set(by_rule["hl7.field"])) == 3


def test_the_mapped_check_fails_on_a_concept_the_vocabulary_does_not_know(store, exported):
    _, _, folder = exported("csv", n=20)
    ingest_path(store, "csv", folder)
    checks = {c.name: c for c in run_checks(store)}
    assert checks["completeness.mapped.condition_occurrence"].status == "PASS"
    with store.begin() as conn:
        conn.execute(
            schema.condition_occurrence.update()
            .where(
                schema.condition_occurrence.c.condition_occurrence_id
                == select(
                    func.min(schema.condition_occurrence.c.condition_occurrence_id)
                ).scalar_subquery()
            )
            .values(condition_concept_id=987654321)
        )
    checks = {c.name: c for c in run_checks(store)}
    mapped = checks["completeness.mapped.condition_occurrence"]
    assert mapped.status == "FAIL" and mapped.failed >= 1
    assert checks["conformance.concept_id_in_vocabulary.condition_occurrence"].failed == 1


def test_counts_per_source_carry_skipped_and_warnings_by_rule(store, exported):
    _, patients, folder = exported("csv", n=3)
    ingest_path(store, "csv", folder)
    images = folder / "dicom"
    ds = pydicom.dcmread(images / f"{patients[0].source_id}.dcm")
    del ds.StudyDate
    ds.ContentDate = "20200102"
    ds.save_as(images / f"{patients[0].source_id}.dcm")
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    ds.SOPInstanceUID = ds.SeriesInstanceUID = generate_uid()
    ds.save_as(images / "report.dcm")
    ingest_path(store, "dicom", images)
    ingest_path(store, "dicom", images)
    data = build_report(store)
    sources = {s["source"]: s for s in data["sources"]}
    dicom = sources["dicom:dicom"]  # the default source system: kind and folder name
    assert dicom["runs"] == 2 and dicom["read"] == len(patients) + 1
    assert (dicom["unchanged"], dicom["skipped"]) == (len(patients), 1)
    assert dicom["skipped_by_rule"] == {"dicom.non_image.structured_report": 1}
    assert dicom["warnings_by_rule"] == {"dicom.study_date_missing": 1}
    assert sum(s["loaded"] for name, s in sources.items() if name.startswith("csv:")) > 0
    assert data["ingest_runs"][0]["skipped_by_rule"] == dicom["skipped_by_rule"]
    page = render_html(data)
    assert "dicom.non_image.structured_report 1" in page


def test_html_is_self_contained_with_charts(store, exported):
    _, _, folder = exported("csv", n=20)
    ingest_path(store, "csv", folder)
    page = render_html(build_report(store))
    assert page.count("<svg") >= 3, "sources, unit coverage and distributions are charted"
    for external in ("<script", "<link", "src=", 'href="http', "@import"):
        assert external not in page, external
    assert not re.search(r"url\((?!#)", page), "only references inside the page"


def test_the_sources_chart_shows_a_re_run_that_changed_nothing(store, exported):
    _, _, folder = exported("csv", n=5)
    ingest_path(store, "csv", folder)
    again = ingest_path(store, "csv", folder)
    assert again.unchanged > 0 and again.loaded == 0
    [source] = build_report(store)["sources"]
    assert source["unchanged"] == again.unchanged
    svg = charts.source_counts_svg([source])
    assert "unchanged" in svg, "a source whose latest run changed nothing is not an empty bar"


def test_a_concept_the_vocabulary_does_not_know_is_not_called_unmapped(store):
    _measurements(store, [(987654321, float(v), 0) for v in range(5)])
    data = build_report(store)
    [spread] = data["distributions"]
    [units] = data["unit_coverage"]["by_concept"]
    for name in (spread["concept_name"], units["concept_name"]):
        assert name == "concept 987654321 (not in the vocabulary)", name


def test_counts_per_source_follow_the_source_system_whatever_the_path(store, exported, tmp_path):
    _, _, folder = exported("fhir-ndjson")
    moved = tmp_path / "moved"
    folder.rename(moved)
    ingest_path(store, "fhir", moved, source_system="fhir:ehr")
    (tmp_path / "again").symlink_to(moved)
    ingest_path(store, "fhir", tmp_path / "again", source_system="fhir:ehr")
    (source,) = build_report(store)["sources"]
    assert (source["source"], source["runs"], source["loaded"]) == ("fhir:ehr", 2, 0)
    assert source["unchanged"] == source["read"] - source["skipped"] > 0


def test_quarantine_samples_reach_every_rule_however_many_rows_come_first(store):
    rows = [(f"rec{n}", "a.first") for n in range(6000)] + [("late", "z.last")]
    with store.begin() as conn:
        bulk_insert(
            conn,
            schema.quarantine,
            [
                {
                    "quarantine_id": n,
                    "source_system": "csv:big",
                    "location": "big.csv",
                    "record_key": key,
                    "rule": rule,
                    "message": "bad",
                }
                for n, (key, rule) in enumerate(rows, start=1)
            ],
        )
    samples = build_report(store)["quarantine"]["samples"]
    assert [s["rule"] for s in samples] == ["a.first", "z.last", "a.first", "a.first"]
    assert [s["record_key"] for s in samples if s["rule"] == "z.last"] == ["late"]


def test_value_distributions_read_every_group_in_one_query(store):
    groups = 12
    rows = [(3004410, float(v), 8554 + g) for g in range(groups) for v in range(1, 6 + g)]
    _measurements(store, rows)
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", count)
    try:
        with store.connect() as conn:
            found = value_distributions(conn)
    finally:
        event.remove(store.engine, "before_cursor_execute", count)
    assert [d["n"] for d in found] == [5 + g for g in reversed(range(groups))]
    assert [d["median"] for d in found] == [(6 + g) / 2 for g in reversed(range(groups))]
    reads = [s for s in statements if "measurement" in s.lower()]
    assert len(reads) == 2, reads  # the groups, then their values


def test_the_visit_check_fails_on_a_fact_whose_visit_is_not_stored(store, exported):
    _, _, folder = exported("csv", n=20)
    ingest_path(store, "csv", folder)
    checks = {c.name: c for c in run_checks(store)}
    assert checks["conformance.visit_exists.condition_occurrence"].status == "PASS"
    table = schema.condition_occurrence
    first = select(func.min(table.c.condition_occurrence_id)).scalar_subquery()
    with store.begin() as conn:
        conn.execute(
            table.update()
            .where(table.c.condition_occurrence_id == first)
            .values(visit_occurrence_id=987654321)
        )
    checks = {c.name: c for c in run_checks(store)}
    visits = checks["conformance.visit_exists.condition_occurrence"]
    assert (visits.status, visits.failed) == ("FAIL", 1)
