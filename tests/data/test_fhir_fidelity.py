"""FHIR fidelity on shapes other systems send: an Observation's value beside its components."""

import orjson
import pytest
import sqlalchemy as sa

from flip.data.cdm import schema
from flip.data.ingest import ingest_path
from tests.data.accounting import assert_accounted
from tests.data.stored import rows, write_ndjson

LOINC = "http://loinc.org"
PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1960-01-01"}
SUBJECT = {"reference": "Patient/p1"}


def cc(code, system=LOINC):
    return {"coding": [{"system": system, "code": code}]}


def obs(id_, code, **extra):
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": cc(code),
        "subject": SUBJECT,
        "effectiveDateTime": "2021-01-01T10:00:00Z",
        **extra,
    }


def score(code, value):
    return {"code": cc(code), "valueQuantity": {"value": value, "code": "{score}"}}


def test_an_observation_with_a_value_and_components_keeps_both(store, tmp_path):
    gcs = obs(
        "gcs",
        "9269-2",
        valueQuantity={"value": 13, "code": "{score}"},
        component=[score("9267-6", 4), score("9270-0", 4), score("9268-4", 5)],
    )
    apgar = obs("apgar", "9274-2", valueInteger=9, component=[score("32401-2", 2)])
    path = write_ndjson(tmp_path / "o.ndjson", [PATIENT, gcs, apgar])
    report = ingest_path(store, "fhir", path)
    assert report.quarantined == 0, report.rules
    stored = sorted(
        (r["measurement_source_value"], r["value_as_number"]) for r in rows(store, "measurement")
    )
    assert stored == [
        ("32401-2", 2.0),
        ("9267-6", 4.0),
        ("9268-4", 5.0),
        ("9269-2", 13.0),
        ("9270-0", 4.0),
        ("9274-2", 9.0),
    ]
    assert_accounted(store, report)
    again = ingest_path(store, "fhir", path)
    assert (again.loaded, again.unchanged) == (0, report.loaded)
    assert len(rows(store, "measurement")) == 6


def bundle(*entries, kind="transaction"):
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def test_a_bundle_delete_entry_removes_what_the_resource_produced(store, tmp_path):
    cholesterol = obs("o1", "2093-3", valueQuantity={"value": 190, "code": "mg/dL"})
    kept = obs("o2", "2093-3", valueQuantity={"value": 180, "code": "mg/dL"})
    path = write_ndjson(tmp_path / "a.ndjson", [PATIENT, cholesterol, kept])
    ingest_path(store, "fhir", path, source_system="fhir:ehr")
    deletes = tmp_path / "del.json"
    deletes.write_bytes(
        orjson.dumps(
            bundle(
                {"request": {"method": "DELETE", "url": "Observation/o1"}},
                {"request": {"method": "DELETE", "url": "Observation/never-sent"}},
                kind="history",
            )
        )
    )
    report = ingest_path(store, "fhir", deletes, source_system="fhir:ehr")
    assert report.skipped_rules == {"fhir.deleted": 2}, report.as_dict()
    assert report.quarantined == 0, report.rules
    assert [r["value_as_number"] for r in rows(store, "measurement")] == [180.0]
    assert_accounted(store, report)
    again = ingest_path(store, "fhir", deletes, source_system="fhir:ehr")
    assert again.skipped_rules == {"fhir.deleted": 2}
    assert len(rows(store, "measurement")) == 1


def _ingest_bundle(store, path, *entries, kind):
    path.write_bytes(orjson.dumps(bundle({"resource": PATIENT}, *entries, kind=kind)))
    report = ingest_path(store, "fhir", path)
    assert_accounted(store, report)
    return report


def _version(value, number, updated):
    resource = obs("o1", "2093-3", valueQuantity={"value": value, "code": "mg/dL"})
    return {**resource, "meta": {"versionId": number, "lastUpdated": updated}}


def test_a_history_bundle_newest_first_ends_with_its_newest_action(store, tmp_path):
    url = {"url": "Observation/o1"}
    newest_first = (
        {
            "request": {"method": "DELETE", **url},
            "response": {"lastModified": "2021-01-03T00:00:00Z"},
        },
        {
            "resource": _version(130, "2", "2021-01-02T00:00:00Z"),
            "request": {"method": "PUT", **url},
        },
        {"resource": _version(120, "1", "2021-01-01T00:00:00Z"), "request": {"method": "POST"}},
    )
    report = _ingest_bundle(store, tmp_path / "h.json", *newest_first, kind="history")
    assert rows(store, "measurement") == [], report.as_dict()
    put, post = newest_first[1:]
    _ingest_bundle(store, tmp_path / "h2.json", put, post, kind="history")
    assert [r["value_as_number"] for r in rows(store, "measurement")] == [130.0]


