"""FHIR meaning: statuses that are not facts, comparators, report panels and times of day."""

from datetime import date, datetime
from pathlib import Path

from flip.data.cdm.rows import OPERATORS
from flip.data.ingest import ingest_path
from tests.data.accounting import assert_accounted
from tests.data.stored import rows, write_ndjson

SNOMED, LOINC = "http://snomed.info/sct", "http://loinc.org"
PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1950-10-24"}
SUBJECT = {"reference": "Patient/p1"}


def cc(system, code):
    return {"coding": [{"system": system, "code": code}]}


def obs(id_, status="final", **value):
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": status,
        "subject": SUBJECT,
        "code": cc(LOINC, "2345-7"),
        "effectiveDateTime": "2020-01-02T08:30:00+01:00",
        **value,
    }


def condition(id_, verification=None, **extra):
    resource = {
        "resourceType": "Condition",
        "id": id_,
        "subject": SUBJECT,
        "code": cc(SNOMED, "44054006"),
        "onsetDateTime": "2020-01-02",
        **extra,
    }
    if verification:
        system = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
        resource["verificationStatus"] = {"coding": [{"system": system, "code": verification}]}
    return resource


def test_statuses_that_are_not_facts_are_skipped_by_rule(store, tmp_path):
    procedure = {
        "resourceType": "Procedure",
        "subject": SUBJECT,
        "code": cc(SNOMED, "80146002"),
        "performedDateTime": "2020-01-02",
    }
    request = {
        "resourceType": "MedicationRequest",
        "intent": "order",
        "subject": SUBJECT,
        "medicationCodeableConcept": cc("http://www.nlm.nih.gov/research/umls/rxnorm", "6809"),
        "authoredOn": "2020-01-02",
    }
    resources = [
        PATIENT,
        condition("c-ok", "confirmed"),
        condition("c-refuted", "refuted"),
        condition("c-error", "entered-in-error"),
        obs("o-final", valueQuantity={"value": 5.1, "code": "mmol/L"}),
        obs("o-prelim", "preliminary", valueQuantity={"value": 5.2, "code": "mmol/L"}),
        obs("o-amended", "amended", valueQuantity={"value": 5.3, "code": "mmol/L"}),
        obs("o-corrected", "corrected", valueQuantity={"value": 5.4, "code": "mmol/L"}),
        obs("o-cancelled", "cancelled"),
        obs("o-error", "entered-in-error", valueQuantity={"value": 99, "code": "mmol/L"}),
        dict(procedure, id="pr-done", status="completed"),
        dict(procedure, id="pr-not-done", status="not-done"),
        dict(request, id="mr-active", status="active"),
        dict(request, id="mr-cancelled", status="cancelled"),
    ]
    report = ingest_path(store, "fhir", write_ndjson(tmp_path / "s.ndjson", resources))
    assert report.skipped_rules == {
        "fhir.verification.refuted": 1,
        "fhir.status.entered_in_error": 2,
        "fhir.status.cancelled": 2,
        "fhir.status.not_done": 1,
    }
    assert report.quarantined == 0, report.rules
    assert len(rows(store, "condition_occurrence")) == 1
    values = sorted(r["value_source_value"] for r in rows(store, "measurement"))
    assert values == ["5.1", "5.2", "5.3", "5.4"]
    assert len(rows(store, "procedure_occurrence")) == 1
    assert len(rows(store, "drug_exposure")) == 1
    assert_accounted(store, report)


def test_comparators_fill_operator_concept(store, tmp_path):
    resources = [
        PATIENT,
        obs("lt", valueQuantity={"value": 0.5, "comparator": "<", "code": "mmol/L"}),
        obs("ge", valueQuantity={"value": 25, "comparator": ">=", "code": "mmol/L"}),
        obs("plain", valueQuantity={"value": 4.2, "code": "mmol/L"}),
        obs("text-gt", valueString="> 60"),
        obs("text-le", valueString="\u22645"),
        obs("text-unit", valueString="<5 mmol/L"),
        obs("text-words", valueString="less than 5"),
    ]
    report = ingest_path(store, "fhir", write_ndjson(tmp_path / "c.ndjson", resources))
    assert report.quarantined == 0, report.rules
    measured = {
        (r["value_source_value"], r["operator_concept_id"])
        for r in rows(store, "measurement")
        if r["value_as_number"] is not None
    }
    assert measured == {
        ("<0.5", OPERATORS["<"]),
        (">=25", OPERATORS[">="]),
        ("4.2", None),
        (">60", OPERATORS[">"]),
        ("<=5", OPERATORS["<="]),
    }
    strings = sorted(
        r["value_source_value"]
        for r in rows(store, "measurement")  # glucose is a Measurement concept
        if r["value_as_number"] is None
    )
    assert strings == ["<5 mmol/L", "less than 5"]
    assert_accounted(store, report)


