"""Every FHIR resource type FLIP reads: one shuffled transaction bundle, out-of-order NDJSON."""

import base64
import random
from datetime import date

import orjson
import pytest
from sqlalchemy import select

from flip.data.cdm import schema
from flip.data.ingest import ingest_path
from tests.data.accounting import assert_accounted
from tests.data.stored import rows

PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "gender": "female",
    "birthDate": "1950-03-04",
    "deceasedDateTime": "2024-01-02",
    "identifier": [{"system": "urn:mrn", "value": "MRN-1"}],
}
SUBJECT = {"reference": "Patient?identifier=urn:mrn|MRN-1"}
SNOMED, LOINC, RXNORM = (
    "http://snomed.info/sct",
    "http://loinc.org",
    "http://www.nlm.nih.gov/research/umls/rxnorm",
)


def cc(system, code):
    return {"coding": [{"system": system, "code": code}]}


RESOURCES = [
    {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": {"code": "IMP"},
        "subject": SUBJECT,
        "period": {"start": "2020-01-01", "end": "2020-01-05"},
    },
    {
        "resourceType": "Condition",
        "id": "c1",
        "subject": SUBJECT,
        "code": cc(SNOMED, "22298006"),
        "onsetDateTime": "2020-01-01",
        "abatementDateTime": "2020-02-01",
        "encounter": {"reference": "Encounter/e1"},
    },
    {
        "resourceType": "Observation",
        "id": "bp",
        "status": "final",
        "subject": SUBJECT,
        "code": cc(LOINC, "85354-9"),
        "effectiveDateTime": "2020-01-01",
        "component": [
            {"code": cc(LOINC, "8480-6"), "valueQuantity": {"value": 150, "code": "mm[Hg]"}},
            {"code": cc(LOINC, "8462-4"), "valueQuantity": {"value": 90, "code": "mm[Hg]"}},
        ],
    },
    {
        "resourceType": "Observation",
        "id": "smk",
        "status": "final",
        "subject": SUBJECT,
        "code": cc(LOINC, "72166-2"),
        "effectiveDateTime": "2020-01-01",
        "valueCodeableConcept": cc(SNOMED, "77176002"),
    },
    {"resourceType": "Medication", "id": "med-metformin", "code": cc(RXNORM, "6809")},
    {
        "resourceType": "MedicationRequest",
        "id": "mr1",
        "status": "active",
        "intent": "order",
        "subject": SUBJECT,
        "medicationReference": {"reference": "Medication/med-metformin"},
        "authoredOn": "2020-01-03",
    },
    {
        "resourceType": "MedicationStatement",
        "id": "ms1",
        "status": "active",
        "subject": SUBJECT,
        "contained": [{"resourceType": "Medication", "id": "m", "code": cc(RXNORM, "29046")}],
        "medicationReference": {"reference": "#m"},
        "effectivePeriod": {"start": "2020-01-01", "end": "2020-06-01"},
    },
    {
        "resourceType": "MedicationAdministration",
        "id": "ma1",
        "status": "completed",
        "subject": SUBJECT,
        "medicationCodeableConcept": cc(RXNORM, "83367"),
        "effectiveDateTime": "2020-01-02",
        "dosage": {"route": cc(SNOMED, "26643006")},
    },
    {
        "resourceType": "Immunization",
        "id": "im1",
        "status": "completed",
        "patient": SUBJECT,
        "vaccineCode": cc("http://hl7.org/fhir/sid/cvx", "140"),
        "occurrenceDateTime": "2020-10-01",
    },
    {
        "resourceType": "Procedure",
        "id": "pr1",
        "status": "completed",
        "subject": SUBJECT,
        "code": cc(SNOMED, "232717009"),
        "performedDateTime": "2020-01-02",
    },
    {
        "resourceType": "AllergyIntolerance",
        "id": "al1",
        "patient": SUBJECT,
        "code": cc(SNOMED, "91936005"),
        "recordedDate": "2019-05-01",
    },
    {
        "resourceType": "DiagnosticReport",
        "id": "dr1",
        "status": "final",
        "subject": SUBJECT,
        "code": cc(LOINC, "24331-1"),
        "effectiveDateTime": "2020-01-01",
        "conclusion": "Raised LDL",
    },
    {
        "resourceType": "DocumentReference",
        "id": "doc1",
        "status": "current",
        "subject": SUBJECT,
        "type": cc(LOINC, "11506-3"),
        "date": "2020-01-05T10:00:00Z",
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain",
                    "title": "Discharge",
                    "data": base64.b64encode(b"Chest pain, troponin raised.").decode(),
                }
            }
        ],
    },
    {
        "resourceType": "ImagingStudy",
        "id": "img1",
        "status": "available",
        "subject": SUBJECT,
        "identifier": [{"system": "urn:dicom:uid", "value": "urn:oid:1.2.840.1"}],
        "started": "2020-01-02",
        "series": [
            {
                "uid": "1.2.840.1.1",
                "modality": {
                    "system": "http://dicom.nema.org/resources/ontology/DCM",
                    "code": "CT",
                },
            }
        ],
    },
    {
        "resourceType": "Specimen",
        "id": "sp1",
        "subject": SUBJECT,
        "type": cc(SNOMED, "119297000"),
        "collection": {"collectedDateTime": "2020-01-01"},
    },
]