def test_a_batch_bundle_applies_its_entries_in_order_a_transaction_deletes_first(store, tmp_path):
    put = {"resource": obs("o1", "2093-3", valueQuantity={"value": 190, "code": "mg/dL"})}
    put["request"] = {"method": "PUT", "url": "Observation/o1"}
    delete = {"request": {"method": "DELETE", "url": "Observation/o1"}}
    _ingest_bundle(store, tmp_path / "b.json", put, delete, kind="batch")
    assert rows(store, "measurement") == []
    _ingest_bundle(store, tmp_path / "t.json", put, delete, kind="transaction")
    assert len(rows(store, "measurement")) == 1  # FHIR: a transaction's DELETEs go first


MRN = "http://hosp.example/mrn"


@pytest.mark.parametrize("identity", [None, MRN])
def test_a_contained_or_logical_subject_is_the_patient_it_identifies(store, tmp_path, identity):
    patient = dict(PATIENT, identifier=[{"system": MRN, "value": "M9"}])
    by_identifier = obs(
        "o2",
        "2093-3",
        subject={"identifier": {"system": MRN, "value": "M9"}},
        valueQuantity={"value": 200, "code": "mg/dL"},
    )
    contained = obs(
        "o3",
        "2093-3",
        subject={"reference": "#pc"},
        contained=[
            {"resourceType": "Patient", "id": "pc", "identifier": [{"system": MRN, "value": "M9"}]}
        ],
        valueQuantity={"value": 210, "code": "mg/dL"},
    )
    path = write_ndjson(tmp_path / "s.ndjson", [patient, by_identifier, contained])
    report = ingest_path(store, "fhir", path, person_identifier=identity)
    assert report.quarantined == 0, report.rules
    [person] = rows(store, "person")
    measured = sorted((r["person_id"], r["value_as_number"]) for r in rows(store, "measurement"))
    assert measured == [(person["person_id"], 200.0), (person["person_id"], 210.0)]
    assert_accounted(store, report)


SNOMED = "http://snomed.info/sct"


def test_stu3_and_dstu2_statuses_are_read_as_the_r4_rules_do(store, tmp_path):
    def condition(id_, verification):
        return {
            "resourceType": "Condition",
            "id": id_,
            "verificationStatus": verification,
            "code": cc("22298006", SNOMED),
            "subject": SUBJECT,
            "onsetDateTime": "2019-01-01",
        }

    vaccine = {
        "resourceType": "Immunization",
        "status": "completed",
        "vaccineCode": cc("140", "http://hl7.org/fhir/sid/cvx"),
        "patient": SUBJECT,
        "date": "2018-10-01",
    }
    resources = [
        PATIENT,
        condition("refuted", "refuted"),
        condition("error", "entered-in-error"),
        condition("confirmed", "confirmed"),
        {
            "resourceType": "Procedure",
            "id": "not-done",
            "status": "completed",
            "notDone": True,
            "code": cc("80146002", SNOMED),
            "subject": SUBJECT,
            "performedDateTime": "2018-10-02",
        },
        dict(vaccine, id="not-given", notGiven=True),
        dict(vaccine, id="given", notGiven=False),
    ]
    report = ingest_path(store, "fhir", write_ndjson(tmp_path / "v.ndjson", resources))
    assert report.skipped_rules == {
        "fhir.verification.refuted": 1,
        "fhir.status.entered_in_error": 1,
        "fhir.status.not_done": 2,
    }, report.as_dict()
    assert [r["condition_source_value"] for r in rows(store, "condition_occurrence")] == [
        "22298006"
    ]
    assert rows(store, "procedure_occurrence") == []
    with store.connect() as conn:
        [message] = conn.execute(sa.select(schema.quarantine.c.message)).scalars()
    assert "occurrence" in message, message
    assert_accounted(store, report)