def test_a_report_panel_is_not_a_valueless_copy_of_its_results(store, tmp_path):
    panel = {
        "resourceType": "DiagnosticReport",
        "id": "lipids",
        "status": "final",
        "subject": SUBJECT,
        "code": cc(LOINC, "57698-3"),
        "effectiveDateTime": "2020-01-02",
        "result": [{"reference": "Observation/chol"}, {"reference": "Observation/hdl"}],
    }
    narrative = {
        "resourceType": "DiagnosticReport",
        "id": "xray",
        "status": "final",
        "subject": SUBJECT,
        "code": cc(LOINC, "36643-5"),
        "effectiveDateTime": "2020-01-02",
        "conclusion": "No acute findings",
    }
    resources = [
        PATIENT,
        panel,
        narrative,
        obs("chol", valueQuantity={"value": 5.0, "code": "mmol/L"}),
        obs("hdl", valueQuantity={"value": 1.2, "code": "mmol/L"}),
    ]
    report = ingest_path(store, "fhir", write_ndjson(tmp_path / "r.ndjson", resources))
    assert report.skipped_rules == {"fhir.report.panel": 1}
    codes = sorted(r["measurement_source_value"] for r in rows(store, "measurement"))
    assert codes == ["2345-7", "2345-7", "36643-5"]
    assert_accounted(store, report)


def test_times_of_day_are_kept_as_local_wall_time(store, tmp_path):
    patient = dict(
        PATIENT,
        deceasedDateTime="2024-03-01T23:45:00-05:00",
        _birthDate={
            "extension": [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                    "valueDateTime": "1950-10-24T14:35:45-05:00",
                }
            ]
        },
    )
    encounter = {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": {"code": "IMP"},
        "subject": SUBJECT,
        "period": {"start": "2020-01-01T22:10:00-05:00", "end": "2020-01-03T09:00:00-05:00"},
    }
    request = {
        "resourceType": "MedicationRequest",
        "id": "mr",
        "status": "active",
        "intent": "order",
        "subject": SUBJECT,
        "medicationCodeableConcept": cc("http://www.nlm.nih.gov/research/umls/rxnorm", "6809"),
        "authoredOn": "2020-01-02T07:05:00Z",
    }
    late = dict(obs("late"), effectiveDateTime="2020-01-01T23:30:00-05:00")
    late["valueQuantity"] = {"value": 5.0, "code": "mmol/L"}
    resources = [
        patient,
        encounter,
        request,
        late,
        condition("c", onsetDateTime="2020-01-02T10:11:12+02:00"),
        condition("c-day"),
    ]
    report = ingest_path(store, "fhir", write_ndjson(tmp_path / "t.ndjson", resources))
    assert report.quarantined == 0, report.rules
    [person] = rows(store, "person")
    assert person["birth_datetime"] == datetime(1950, 10, 24, 14, 35, 45)
    [death] = rows(store, "death")
    assert (death["death_date"], death["death_datetime"]) == (
        date(2024, 3, 1),
        datetime(2024, 3, 1, 23, 45),
    )
    [visit] = rows(store, "visit_occurrence")
    assert visit["visit_start_datetime"] == datetime(2020, 1, 1, 22, 10)
    assert visit["visit_end_datetime"] == datetime(2020, 1, 3, 9, 0)
    [measurement] = rows(store, "measurement")
    # 23:30 at UTC-5 is the 1st where it happened (the 2nd in UTC): the day stays the 1st
    assert measurement["measurement_date"] == date(2020, 1, 1)
    assert measurement["measurement_datetime"] == datetime(2020, 1, 1, 23, 30)
    [drug] = rows(store, "drug_exposure")
    assert drug["drug_exposure_start_datetime"] == datetime(2020, 1, 2, 7, 5)
    moments = {r["condition_start_datetime"] for r in rows(store, "condition_occurrence")}
    assert moments == {datetime(2020, 1, 2, 10, 11, 12), None}
    assert_accounted(store, report)


def test_resource_types_flip_does_not_read_are_skipped_by_type(store):
    sample = Path(__file__).parent / "fixtures" / "fhir" / "synthea_excerpt.json"
    report = ingest_path(store, "fhir", sample)
    assert report.skipped_rules == {"fhir.type.not_read": 1}
    assert report.quarantined == 0, report.rules
    assert report.rows["person"] == 1
    assert report.rows["visit_occurrence"] == 2
    assert report.rows["condition_occurrence"] == 2
    assert report.rows["note"] == 1
    visits = {r["visit_start_datetime"] for r in rows(store, "visit_occurrence")}
    assert visits == {datetime(1979, 1, 2, 11, 44, 52), datetime(1985, 1, 8, 11, 44, 52)}
    assert_accounted(store, report)


def test_reading_ahead_in_a_child_yields_what_reading_in_place_does():
    from flip.data.sources.fhir import read_path
    from flip.data.sources.fhir_ahead import read_path_ahead

    sample = Path(__file__).parent / "fixtures" / "fhir" / "synthea_excerpt.json"
    in_place = [(type(r).__name__, r.key) for r in read_path(sample)]
    ahead = [(type(r).__name__, r.key) for r in read_path_ahead(sample)]
    assert ahead == in_place
    assert ("Skipped", "Claim/d0fbb53e-5571-bf4f-50fe-f4257ee5b6f7") in ahead
