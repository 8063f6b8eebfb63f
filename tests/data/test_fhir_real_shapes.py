"""FHIR shapes real servers send that are not data: a searchset's OperationOutcome."""

import orjson

from flip.data.ingest import ingest_path
from tests.data.accounting import assert_accounted
from tests.data.stored import rows, write_ndjson

LOINC = "http://loinc.org"


def test_searchset_outcome_entry_is_skipped_not_quarantined(store, tmp_path):
    """HAPI and other servers put an OperationOutcome (no id, no fullUrl) in a searchset
    with search.mode `outcome`: it is a message about the search, counted as a type not
    read, never quarantined as bad data; the matches and includes around it load."""
    observation = {
        "resourceType": "Observation",
        "id": "x1",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
        "subject": {"reference": "http://srv/fhir/Patient/q1"},
        "effectiveDateTime": "2020-01-01T10:00:00Z",
        "valueQuantity": {"value": 72, "unit": "/min", "code": "/min"},
    }
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "warning", "code": "processing", "diagnostics": "truncated"}],
    }
    patient = {"resourceType": "Patient", "id": "q1", "gender": "female", "birthDate": "1980"}
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {
                "fullUrl": "http://srv/fhir/Observation/x1",
                "resource": observation,
                "search": {"mode": "match"},
            },
            {"resource": outcome, "search": {"mode": "outcome"}},
            {
                "fullUrl": "http://srv/fhir/Patient/q1",
                "resource": patient,
                "search": {"mode": "include"},
            },
        ],
    }
    path = tmp_path / "search.json"
    path.write_bytes(orjson.dumps(bundle))
    report = ingest_path(store, "fhir", path)
    assert report.quarantined == 0, report.as_dict()
    assert report.skipped_rules == {"fhir.type.not_read": 1}
    assert [m["value_as_number"] for m in rows(store, "measurement")] == [72.0]
    assert_accounted(store, report)


def test_a_corrected_invalid_resource_releases_its_quarantine_row(store, tmp_path):
    """An Observation sent without its required status is quarantined under the key it
    loads with (`Observation/o1`, not the bare id another type may share); the corrected
    resource, sent again, loads and leaves no quarantine row open."""
    patient = {"resourceType": "Patient", "id": "o1", "gender": "male", "birthDate": "1950"}
    pulse = {
        "resourceType": "Observation",
        "id": "o1",
        "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
        "subject": {"reference": "Patient/o1"},
        "effectiveDateTime": "2020-01-01T10:00:00Z",
        "valueQuantity": {"value": 72, "unit": "/min", "code": "/min"},
    }
    folder = tmp_path / "export"
    folder.mkdir()
    write_ndjson(folder / "Patient.ndjson", [patient])
    write_ndjson(folder / "Observation.ndjson", [pulse])
    first = ingest_path(store, "fhir", folder)
    assert_accounted(store, first)
    assert [q["record_key"] for q in rows(store, "quarantine")] == ["Observation/o1"]
    write_ndjson(folder / "Observation.ndjson", [dict(pulse, status="final")])
    again = ingest_path(store, "fhir", folder)
    assert_accounted(store, again)
    assert again.loaded == 1, again.as_dict()
    assert rows(store, "quarantine") == []
    assert [m["value_as_number"] for m in rows(store, "measurement")] == [72.0]