def test_the_first_coding_that_maps_to_a_standard_concept_decides_the_concept(store, tmp_path):
    epic = "urn:oid:1.2.840.114350.1.13.0.1.7.2.768282"
    codes = [
        {"system": epic, "code": "1234567"},
        {"system": "http://acme.org/lab", "code": "CREA"},
        {"system": LOINC, "code": "2160-0"},
    ]
    creatinine = dict(
        obs("creat", "x", valueQuantity={"value": 1.1, "code": "mg/dL"}), code={"coding": codes}
    )
    report = ingest_path(store, "fhir", write_ndjson(tmp_path / "e.ndjson", [PATIENT, creatinine]))
    assert report.quarantined == 0, report.rules
    [row] = rows(store, "measurement")
    assert row["measurement_source_value"] == "1234567"
    assert row["measurement_concept_id"] == 3016723  # LOINC 2160-0, Creatinine [Mass/volume]
    assert_accounted(store, report)


def test_absent_values_and_panels_of_members_are_skipped_by_rule(store, tmp_path):
    absent = {"coding": [{"code": "not-performed"}]}
    pressure = obs(
        "bp",
        "85354-9",
        component=[
            {"code": cc("8480-6"), "valueQuantity": {"value": 107, "code": "mm[Hg]"}},
            {"code": cc("8462-4"), "dataAbsentReason": absent},
        ],
    )
    saturation = obs("spo2", "2708-6", dataAbsentReason={"coding": [{"code": "error"}]})
    panel = obs("vitals", "85353-1", hasMember=[{"reference": "Observation/bp"}])
    path = write_ndjson(tmp_path / "a.ndjson", [PATIENT, pressure, saturation, panel])
    report = ingest_path(store, "fhir", path)
    assert report.skipped_rules == {"fhir.value.absent": 2, "fhir.observation.panel": 1}
    assert report.quarantined == 0, report.rules
    assert [r["measurement_source_value"] for r in rows(store, "measurement")] == ["8480-6"]
    assert rows(store, "observation") == []
    assert_accounted(store, report)


def test_a_fact_never_points_at_a_visit_that_is_not_stored(store, tmp_path):
    encounter = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": SUBJECT,
    }
    resources = [
        PATIENT,
        dict(encounter, id="no-date"),  # quarantined: a visit needs its start
        dict(encounter, id="ok", period={"start": "2020-05-01T09:00:00Z"}),
    ]
    for id_, visit in (("o1", "no-date"), ("o2", "never-sent"), ("o3", "ok")):
        resources.append(
            obs(
                id_,
                "2093-3",
                encounter={"reference": f"Encounter/{visit}"},
                valueQuantity={"value": 190, "code": "mg/dL"},
            )
        )
    path = write_ndjson(tmp_path / "v.ndjson", resources)
    report = ingest_path(store, "fhir", path, source_system="fhir:visits")
    assert report.warnings["reference.visit.missing"] == 2, report.as_dict()
    [visit] = rows(store, "visit_occurrence")
    pointed = [r["visit_occurrence_id"] for r in rows(store, "measurement")]
    assert sorted(pointed, key=str) == [visit["visit_occurrence_id"], None, None]
    assert_accounted(store, report)
    later = write_ndjson(tmp_path / "w.ndjson", [resources[-1]])
    again = ingest_path(store, "fhir", later, source_system="fhir:visits")
    assert again.warnings["reference.visit.missing"] == 0


def test_without_a_person_identifier_the_medical_record_number_is_the_source_value(store, tmp_path):
    v2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
    patient = dict(
        PATIENT,
        identifier=[
            {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-12-3456"},
            {"system": MRN, "type": {"coding": [{"system": v2, "code": "MR"}]}, "value": "M-7"},
        ],
    )
    report = ingest_path(store, "fhir", write_ndjson(tmp_path / "p.ndjson", [patient]))
    assert [r["person_source_value"] for r in rows(store, "person")] == ["M-7"]
    assert_accounted(store, report)


def test_a_medication_is_counted_as_read_through_what_names_it(store, tmp_path):
    rxnorm = "http://www.nlm.nih.gov/research/umls/rxnorm"
    medication = {"resourceType": "Medication", "id": "m1", "code": cc("6809", rxnorm)}
    request = {
        "resourceType": "MedicationRequest",
        "id": "r1",
        "status": "active",
        "intent": "order",
        "medicationReference": {"reference": "Medication/m1"},
        "subject": SUBJECT,
        "authoredOn": "2020-02-03T10:00:00Z",
    }
    path = write_ndjson(tmp_path / "m.ndjson", [PATIENT, medication, request])
    report = ingest_path(store, "fhir", path)
    assert report.read == 3, report.as_dict()
    assert report.skipped_rules == {"fhir.medication.read_through": 1}
    assert [r["drug_source_value"] for r in rows(store, "drug_exposure")] == ["6809"]
    assert_accounted(store, report)