@pytest.fixture
def bundle_file(tmp_path):
    entries = [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in [PATIENT, *RESOURCES]]
    random.Random(4).shuffle(entries)
    path = tmp_path / "bundle.json"
    path.write_bytes(
        orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    )
    return path


def test_every_resource_type_lands_where_its_domain_says(store, bundle_file):
    report = ingest_path(store, "fhir", bundle_file)
    assert report.quarantined == 0, report.rules
    (person,) = rows(store, "person")
    assert person["person_source_value"] == "MRN-1" and person["gender_concept_id"] == 8532
    assert rows(store, "death")[0]["death_date"].isoformat() == "2024-01-02"
    assert rows(store, "visit_occurrence")[0]["visit_concept_id"] == 9201
    (condition,) = rows(store, "condition_occurrence")
    assert (
        condition["condition_concept_id"] == 4329847
        and condition["condition_end_date"].isoformat() == "2020-02-01"
    )
    assert (
        condition["visit_occurrence_id"]
        == rows(store, "visit_occurrence")[0]["visit_occurrence_id"]
    )
    measurements = {r["measurement_concept_id"]: r for r in rows(store, "measurement")}
    assert (
        measurements[3004249]["value_as_number"] == 150
        and measurements[3012888]["value_as_number"] == 90
    )
    assert measurements[0]["measurement_source_value"] == "24331-1"
    drugs = {r["drug_source_value"]: r for r in rows(store, "drug_exposure")}
    assert drugs["6809"]["drug_concept_id"] == 1503297
    assert drugs["29046"]["drug_concept_id"] == 1308216
    assert drugs["29046"]["drug_exposure_end_date"].isoformat() == "2020-06-01"
    assert drugs["83367"]["route_source_value"] == "26643006"
    assert drugs["140"]["drug_concept_id"] == 0
    assert rows(store, "procedure_occurrence")[0]["procedure_concept_id"] == 4336464
    observations = {r["observation_source_value"]: r for r in rows(store, "observation")}
    assert observations["72166-2"]["value_as_concept_id"] == 4298794
    assert "91936005" in observations
    (note,) = rows(store, "note")
    assert note["note_text"] == "Chest pain, troponin raised." and note["note_title"] == "Discharge"
    (image,) = rows(store, "image_occurrence")
    assert image["image_study_uid"] == "1.2.840.1" and image["image_series_uid"] == "1.2.840.1.1"
    assert rows(store, "specimen")[0]["specimen_source_value"] == "119297000"
    assert report.unmapped["http://hl7.org/fhir/sid/cvx|140"] == 1


def test_references_resolve_across_files_in_any_order(store, tmp_path):
    folder = tmp_path / "bulk"
    folder.mkdir()
    relative = {"reference": "Patient/p1"}
    events = [
        dict(r, subject=relative) if "subject" in r else dict(r, patient=relative)
        for r in RESOURCES[1:4]
    ]
    (folder / "a-first.ndjson").write_bytes(b"\n".join(orjson.dumps(r) for r in events) + b"\n")
    (folder / "z-last.ndjson").write_bytes(orjson.dumps(PATIENT) + b"\n")
    report = ingest_path(store, "fhir", folder)
    assert report.quarantined == 0, report.rules
    person_id = rows(store, "person")[0]["person_id"]
    assert {r["person_id"] for r in rows(store, "measurement")} == {person_id}


def test_a_reference_to_nobody_is_quarantined_at_the_end_of_the_run(store, tmp_path):
    path = tmp_path / "orphans.ndjson"
    orphan = dict(RESOURCES[1], subject={"reference": "Patient/ghost"})
    path.write_bytes(orjson.dumps(orphan) + b"\n" + orjson.dumps(PATIENT) + b"\n")
    report = ingest_path(store, "fhir", path)
    assert report.rules == {"reference.dangling": 1}
    assert report.rows["person"] == 1


def test_wrong_resource_type_and_missing_fields_are_named(store, tmp_path):
    path = tmp_path / "bad.ndjson"
    lines = [
        {"resourceType": "Patientt", "id": "x"},
        {
            "resourceType": "Observation",
            "id": "o",
            "status": "final",
            "subject": {"reference": "Patient/p1"},
        },
        {
            "resourceType": "Condition",
            "id": "c",
            "subject": {"reference": "Patient/p1"},
            "onsetDateTime": "2020-13-45",
            "recordedDate": "2020-01-05",
            "code": cc(SNOMED, "22298006"),
        },
        [1, 2, 3],
    ]
    path.write_bytes(
        orjson.dumps(PATIENT) + b"\n" + b"\n".join(orjson.dumps(x) for x in lines) + b"\n"
    )
    report = ingest_path(store, "fhir", path)
    assert report.rules == {"fhir.unsupported_type": 1, "fhir.invalid": 1, "fhir.not_a_resource": 1}
    with store.connect() as conn:
        messages = conn.execute(select(schema.quarantine.c.message)).scalars().all()
    assert any("Observation.code" in m for m in messages)
    # a bad optional element is nulled with a warning; the Condition loads on its recordedDate
    assert report.warnings == {"fhir.Condition.onsetDateTime.invalid": 1}
    assert [r["condition_start_date"] for r in rows(store, "condition_occurrence")] == [
        date(2020, 1, 5)
    ]
    assert_accounted(store, report)