def test_an_encounter_without_an_r4_class_keeps_its_visit_and_events(store, tmp_path):
    """Exports leave out Encounter.class (required in R4) or send R5's list of
    CodeableConcepts: the visit still loads (concept 0 when it names none; the R5 list's
    first code otherwise), with a counted warning, and its events stay linked to it."""
    patient = {"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1950"}

    def visit(id_, day, **shape):
        return {
            "resourceType": "Encounter",
            "id": id_,
            "status": "finished",
            "subject": {"reference": "Patient/p1"},
            "period": {"start": f"2020-01-0{day}T09:00:00Z", "end": f"2020-01-0{day}T10:00:00Z"},
            **shape,
        }

    def pulse(id_, encounter):
        return {
            "resourceType": "Observation",
            "id": id_,
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
            "subject": {"reference": "Patient/p1"},
            "encounter": {"reference": f"Encounter/{encounter}"},
            "effectiveDateTime": "2020-01-01T09:30:00Z",
            "valueQuantity": {"value": 72, "unit": "/min", "code": "/min"},
        }

    r5 = [
        {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"}]}
    ]
    resources = [
        patient,
        visit("none", 1),
        visit("r5", 2, **{"class": r5}),
        pulse("o1", "none"),
        pulse("o2", "r5"),
    ]
    report = ingest_path(store, "fhir", write_ndjson(tmp_path / "x.ndjson", resources))
    assert report.quarantined == 0, report.as_dict()
    assert report.warnings == {"fhir.Encounter.class.missing": 1, "fhir.Encounter.class.r5": 1}
    visits = {v["visit_start_date"].day: v for v in rows(store, "visit_occurrence")}
    assert (visits[1]["visit_concept_id"], visits[1]["visit_source_value"]) == (0, None)
    assert (visits[2]["visit_concept_id"], visits[2]["visit_source_value"]) == (9201, "IMP")
    linked = sorted(m["visit_occurrence_id"] for m in rows(store, "measurement"))
    assert linked == sorted(v["visit_occurrence_id"] for v in visits.values())
    assert_accounted(store, report)


def test_an_allergy_to_a_drug_is_an_observation_never_an_exposure(store, tmp_path):
    """US Core codes a drug allergen in RxNorm: its concept's domain is Drug, but an
    allergy to metformin is no exposure to it; it is stored as an observation of the
    allergen, and no drug_exposure row says the patient took it."""
    patient = {"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1950"}
    allergy = {
        "resourceType": "AllergyIntolerance",
        "id": "a1",
        "verificationStatus": {"coding": [{"code": "confirmed"}]},
        "patient": {"reference": "Patient/p1"},
        "code": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "6809"}]
        },
        "recordedDate": "2019-01-01",
    }
    report = ingest_path(store, "fhir", write_ndjson(tmp_path / "a.ndjson", [patient, allergy]))
    assert rows(store, "drug_exposure") == []
    (observed,) = rows(store, "observation")
    assert (observed["observation_concept_id"], observed["observation_source_value"]) == (
        1503297,  # metformin, from the starter vocabulary
        "6809",
    )
    assert_accounted(store, report)


def test_what_has_not_happened_yet_is_skipped_and_loads_once_it_has(store, tmp_path):
    """A booked (planned) Encounter, a draft order, a Procedure in preparation and a
    medication only intended are no facts: a stale booking never cancelled must not
    become a visit. Sent again once they happened, they load."""
    patient = {"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1950"}
    subject = {"reference": "Patient/p1"}
    rxnorm = {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "6809"}]}
    pending = [
        {
            "resourceType": "Encounter",
            "id": "e1",
            "status": "planned",
            "class": {"code": "AMB"},
            "subject": subject,
            "period": {"start": "2020-01-01T09:00:00Z"},
        },
        {
            "resourceType": "MedicationRequest",
            "id": "mr1",
            "status": "draft",
            "intent": "order",
            "subject": subject,
            "medicationCodeableConcept": rxnorm,
            "authoredOn": "2020-01-01",
        },
        {
            "resourceType": "Procedure",
            "id": "pr1",
            "status": "preparation",
            "subject": subject,
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "80146002"}]},
            "performedDateTime": "2020-01-01",
        },
        {
            "resourceType": "MedicationStatement",
            "id": "ms1",
            "status": "intended",
            "subject": subject,
            "medicationCodeableConcept": rxnorm,
            "effectiveDateTime": "2020-01-01",
        },
    ]
    path = tmp_path / "x.ndjson"
    report = ingest_path(store, "fhir", write_ndjson(path, [patient, *pending]))
    assert report.skipped_rules == {
        "fhir.status.planned": 1,
        "fhir.status.draft": 1,
        "fhir.status.preparation": 1,
        "fhir.status.intended": 1,
    }
    assert rows(store, "visit_occurrence") == rows(store, "drug_exposure") == []
    assert rows(store, "procedure_occurrence") == []
    assert_accounted(store, report)
    done = {"Encounter": "finished", "MedicationRequest": "active"}
    done |= {"Procedure": "completed", "MedicationStatement": "completed"}
    happened = [dict(r, status=done[r["resourceType"]]) for r in pending]
    again = ingest_path(store, "fhir", write_ndjson(path, [patient, *happened]))
    assert again.loaded == 4, again.as_dict()
    assert len(rows(store, "visit_occurrence")) == 1
    assert len(rows(store, "drug_exposure")) == 2
    assert len(rows(store, "procedure_occurrence")) == 1
    assert_accounted(store, again)
