"""Generated sites carry real-world shapes, and an ingest makes of them what the generator
knows it must: every record accounted for, non-facts skipped by their rule, comparators
and times of day kept."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from datetime import date

import pytest
from sqlalchemy import select

from flip.data.cdm import schema
from flip.data.cdm.rows import OPERATORS
from flip.data.ingest import ingest_path
from flip.synth import SiteProfile, default_profiles, generate_site
from flip.synth.export import export_site, export_site_truth
from flip.synth.shapes import NOT_FACT_RULES, Shapes, nhs_number, plan_patient
from flip.synth.world import CONDITIONS
from tests.data.accounting import assert_accounted

FORMATS = ["fhir-bundle", "fhir-ndjson", "csv"]
#: Every shape at a rate a 40-patient site is sure to show.
DENSE = Shapes(not_facts=0.3, resent=0.1, implausible=0.1, duplicate_identity=0.1)
DATETIME_COLUMNS = {
    "measurement": "measurement_datetime",
    "visit_occurrence": "visit_start_datetime",
    "note": "note_datetime",
    "observation": "observation_datetime",
}


def _site(tmp_path, fmt: str, shapes: Shapes = DENSE, n: int = 40):
    profile = SiteProfile(f"shapes-{fmt}", n, fmt, age_mean=60, smoker_rate=0.3, shapes=shapes)
    patients = generate_site(profile, 4)
    folder, truth = export_site_truth(profile, patients, tmp_path / fmt, 4, images=False)
    return patients, folder, truth


def _ingest(store, fmt: str, folder, truth, by_identifier: bool = True):
    kind = "csv" if fmt == "csv" else "fhir"
    identifier = truth.person_identifier if by_identifier else None
    return ingest_path(store, kind, folder, person_identifier=identifier)


def _rows(store, keys) -> dict[str, tuple[str, int]]:
    """Record key -> (CDM table, row id) for the given keys."""
    sr = schema.source_record
    with store.connect() as conn:
        found = conn.execute(select(sr.c.record_key, sr.c.cdm_table, sr.c.cdm_id)).all()
    return {key: (table, cdm_id) for key, table, cdm_id in found if key in keys}


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_record_is_accounted_for_and_skipped_or_quarantined_by_its_rule(store, tmp_path, fmt):
    patients, folder, truth = _site(tmp_path, fmt)
    assert truth.resent and truth.quarantined["plausibility.value_range"], "shapes present"
    if fmt != "csv":
        assert truth.duplicates and set(NOT_FACT_RULES.values()) <= set(truth.skipped)
    report = _ingest(store, fmt, folder, truth)
    assert_accounted(store, report)
    assert report.skipped_rules == truth.skipped_rules(by_identifier=True)
    assert report.rules == truth.quarantined
    # A clean export gives no warning: a record first seen as entered-in-error is skipped by
    # its status rule alone (there was nothing before it to withdraw).
    assert not report.warnings, report.as_dict()
    assert not report.unmapped, report.as_dict()
    with store.connect() as conn:
        persons = conn.execute(select(schema.person.c.person_source_value)).scalars().all()
    assert sorted(persons) == sorted(p.source_id for p in patients)
    again = _ingest(store, fmt, folder, truth)
    assert_accounted(store, again)
    assert again.loaded == 0 and again.rules == truth.quarantined


@pytest.mark.parametrize("fmt", FORMATS)
def test_values_below_a_detection_limit_carry_their_comparator(store, tmp_path, fmt):
    patients, folder, truth = _site(tmp_path, fmt)
    censored = [p for p in patients if p.measurements.get("bilirubin", 9) < 5]
    assert len(truth.operators) == len(censored) > 0
    _ingest(store, fmt, folder, truth)
    rows = _rows(store, truth.operators)
    m = schema.measurement
    with store.connect() as conn:
        stored = {
            cid: (op, value)
            for cid, op, value in conn.execute(
                select(m.c.measurement_id, m.c.operator_concept_id, m.c.value_as_number)
            )
        }
    assert rows.keys() == truth.operators.keys()
    for key, op in truth.operators.items():
        table, cdm_id = rows[key]
        assert table == "measurement" and stored[cdm_id] == (OPERATORS[op], 5.0), key
    others = {cid for cid, (op, _) in stored.items() if op is None}
    assert len(others) == len(stored) - len(truth.operators)


@pytest.mark.parametrize("fmt", FORMATS)
def test_times_of_day_survive_as_wall_clock_time(store, tmp_path, fmt):
    _, folder, truth = _site(tmp_path, fmt)
    with_time = [t for t in truth.times.values() if t.time() != t.time().min]
    assert len(with_time) > len(truth.times) // 2
    if fmt != "csv":
        raw = b"".join(p.read_bytes() for p in folder.iterdir() if p.is_file())
        assert b"+01:00" in raw and b"Z" in raw, "times come with zones"
    _ingest(store, fmt, folder, truth)
    rows = _rows(store, truth.times)
    assert rows.keys() == truth.times.keys()
    with store.connect() as conn:
        for key, expected in truth.times.items():
            table, cdm_id = rows[key]
            t = schema.metadata.tables[table]
            stored = conn.execute(
                select(t.c[DATETIME_COLUMNS[table]]).where(t.c[f"{table}_id"] == cdm_id)
            ).scalar_one()
            assert stored.replace(tzinfo=None) == expected, key


@pytest.mark.parametrize("fmt", ["fhir-bundle", "fhir-ndjson"])
def test_statuses_that_are_not_facts_change_no_fact(store, tmp_path, fmt):
    patients, folder, truth = _site(tmp_path, fmt)
    _ingest(store, fmt, folder, truth)
    c, m, p = schema.condition_occurrence, schema.measurement, schema.person
    with store.connect() as conn:
        conditions = conn.execute(
            select(p.c.person_source_value, c.c.condition_source_value).join(
                p, p.c.person_id == c.c.person_id
            )
        ).all()
        sbp = conn.execute(
            select(p.c.person_source_value, m.c.value_as_number)
            .join(p, p.c.person_id == m.c.person_id)
            .where(m.c.measurement_concept_id == 3004249)
        ).all()
    by_code = {snomed: name for name, (snomed, _) in CONDITIONS.items()}
    assert Counter((pid, by_code[code]) for pid, code in conditions) == Counter(
        (q.source_id, name) for q in patients for name in q.conditions
    )
    assert sorted(sbp) == sorted((q.source_id, q.measurements["sbp"]) for q in patients)


@pytest.mark.parametrize("fmt", ["fhir-bundle", "fhir-ndjson"])
def test_a_second_patient_id_with_the_same_mrn_is_one_person_by_identifier(store, tmp_path, fmt):
    patients, folder, truth = _site(tmp_path, fmt)
    assert truth.duplicates
    report = _ingest(store, fmt, folder, truth)
    assert report.skipped_rules["person.identifier.known"] == truth.duplicates + truth.resent
    assert not report.conflicts
    p, n = schema.person, schema.note
    with store.connect() as conn:
        notes = conn.execute(
            select(p.c.person_source_value, n.c.note_text).join(p, p.c.person_id == n.c.person_id)
        ).all()
    assert sorted(notes) == sorted((q.source_id, text) for q in patients for _, text in q.notes)


def test_without_the_identifier_system_each_patient_id_is_a_person(store, tmp_path):
    patients, folder, truth = _site(tmp_path, "fhir-ndjson")
    report = _ingest(store, "fhir-ndjson", folder, truth, by_identifier=False)
    assert_accounted(store, report)
    assert report.skipped_rules == truth.skipped_rules(by_identifier=False)
    assert report.rows["person"] == truth.persons_loaded(by_identifier=False)
    assert truth.persons_loaded(False) == len(patients) + truth.duplicates


def test_csv_extract_has_messy_headers_null_cells_and_unpadded_dates(tmp_path):
    folder = _site(tmp_path, "csv", Shapes(unpadded=0.5))[1]
    patients_csv = (folder / "patients.csv").read_text().splitlines()
    assert patients_csv[0] == "Patient_Ref,NHS_Number , DOB,Sex ,DIED"
    assert all(line.endswith(",NULL") for line in patients_csv[1:])
    dates = [line.split(",")[2] for line in patients_csv[1:]]
    assert any(re.fullmatch(r"\d{1,2}/\d{1,2}/\d{4}", d) and len(d) < 10 for d in dates)
    assert any(len(d) == 10 for d in dates)
    taken = [line.rsplit(",", 1)[1] for line in (folder / "labs.csv").read_text().splitlines()]
    assert {"T" in t for t in taken[1:]} == {True, False}
    tidy = _site(tmp_path / "tidy", "csv", Shapes.none())[1]
    assert "NULL" not in (tidy / "patients.csv").read_text()
    assert (tidy / "labs.csv").read_text().startswith("lab_id,patient_ref,")


def test_shapes_are_seeded_and_rare_by_default(tmp_path):
    profile = dataclasses.replace(default_profiles(3)[1], n_patients=900)
    patients = generate_site(profile, 0)
    first = export_site(profile, patients, tmp_path / "a", 0, images=False)
    again = export_site(profile, patients, tmp_path / "b", 0, images=False)
    for path in first.iterdir():
        assert path.read_bytes() == (again / path.name).read_bytes(), path.name
    plans = [plan_patient(profile.shapes, profile.name, i, date(2017, 6, 1), 0) for i in range(900)]
    assert 0.005 < sum(p.not_fact is not None for p in plans) / 900 < 0.06
    assert 0 < sum(p.resent for p in plans) / 900 < 0.03
    assert 0 < sum(p.implausible for p in plans) / 900 < 0.01
    assert not any(p.duplicate for p in plans)
    other = [plan_patient(profile.shapes, profile.name, i, date(2017, 6, 1), 1) for i in range(900)]
    assert plans != other


def test_nhs_numbers_are_test_numbers_with_a_valid_check_digit():
    numbers = {nhs_number("st-aster", serial) for serial in range(1, 500)}
    assert len(numbers) == 499
    for number in numbers:
        digits = [int(c) for c in number]
        check = 11 - sum(d * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True)) % 11
        assert number.startswith("999") and len(number) == 10
        assert digits[9] == check % 11 and check != 10
